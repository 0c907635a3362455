"""`BertTokenizer`: an in-graph WordPiece tokenizer identical to transformers' `BertTokenizerFast`.

It is a `tf.Module` built from TensorFlow ops only, so the same graph tokenizes in
`tf.data.Dataset.map`, inside a `tf.function(input_signature=[tf.TensorSpec([None], tf.string)])`
and in an exported SavedModel that stock TF Serving runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from tfbert import fileio
from tfbert.errors import TfbertError
from tfbert.text import normalization

SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
logger = logging.getLogger("tfbert")
DEFAULT_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                          "cls_token": "[CLS]", "mask_token": "[MASK]"}


class TokenizerError(TfbertError):
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


def vocab_from_tokenizer_json(path: str) -> tuple[str, dict]:
    """The vocabulary of a `tokenizers` WordPiece `tokenizer.json` (as transformers saves a BERT tokenizer),
    written once as a `vocab.txt` under tfbert's cache folder (keyed by its contents; a SavedModel takes
    it as its asset), and the tokenizer settings the file holds (its `BertNormalizer`'s, the word limit).

    Raises:
        TokenizerError: not valid JSON, not a WordPiece model with "##" continuations, or ids that are
            not 0..n-1 once each (names the file).
    """
    import hashlib

    from tfbert.checkpoints.presets import cache_dir

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}: {fileio.json_position(e)}: not valid JSON ({e.msg})") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        found = model.get("type") if isinstance(model, dict) else None
        raise TokenizerError(f"{path}: expected a WordPiece model with its vocab (BERT's), found model type {found!r}")
    if model.get("continuing_subword_prefix", "##") != "##":
        raise TokenizerError(f"{path}: continuing_subword_prefix must be '##' (BERT's), found "
                             f"{model['continuing_subword_prefix']!r}")
    by_id = {}
    for token, index in model["vocab"].items():
        if not isinstance(index, int) or isinstance(index, bool) or index in by_id:
            raise TokenizerError(f"{path}: vocab token {token!r} has id {index!r}, "
                                 + ("also given to " + repr(by_id[index]) if index in by_id else "not an integer"))
        by_id[index] = token
    if sorted(by_id) != list(range(len(by_id))):
        gap = next(i for i in range(len(by_id) + 1) if i not in by_id)
        raise TokenizerError(f"{path}: vocab ids must be 0..{len(by_id) - 1}, each once; no token has id {gap}")
    if any("\n" in token or "\r" in token for token in by_id.values()):
        raise TokenizerError(f"{path}: a vocab token holds a line break, which vocab.txt cannot")
    text = "".join(by_id[i] + "\n" for i in range(len(by_id)))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    vocab_file = os.path.join(cache_dir(), "vocab", digest, "vocab.txt")
    if not os.path.isfile(vocab_file):
        os.makedirs(os.path.dirname(vocab_file), exist_ok=True)
        with fileio.atomic_write(vocab_file, newline="") as f:
            f.write(text)
    kwargs = {}
    if isinstance(model.get("max_input_chars_per_word"), int):
        kwargs["max_input_chars_per_word"] = model["max_input_chars_per_word"]
    if isinstance(model.get("unk_token"), str):
        kwargs["unk_token"] = model["unk_token"]
    normalizer = data.get("normalizer")
    if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
        for key, name in (("lowercase", "do_lower_case"), ("strip_accents", "strip_accents"),
                          ("handle_chinese_chars", "tokenize_chinese_chars")):
            if key in normalizer:
                kwargs[name] = normalizer[key]
    return vocab_file, kwargs


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
        self._special_ids_t = tf.constant([index[t] for t in specials], dtype=tf.int32)
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
        self._traced = None  # the graph of `tokenize_with_offsets`, traced at its first call

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, **overrides) -> "BertTokenizer":
        """Builds the tokenizer of a HF directory (`vocab.txt` or, as transformers 5 saves it, `tokenizer.json`,
        with `tokenizer_config.json`), a Google BERT directory (`vocab.txt`) or a preset name such as
        "minilm-l6"."""
        from tfbert.checkpoints.presets import resolve

        directory = resolve(path_or_preset)
        vocab_file = os.path.join(directory, "vocab.txt")
        kwargs = {}
        if not os.path.isfile(vocab_file):
            if not os.path.isfile(os.path.join(directory, "tokenizer.json")):
                raise TokenizerError(f"{directory}: no vocab.txt or tokenizer.json (tfbert builds WordPiece "
                                     "tokenizers from either)")
            # transformers 5 saves a fast tokenizer as tokenizer.json alone: its WordPiece model holds the vocabulary
            vocab_file, kwargs = vocab_from_tokenizer_json(os.path.join(directory, "tokenizer.json"))
        config_file = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(config_file):
            try:
                with open(config_file, encoding="utf-8") as f:
                    config = json.load(f)
            except json.JSONDecodeError as e:
                raise TokenizerError(f"{config_file}: {fileio.json_position(e)}: not valid JSON ({e.msg})") from None
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
        elif os.path.isfile(os.path.join(directory, "bert_config.json")) and "do_lower_case" not in overrides:
            # Google checkpoints say nothing about casing; their folder names do ("uncased_L-12_...").
            folder = os.path.basename(os.path.normpath(directory)).lower()
            kwargs["do_lower_case"] = not folder.startswith(("cased", "multi_cased", "wwm_cased"))
            named = folder.startswith(("cased", "multi_cased", "wwm_cased", "uncased", "multilingual",
                                       "multi_uncased", "wwm_uncased", "chinese"))  # Google's release names
            (logger.info if named else logger.warning)(
                "%s: a Google BERT directory has no tokenizer config; %s by its folder name%s", directory,
                "lower-casing" if kwargs["do_lower_case"] else "keeping case",
                "" if named else (" (not Google's cased_*/uncased_*: lower-casing, as uncased models do); for a "
                                  'cased model write tokenizer_config.json with {"do_lower_case": false} beside '
                                  "vocab.txt"))
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
        return self.tokenize_with_offsets(texts).ids

    def tokenize_with_offsets(self, texts) -> "Tokens":
        """[n] strings -> `Tokens`: ids, `[start, end)` character offsets into each ORIGINAL text
        (code points, as transformers' `return_offsets_mapping=True` gives them) and the index of
        the word each token came from (`encoding.word_ids()`), all int32 [n, (tokens)].

        A literal special token in the text ("[MASK]") is one token and one word. Invalid UTF-8
        counts as the U+FFFD characters it is replaced by (one per invalid sequence, as Python's
        `bytes.decode("utf-8", "replace")`).

        The ops are traced once per tokenizer (about 2,000 of them, a second of Python): every
        `tf.data` map, `tf.function` and eager call after the first one calls that graph, so the
        settings it was traced with stay (make a new tokenizer to change `do_lower_case` and the like).
        """
        if self._traced is None:
            self._traced = _Traced(tf.function(self._tokenize_with_offsets, autograph=False,
                                               input_signature=[tf.TensorSpec([None], tf.string)]))
        return self._traced.function(_as_vector(texts))

    def _tokenize_with_offsets(self, texts) -> "Tokens":
        words = self._words(texts)
        # WordPiece on the ordinary words, each piece's byte offsets in its word turned into characters.
        pieces, piece_begins, piece_ends = self._wordpiece.tokenize_with_offsets(words.strings)
        word_of_piece = tf.cast(pieces.value_rowids(), tf.int32)
        code_points = words.chars.flat_values
        char_bytes = (1 + tf.cast(code_points >= 0x80, tf.int32) + tf.cast(code_points >= 0x800, tf.int32)
                      + tf.cast(code_points >= 0x10000, tf.int32))
        char_byte_start = tf.cumsum(char_bytes, exclusive=True)
        first_char = tf.cast(words.chars.row_starts(), tf.int32)
        last_char = tf.cast(words.chars.row_limits(), tf.int32) - 1
        word_byte_start = tf.gather(char_byte_start, first_char)

        def char_at(byte_offsets):  # the char that starts at each byte offset of a piece in its word
            global_bytes = tf.gather(word_byte_start, word_of_piece) + tf.cast(byte_offsets.flat_values, tf.int32)
            return tf.searchsorted(char_byte_start, global_bytes, side="left")

        # A word over the length limit is one [UNK] spanning the whole word.
        too_long = tf.gather(words.too_long, word_of_piece)
        first = tf.where(too_long, tf.gather(first_char, word_of_piece), char_at(piece_begins))
        last = tf.where(too_long, tf.gather(last_char, word_of_piece), char_at(piece_ends) - 1)
        piece_values = tf.stack([tf.cast(pieces.flat_values, tf.int32), tf.gather(words.positions, first),
                                 tf.gather(words.positions, last) + 1], axis=1)
        ordinary = tf.RaggedTensor.from_row_splits(piece_values, pieces.row_splits)
        # Special tokens are words of one token; merged with the ordinary words in text order.
        special_values = tf.stack([words.special_ids, words.special_starts, words.special_ends], axis=1)
        special = tf.RaggedTensor.from_row_lengths(special_values, tf.ones_like(words.special_ids, tf.int64))
        order = tf.argsort(tf.concat([words.segment, words.special_segment], 0), stable=True)
        per_word = tf.gather(tf.concat([ordinary, special], 0), order)
        row_of_word = tf.gather(tf.concat([words.row, words.special_row], 0), order)
        by_row = tf.RaggedTensor.from_value_rowids(per_word, tf.cast(row_of_word, tf.int64), nrows=words.num_texts)
        word_in_row = tf.cast(tf.range(tf.size(row_of_word, out_type=tf.int64)) - tf.gather(by_row.row_starts(),
                                                                                            row_of_word), tf.int32)
        word_ids = tf.repeat(word_in_row, tf.cast(per_word.row_lengths(), tf.int32))
        tokens = by_row.merge_dims(1, 2)
        values = tokens.flat_values
        return Tokens(*(tokens.with_flat_values(v) for v in (values[:, 0], values[:, 1], values[:, 2], word_ids)))

    def pre_tokenize(self, texts) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """[n] strings -> the normalised words of each text (what WordPiece then splits) and their
        `[start, end)` character offsets in the original text: three [n, (words)] tensors
        (strings, int32, int32). Literal special tokens are words too."""
        words = self._words(texts, unk_for_long_words=False)
        strings = tf.concat([words.strings, words.special_strings], 0)
        starts = tf.concat([tf.gather(words.positions, tf.cast(words.chars.row_starts(), tf.int32)),
                            words.special_starts], 0)
        ends = tf.concat([tf.gather(words.positions, tf.cast(words.chars.row_limits(), tf.int32) - 1) + 1,
                          words.special_ends], 0)
        order = tf.argsort(tf.concat([words.segment, words.special_segment], 0), stable=True)
        rows = tf.cast(tf.gather(tf.concat([words.row, words.special_row], 0), order), tf.int64)
        return tuple(tf.RaggedTensor.from_value_rowids(tf.gather(part, order), rows, nrows=words.num_texts)
                     for part in (strings, starts, ends))

    def _words(self, texts, unk_for_long_words: bool = True) -> "_Words":
        """Splits texts at literal special tokens, normalises the rest and splits it into words,
        keeping each character's position in its original text."""
        texts = _as_vector(texts)
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        # RegexSplitWithOffsets stops at a NUL byte. HF drops U+0000 in clean_text; a private-use
        # character (also dropped, and also one character) stands in for it.
        texts = tf.strings.regex_replace(texts, "\x00", "\uE000")
        # Special tokens written in the text are tokens of their own (HF's added-token split).
        segments, begins, _ = tf_text.regex_split_with_offsets(
            texts, delim_regex_pattern=self._special_pattern, keep_delim_regex_pattern=self._special_pattern)
        flat = segments.flat_values
        matches = tf.equal(tf.expand_dims(flat, 1), tf.expand_dims(self._special_tokens_t, 0))
        is_special = tf.reduce_any(matches, axis=1)
        row_of_segment = tf.cast(segments.value_rowids(), tf.int32)
        segment_start = tf.strings.length(  # in characters of its text
            tf.strings.substr(tf.gather(texts, row_of_segment), tf.zeros_like(begins.flat_values), begins.flat_values),
            unit="UTF8_CHAR")
        special_segment = tf.cast(tf.where(is_special)[:, 0], tf.int32)
        special_start = tf.gather(segment_start, special_segment)

        # The characters of the ordinary segments, normalised, each with its position in its text.
        chars = tf.strings.unicode_decode(tf.where(is_special, "", flat), "UTF-8")
        segment_of_char = tf.cast(chars.value_rowids(), tf.int32)
        position = (tf.range(tf.size(chars.flat_values)) - tf.cast(tf.gather(chars.row_starts(), segment_of_char), tf.int32)
                    + tf.gather(segment_start, segment_of_char))
        normalized = normalization.normalize_code_points(
            chars.flat_values, lowercase=self.do_lower_case, strip_accents=self.strip_accents,
            handle_chinese_chars=self.tokenize_chinese_chars)
        segment_of_char = tf.gather(segment_of_char, normalized.source)
        position = tf.gather(position, normalized.source)

        # Words: each non-space char joins the word that starts at or before it.
        starts = normalization.word_starts(normalized, segment_of_char)
        in_word = tf.not_equal(normalized.code_points, normalization.SPACE)
        word_of_char = tf.boolean_mask(tf.cumsum(tf.cast(starts, tf.int64)) - 1, in_word)
        word_chars = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(normalized.code_points, in_word), word_of_char,
                                                       nrows=tf.reduce_sum(tf.cast(starts, tf.int64)))
        segment_of_word = tf.gather(tf.boolean_mask(segment_of_char, in_word), tf.cast(word_chars.row_starts(), tf.int32))
        too_long = word_chars.row_lengths() > self.max_input_chars_per_word
        strings = tf.strings.unicode_encode(word_chars, "UTF-8")
        if unk_for_long_words:
            strings = tf.where(too_long, self.special_tokens["unk_token"], strings)
        return _Words(
            num_texts=tf.shape(texts, out_type=tf.int64)[0], chars=word_chars, strings=strings, too_long=too_long,
            positions=tf.boolean_mask(position, in_word), segment=segment_of_word,
            row=tf.gather(row_of_segment, segment_of_word),
            special_ids=tf.gather(tf.reduce_max(tf.where(matches, self._special_ids_t, -1), axis=1), special_segment),
            special_strings=tf.gather(flat, special_segment),
            special_segment=special_segment, special_row=tf.gather(row_of_segment, special_segment),
            special_starts=special_start,
            special_ends=special_start + tf.gather(tf.strings.length(flat, unit="UTF8_CHAR"), special_segment))

    def tokenize_words(self, words) -> "Tokens":
        """Pre-split input (transformers' `is_split_into_words=True`): [n, (words)] strings -> `Tokens`
        whose word ids are the index of the given word and whose offsets are character offsets
        into that word, as transformers gives them. A word that normalises to nothing (empty,
        spaces, control characters) gives no token."""
        if not isinstance(words, tf.RaggedTensor):
            words = tf.ragged.constant(words, dtype=tf.string) if isinstance(words, (list, tuple)) else \
                tf.RaggedTensor.from_tensor(tf.convert_to_tensor(words, tf.string))
        per_word = self.tokenize_with_offsets(words.flat_values)
        word_position = tf.cast(tf.range(tf.size(words.flat_values, out_type=tf.int64))
                                - tf.gather(words.row_starts(), words.value_rowids()), tf.int32)
        word_ids = per_word.word_ids.with_flat_values(
            tf.gather(word_position, tf.cast(per_word.word_ids.value_rowids(), tf.int32)))
        per_word = Tokens(per_word.ids, per_word.starts, per_word.ends, word_ids)
        return Tokens(*(tf.RaggedTensor.from_row_splits(part, words.row_splits).merge_dims(1, 2) for part in per_word))

    def __call__(self, text, text_pair=None, max_length: int | None = None, padding: str = "longest",
                 truncation: bool = True, return_offsets: bool = False,
                 is_split_into_words: bool = False) -> dict[str, tf.Tensor]:
        """Tokenizes and packs a batch as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.

        Args:
            text: [batch] strings (a single string is a batch of one); with `is_split_into_words`,
                [batch, (words)] strings (a ragged tensor or a list of lists).
            text_pair: optional [batch] second segments (of words, with `is_split_into_words`).
            max_length: the packed length limit; defaults to `model_max_length`.
            padding: "longest" pads to the longest row of the batch, "max_length" to `max_length`.
            truncation: truncate to `max_length` (longest-first for pairs, as HF).
            return_offsets: also return `offsets` and `word_ids` (see Returns).
            is_split_into_words: the input is pre-split into words, as transformers'
                `is_split_into_words=True`: word ids index the given words, offsets are
                characters within each word.

        Returns:
            `input_ids`, `token_type_ids`, `attention_mask`: int32 [batch, seq]. With
            `return_offsets`: `offsets` int32 [batch, seq, 2], the `[start, end)` characters of
            each token in its ORIGINAL text (0, 0 for special tokens and padding), and
            `word_ids` int32 [batch, seq], the word of each token in its own text (-1 for special
            tokens and padding), as transformers' `offset_mapping` and `word_ids()`.
        """
        tokenize = self.tokenize_words if is_split_into_words else self.tokenize_with_offsets
        first = tokenize(text)
        second = None if text_pair is None else tokenize(text_pair)
        if not return_offsets:
            first, second = first.ids, None if second is None else second.ids
        return self.pack(first, second, max_length=max_length, padding=padding, truncation=truncation)

    def pack(self, first: "tf.RaggedTensor | Tokens", second: "tf.RaggedTensor | Tokens | None" = None,
             max_length: int | None = None, padding: str = "longest", truncation: bool = True) -> dict[str, tf.Tensor]:
        """Packs tokenized segments (ids from `tokenize`, or `Tokens`) with special tokens, truncates and
        pads. Given `Tokens`, the result also has `offsets` and `word_ids` (see `__call__`)."""
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', found {padding!r}")
        max_length = int(max_length or self.model_max_length)
        num_special = 2 if second is None else 3
        if max_length < num_special:
            raise ValueError(f"max_length {max_length} leaves no room for the {num_special} special tokens")
        with_offsets = isinstance(first, Tokens)
        # Each segment as its parts: (ids, starts, ends, word_ids) or (ids,).
        segments = [tuple(segment) if with_offsets else (segment,) for segment in (first, second) if segment is not None]
        if truncation:
            budget = max_length - num_special
            lengths = [segment[0].row_lengths() for segment in segments]
            if second is None:
                keep = [tf.minimum(lengths[0], budget)]
            else:
                keep = longest_first_lengths(lengths[0], lengths[1], budget)
            segments = [tuple(_truncate(part, k) for part in segment) for segment, k in zip(segments, keep)]
        batch = segments[0][0].nrows()

        def special(value):
            return tf.fill([batch, 1], tf.constant(value, tf.int32))

        # Part by part, with the value each takes at [CLS] and at [SEP].
        at_special = [(self.cls_id, self.sep_id), (0, 0), (0, 0), (-1, -1)]
        packed = []
        for index in range(len(segments[0])):
            at_cls, at_sep = at_special[index]
            parts = [special(at_cls)]
            for segment in segments:
                parts += [segment[index], special(at_sep)]
            packed.append(tf.concat(parts, axis=1))
        type_parts = [special(0)]
        for type_id, segment in enumerate(segments):
            type_parts += [tf.ones_like(segment[0]) * type_id, special(type_id)]
        ids = packed[0]
        shape = [None, max_length] if padding == "max_length" else None
        result = {
            "input_ids": ids.to_tensor(default_value=self.pad_id, shape=shape),
            "token_type_ids": tf.concat(type_parts, axis=1).to_tensor(default_value=0, shape=shape),
            "attention_mask": tf.ones_like(ids).to_tensor(default_value=0, shape=shape),
        }
        if with_offsets:
            result["offsets"] = tf.stack([packed[1].to_tensor(default_value=0, shape=shape),
                                          packed[2].to_tensor(default_value=0, shape=shape)], axis=-1)
            result["word_ids"] = packed[3].to_tensor(default_value=-1, shape=shape)
        return result


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


def _as_vector(texts) -> tf.Tensor:
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    return texts if texts.shape.rank == 1 else tf.reshape(texts, [-1])


class _Traced:
    """Holds a traced function out of the tokenizer's tracked state (a plain object, not a
    `tf.Module` attribute), so SavedModels that track the tokenizer do not save it as a function
    of their own; the graphs that call it carry it."""

    def __init__(self, function):
        self.function = function


def _truncate(tokens: tf.RaggedTensor, keep) -> tf.RaggedTensor:
    positions = tf.ragged.range(tokens.row_lengths())
    return tf.ragged.boolean_mask(tokens, positions < tf.expand_dims(tf.cast(keep, tf.int64), 1))


class Tokens(NamedTuple):
    """Tokenized texts, all int32 [n, (tokens)] with the same row lengths.

    Attributes:
        ids: WordPiece ids.
        starts, ends: `[start, end)` character offsets (code points) of each token in its text.
        word_ids: the index of the word each token belongs to, counted from 0 in each text.
    """

    ids: tf.RaggedTensor
    starts: tf.RaggedTensor
    ends: tf.RaggedTensor
    word_ids: tf.RaggedTensor


class _Words(NamedTuple):
    """What `BertTokenizer._words` finds in a batch of texts: the ordinary words (normalised, flat over
    the batch, in text order) and the literal special tokens, each with its segment (the piece of text
    between special tokens, numbered over the batch) and its text (row)."""

    num_texts: tf.Tensor
    chars: tf.RaggedTensor  # [words, (chars)] int32 code points
    strings: tf.Tensor  # [words] the word as UTF-8 ([UNK] for a word over the length limit)
    too_long: tf.Tensor  # [words] bool
    positions: tf.Tensor  # [chars] int32 position of each char in its original text
    segment: tf.Tensor  # [words] int32
    row: tf.Tensor  # [words] int32
    special_ids: tf.Tensor  # [specials] int32
    special_strings: tf.Tensor
    special_segment: tf.Tensor
    special_row: tf.Tensor
    special_starts: tf.Tensor
    special_ends: tf.Tensor
