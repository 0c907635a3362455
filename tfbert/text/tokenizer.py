"""`BertTokenizer`: an in-graph WordPiece tokenizer identical to transformers' `BertTokenizerFast`.

It is a `tf.Module` built from TensorFlow ops only, so the same graph tokenizes in
`tf.data.Dataset.map`, inside a `tf.function(input_signature=[tf.TensorSpec([None], tf.string)])`
and in an exported SavedModel that stock TF Serving runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.text import normalization

SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                          "cls_token": "[CLS]", "mask_token": "[MASK]"}


class TokenizerError(ValueError):
    """A vocabulary or tokenizer config that cannot be used; the message names the file and line."""


def read_vocab(vocab_file: str) -> list[str]:
    """Reads `vocab.txt` (one token per line, the line number is the id), checking it."""
    try:
        with open(vocab_file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise TokenizerError(f"{vocab_file}: vocabulary file not found") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # final newline
    tokens, seen = [], {}
    for number, line in enumerate(lines, start=1):
        try:
            token = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{vocab_file}:{number}: not valid UTF-8 (byte {e.start})") from None
        if token in seen:
            raise TokenizerError(f"{vocab_file}:{number}: token {token!r} already appears on line {seen[token]}")
        seen[token] = number
        tokens.append(token)
    if not tokens:
        raise TokenizerError(f"{vocab_file}: vocabulary file is empty")
    return tokens


class BertTokenizer(tf.Module):
    """WordPiece tokenizer and input packer for BERT, as TensorFlow graph ops.

    Produces exactly the ids of transformers' `BertTokenizerFast` for the same vocabulary
    and settings (normalisation, special tokens in the text, longest-first truncation).

    Args:
        vocab_file: `vocab.txt`, one token per line.
        do_lower_case: lower-case (and, unless `strip_accents` says otherwise, strip accents).
        strip_accents: None follows `do_lower_case`, as in HF.
        tokenize_chinese_chars: split CJK ideographs into words of their own.
        model_max_length: default `max_length` for packing.
        max_input_chars_per_word: longer words become `[UNK]` (HF counts characters).
        **special_tokens: `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token`.

    Invalid UTF-8 input does not fail: each invalid byte sequence becomes U+FFFD, which the
    normaliser then drops, as HF drops U+FFFD.

    Example:
        >>> tok = BertTokenizer.from_pretrained("minilm-l6")   # doctest: +SKIP
        >>> batch = tok(["Hello world!", "A second, longer sentence."])   # doctest: +SKIP
        >>> sorted(batch)   # doctest: +SKIP
        ['attention_mask', 'input_ids', 'token_type_ids']
    """

    def __init__(self, vocab_file: str, do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, model_max_length: int = 512,
                 max_input_chars_per_word: int = 100, name: str | None = None, **special_tokens):
        super().__init__(name=name)
        unknown = set(special_tokens) - set(SPECIAL_TOKEN_KEYS)
        if unknown:
            raise TypeError(f"unknown tokenizer arguments: {', '.join(sorted(unknown))}")
        self.vocab_file = os.fspath(vocab_file)
        self.vocab = read_vocab(self.vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.model_max_length = int(model_max_length)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.special_tokens = {**DEFAULT_SPECIAL_TOKENS, **{k: v for k, v in special_tokens.items() if v}}
        index = {token: i for i, token in enumerate(self.vocab)}
        for key, token in self.special_tokens.items():
            if token not in index:
                raise TokenizerError(f"{self.vocab_file}: {key} {token!r} is not in the vocabulary")
        self.unk_id, self.sep_id, self.pad_id, self.cls_id, self.mask_id = (
            index[self.special_tokens[k]] for k in SPECIAL_TOKEN_KEYS)
        # Special tokens are matched in the raw text before normalisation, longest first.
        specials = sorted(set(self.special_tokens.values()), key=len, reverse=True)
        self._special_pattern = "|".join(re.escape(t) for t in specials)
        self._special_tokens_t = tf.constant(specials)
        self._special_ids_t = tf.constant([index[t] for t in specials], dtype=tf.int64)
        # The vocabulary file becomes an asset of any SavedModel that tracks this module.
        initializer = tf.lookup.TextFileInitializer(
            self.vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
        self.vocab_table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=1)
        # Words over the character limit are replaced by the unknown token before WordPiece,
        # so the byte limit here never cuts in first (4 bytes per character at most).
        self._wordpiece = tf_text.WordpieceTokenizer(
            self.vocab_table, suffix_indicator="##", max_bytes_per_word=4 * self.max_input_chars_per_word + 4,
            token_out_type=tf.int64, unknown_token=self.special_tokens["unk_token"],
            split_unknown_characters=False)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, **overrides) -> "BertTokenizer":
        """Builds the tokenizer of a HF directory (`vocab.txt` + `tokenizer_config.json`),
        a Google BERT directory (`vocab.txt`) or a preset name such as "minilm-l6"."""
        from tfbert.checkpoints.presets import resolve

        directory = resolve(path_or_preset)
        vocab_file = os.path.join(directory, "vocab.txt")
        if not os.path.isfile(vocab_file):
            raise TokenizerError(f"{directory}: no vocab.txt (tfbert builds WordPiece tokenizers from vocab.txt)")
        kwargs = {}
        config_file = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(config_file):
            try:
                with open(config_file, encoding="utf-8") as f:
                    config = json.load(f)
            except json.JSONDecodeError as e:
                raise TokenizerError(f"{config_file}: line {e.lineno}: not valid JSON ({e.msg})") from None
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars"):
                if key in config:
                    kwargs[key] = config[key]
            if isinstance(config.get("model_max_length"), int) and config["model_max_length"] < 1_000_000:
                kwargs["model_max_length"] = config["model_max_length"]
            for key in SPECIAL_TOKEN_KEYS:
                value = config.get(key)
                if isinstance(value, dict):  # AddedToken serialised as a dict
                    value = value.get("content")
                if value:
                    kwargs[key] = value
        elif os.path.isfile(os.path.join(directory, "bert_config.json")):
            # Google checkpoints say nothing about casing; their folder names do ("uncased_L-12_...").
            folder = os.path.basename(os.path.normpath(directory)).lower()
            kwargs["do_lower_case"] = not folder.startswith(("cased", "multi_cased", "wwm_cased"))
        kwargs.update(overrides)
        return cls(vocab_file, **kwargs)

    def get_config(self) -> dict:
        return {"do_lower_case": self.do_lower_case, "strip_accents": self.strip_accents,
                "tokenize_chinese_chars": self.tokenize_chinese_chars, "model_max_length": self.model_max_length,
                "max_input_chars_per_word": self.max_input_chars_per_word, **self.special_tokens}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Writes `vocab.txt` and `tokenizer_config.json` that transformers' `BertTokenizerFast` reads."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, "vocab.txt")
        if os.path.abspath(target) != os.path.abspath(self.vocab_file):
            shutil.copyfile(self.vocab_file, target)
        config = {"tokenizer_class": "BertTokenizer", **self.get_config()}
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ---- tokenization -------------------------------------------------------------------------
    def tokenize(self, texts) -> tf.RaggedTensor:
        """[n] strings -> [n, (tokens)] int32 WordPiece ids, without [CLS]/[SEP]."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if texts.shape.rank != 1:
            texts = tf.reshape(texts, [-1])
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        # RegexSplitWithOffsets stops at a NUL byte. HF drops U+0000 in clean_text; a private-use
        # character (also dropped by clean_text) stands in for it until then.
        texts = tf.strings.regex_replace(texts, "\x00", "\uE000")
        # 1. Special tokens written in the text are tokens of their own (HF's added-token split).
        segments, _, _ = tf_text.regex_split_with_offsets(
            texts, delim_regex_pattern=self._special_pattern, keep_delim_regex_pattern=self._special_pattern)
        flat = segments.flat_values
        matches = tf.equal(tf.expand_dims(flat, 1), tf.expand_dims(self._special_tokens_t, 0))
        is_special = tf.reduce_any(matches, axis=1)
        special_ids = tf.reduce_max(tf.where(matches, self._special_ids_t, tf.constant(-1, tf.int64)), axis=1)
        # 2. Normalise and split the other segments into words.
        normalized = normalization.normalize(flat, lowercase=self.do_lower_case, strip_accents_=self.strip_accents,
                                             handle_chinese_chars=self.tokenize_chinese_chars)
        words = normalization.split_words(normalized)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_input_chars_per_word
        words = words.with_flat_values(tf.where(too_long, self.special_tokens["unk_token"], words.flat_values))
        # 3. WordPiece: [segments, (words), (pieces)] -> [segments, (pieces)].
        pieces = self._wordpiece.tokenize(words).merge_dims(1, 2)
        # 4. Special segments become their one id.
        num_segments = tf.shape(flat, out_type=tf.int64)[0]
        special_rows = tf.RaggedTensor.from_row_lengths(special_ids, tf.ones_like(special_ids))
        rows = tf.range(num_segments)
        pick = tf.where(is_special, rows + num_segments, rows)
        pieces = tf.gather(tf.concat([pieces, special_rows], axis=0), pick)
        ids = tf.RaggedTensor.from_row_splits(pieces, segments.row_splits).merge_dims(1, 2)
        return tf.cast(ids, tf.int32)

    def __call__(self, text, text_pair=None, max_length: int | None = None, padding: str = "longest",
                 truncation: bool = True) -> dict[str, tf.Tensor]:
        """Tokenizes and packs a batch as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.

        Args:
            text: [batch] strings (a single string is a batch of one).
            text_pair: optional [batch] second segments.
            max_length: the packed length limit; defaults to `model_max_length`.
            padding: "longest" pads to the longest row of the batch, "max_length" to `max_length`.
            truncation: truncate to `max_length` (longest-first for pairs, as HF).

        Returns:
            `input_ids`, `token_type_ids`, `attention_mask`: int32 [batch, seq].
        """
        first = self.tokenize(text)
        second = None if text_pair is None else self.tokenize(text_pair)
        return self.pack(first, second, max_length=max_length, padding=padding, truncation=truncation)

    def pack(self, first: tf.RaggedTensor, second: tf.RaggedTensor | None = None, max_length: int | None = None,
             padding: str = "longest", truncation: bool = True) -> dict[str, tf.Tensor]:
        """Packs tokenized segments (from `tokenize`) with special tokens, truncates and pads."""
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', found {padding!r}")
        max_length = int(max_length or self.model_max_length)
        num_special = 2 if second is None else 3
        if max_length < num_special:
            raise ValueError(f"max_length {max_length} leaves no room for the {num_special} special tokens")
        if truncation:
            budget = max_length - num_special
            if second is None:
                first = _truncate(first, tf.minimum(first.row_lengths(), budget))
            else:
                keep_first, keep_second = longest_first_lengths(first.row_lengths(), second.row_lengths(), budget)
                first, second = _truncate(first, keep_first), _truncate(second, keep_second)
        batch = first.nrows()
        cls = tf.fill([batch, 1], self.cls_id)
        sep = tf.fill([batch, 1], self.sep_id)
        parts = [cls, first, sep]
        types = [tf.zeros_like(cls), tf.zeros_like(first), tf.zeros_like(sep)]
        if second is not None:
            parts += [second, sep]
            types += [tf.ones_like(second), tf.ones_like(sep)]
        ids = tf.concat(parts, axis=1)
        type_ids = tf.concat(types, axis=1)
        shape = [None, max_length] if padding == "max_length" else None
        return {
            "input_ids": ids.to_tensor(default_value=self.pad_id, shape=shape),
            "token_type_ids": type_ids.to_tensor(default_value=0, shape=shape),
            "attention_mask": tf.ones_like(ids).to_tensor(default_value=0, shape=shape),
        }


def longest_first_lengths(len_a, len_b, budget: int):
    """How many tokens of each segment HF's "longest_first" truncation keeps.

    As in `tokenizers`' `truncate_encodings`: when the pair is too long, the longer segment is
    cut to `budget - shorter`; when both exceed half the budget, each keeps half and the longer
    one gets the odd token.
    """
    len_a = tf.cast(len_a, tf.int64)
    len_b = tf.cast(len_b, tf.int64)
    budget = tf.constant(budget, tf.int64)
    swap = len_a > len_b
    short = tf.minimum(len_a, len_b)
    new_long = tf.where(short > budget, short, tf.maximum(short, budget - short))
    both = short + new_long > budget
    new_short = tf.where(both, budget // 2, short)
    new_long = tf.where(both, budget // 2 + budget % 2, new_long)
    fits = len_a + len_b <= budget
    keep_a = tf.where(fits, len_a, tf.where(swap, new_long, new_short))
    keep_b = tf.where(fits, len_b, tf.where(swap, new_short, new_long))
    return tf.minimum(keep_a, len_a), tf.minimum(keep_b, len_b)


def _truncate(tokens: tf.RaggedTensor, keep) -> tf.RaggedTensor:
    positions = tf.ragged.range(tokens.row_lengths())
    return tf.ragged.boolean_mask(tokens, positions < tf.expand_dims(tf.cast(keep, tf.int64), 1))
