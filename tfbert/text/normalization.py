"""Hugging Face's BERT normalisation and pre-tokenisation, rebuilt as TensorFlow graph ops.

transformers' `BertTokenizerFast` (the `tokenizers` BertNormalizer + BertPreTokenizer) does,
per text: drop control characters, U+0000 and U+FFFD; turn whitespace into spaces; put spaces
around CJK ideographs; when lower-casing, NFD-decompose and drop non-spacing marks (accents),
then lower-case; split on whitespace and around every punctuation character.

`tensorflow_text.BertTokenizer` differs from that (NFKC case folding, kept control
characters), so we rebuild it from core string ops plus the TF Text ops that stock TF Serving
ships (`NormalizeUTF8`, `RegexSplitWithOffsets`), so the graph exports to a SavedModel that
TF Serving runs. The character classes come from `tokenizers` itself (see unicode_tables.py):
its Unicode tables are older than RE2's, and `\p{P}` or `\p{Mn}` would differ on ~900 newer
characters.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.text.unicode_tables import (CJK, LOWERCASE, NFD_OVERRIDES, NONSPACING_MARKS, PUNCTUATION, REMOVED,
                                        WHITESPACE)

PLACEHOLDER_BASE = 0xE000  # start of the Private Use Area

def clean_text(text: tf.Tensor) -> tf.Tensor:
    """Whitespace -> space; control, format, private-use, unassigned chars and U+FFFD removed."""
    text = tf.strings.regex_replace(text, f"[{WHITESPACE}]", " ")
    return tf.strings.regex_replace(text, f"[{REMOVED}]", "")


def pad_cjk(text: tf.Tensor) -> tf.Tensor:
    return tf.strings.regex_replace(text, f"([{CJK}])", r" \1 ")


def strip_accents(text: tf.Tensor) -> tf.Tensor:
    """NFD, then drop non-spacing marks.

    For the few characters whose decomposition differs between TF's ICU and `tokenizers`
    (scripts added in recent Unicode versions), HF's result is swapped in: they are first
    replaced by private-use placeholders (clean_text has removed every real private-use
    character), which NFD leaves alone, and expanded afterwards.
    """
    placeholders = {c: [PLACEHOLDER_BASE + i] for i, c in enumerate(sorted(NFD_OVERRIDES))}
    text = map_chars(text, placeholders)
    text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), f"[{NONSPACING_MARKS}]", "")
    return map_chars(text, {PLACEHOLDER_BASE + i: list(NFD_OVERRIDES[c]) for i, c in enumerate(sorted(NFD_OVERRIDES))})


def map_chars(text: tf.Tensor, mapping: dict[int, list[int]]) -> tf.Tensor:
    """Replaces each code point that is a key of `mapping` by its list of code points.

    Core ops only (`UnicodeDecode`, `LowerBound`, `Gather`, `Repeat`, `UnicodeEncode`), so it
    runs in TF Serving; the table is a few constants, not a lookup-table resource.
    """
    if not mapping:
        return text
    keys = sorted(mapping)
    key_t = tf.constant(keys, dtype=tf.int32)
    seq_lengths = tf.constant([len(mapping[k]) for k in keys], dtype=tf.int32)
    seq_starts = tf.constant(np.cumsum([0] + [len(mapping[k]) for k in keys])[:-1], dtype=tf.int32)
    seq_values = tf.constant([c for k in keys for c in mapping[k]] or [0], dtype=tf.int32)

    chars = tf.strings.unicode_decode(text, "UTF-8", errors="replace")
    flat = chars.flat_values
    index = tf.minimum(tf.searchsorted(key_t, flat, side="left"), len(keys) - 1)
    mapped = tf.equal(tf.gather(key_t, index), flat)
    lengths = tf.where(mapped, tf.gather(seq_lengths, index), 1)
    # Output position j comes from input char source[j], at offset j - (start of source[j]).
    source = tf.repeat(tf.range(tf.size(flat)), lengths)
    offset = tf.range(tf.size(source)) - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths)
    from_table = tf.gather(seq_values, tf.gather(seq_starts, tf.gather(index, source)) + offset)
    out = tf.where(tf.gather(mapped, source), from_table, tf.gather(flat, source))
    row_lengths = tf.reduce_sum(chars.with_flat_values(lengths), axis=-1)
    return tf.strings.unicode_encode(tf.RaggedTensor.from_row_lengths(out, row_lengths), "UTF-8")


def normalize(text: tf.Tensor, lowercase: bool = True, strip_accents_: bool | None = None,
              handle_chinese_chars: bool = True) -> tf.Tensor:
    """BertNormalizer(clean_text=True, ...) on a string tensor of any shape."""
    text = clean_text(text)
    if handle_chinese_chars:
        text = pad_cjk(text)
    if lowercase if strip_accents_ is None else strip_accents_:
        text = strip_accents(text)
    if lowercase:
        text = map_chars(text, LOWERCASE)
    return text


def split_words(text: tf.Tensor) -> tf.RaggedTensor:
    """BertPreTokenizer: [n] strings -> [n, (words)]: split on spaces, punctuation kept as words."""
    words, _, _ = tf_text.regex_split_with_offsets(
        text, delim_regex_pattern=f" +|[{PUNCTUATION}]", keep_delim_regex_pattern=f"[{PUNCTUATION}]")
    return words
