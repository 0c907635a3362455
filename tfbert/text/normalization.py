"""Hugging Face's BERT normalisation and pre-tokenisation, rebuilt as TensorFlow graph ops on code points.

transformers' `BertTokenizerFast` (the `tokenizers` BertNormalizer + BertPreTokenizer) does,
per text: drop control characters, U+0000 and U+FFFD; turn whitespace into spaces; put spaces
around CJK ideographs; when lower-casing, NFD-decompose and drop non-spacing marks (accents),
then lower-case; split on whitespace and around every punctuation character.

Every step here works on a flat vector of code points and keeps, for each output character,
the index of the input character it came from. That is how `tokenizers` keeps the alignment
between the normalised and the original text, and what gives character offsets into the
ORIGINAL string even where normalisation deletes characters (control characters, accents) or
rewrites them (one character lower-cased into two).

`tensorflow_text.BertTokenizer` differs from HF (NFKC case folding, kept control characters),
so the steps are rebuilt from core ops (`UnicodeDecode`/`UnicodeEncode`, `SearchSorted`,
`Gather`, ...) plus `NormalizeUTF8`, a TF Text op that stock TF Serving ships. The character
classes come from `tokenizers` itself (unicode_tables.py): its Unicode tables are older than
RE2's and ICU's, and `\\p{P}` or `\\p{Mn}` would differ on ~900 newer characters.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.text import unicode_tables

PLACEHOLDER_BASE = 0xE000  # start of the Private Use Area, which clean_text has emptied
SPACE = 0x20


class CharClass:
    """A set of code points given as sorted ranges, tested with one `searchsorted`."""

    def __init__(self, re2_class_body: str):
        ranges = []
        for match in re.finditer(r"\\x\{([0-9A-F]+)\}(?:-\\x\{([0-9A-F]+)\})?", re2_class_body):
            first = int(match.group(1), 16)
            ranges.append((first, int(match.group(2), 16) if match.group(2) else first))
        self.starts = np.array([a for a, _ in ranges], np.int32)
        self.ends = np.array([b for _, b in ranges], np.int32)

    def contains(self, code_points: tf.Tensor) -> tf.Tensor:
        """bool, same shape as the int32 1-D `code_points`."""
        starts = tf.constant(self.starts)
        index = tf.searchsorted(starts, code_points, side="right") - 1
        inside = tf.gather(tf.constant(self.ends), tf.maximum(index, 0)) >= code_points
        return tf.logical_and(index >= 0, inside)


REMOVED = CharClass(unicode_tables.REMOVED)
WHITESPACE = CharClass(unicode_tables.WHITESPACE)
NONSPACING_MARKS = CharClass(unicode_tables.NONSPACING_MARKS)
PUNCTUATION = CharClass(unicode_tables.PUNCTUATION)
CJK = CharClass(unicode_tables.CJK)


class Chars(NamedTuple):
    """Normalised characters: code points, the input index of each, and whether each stands alone
    as a word (punctuation, CJK). All int32/bool [n]."""

    code_points: tf.Tensor
    source: tf.Tensor
    isolated: tf.Tensor


def map_code_points(code_points: tf.Tensor, mapping: dict[int, list[int]]) -> tuple[tf.Tensor, tf.Tensor]:
    """Replaces each code point that is a key of `mapping` by its list of code points.

    Returns (new code points, index of the input char each came from). The table is a few
    constants searched with `searchsorted`, not a lookup-table resource.
    """
    if not mapping:
        return code_points, tf.range(tf.size(code_points))
    keys = sorted(mapping)
    key_t = tf.constant(keys, dtype=tf.int32)
    seq_lengths = tf.constant([len(mapping[k]) for k in keys], dtype=tf.int32)
    seq_starts = tf.constant(np.cumsum([0] + [len(mapping[k]) for k in keys])[:-1], dtype=tf.int32)
    seq_values = tf.constant([c for k in keys for c in mapping[k]] or [0], dtype=tf.int32)

    index = tf.minimum(tf.searchsorted(key_t, code_points, side="left"), len(keys) - 1)
    mapped = tf.equal(tf.gather(key_t, index), code_points)
    lengths = tf.where(mapped, tf.gather(seq_lengths, index), 1)
    # Output position j comes from input char source[j], at offset j - (start of source[j]).
    source = tf.repeat(tf.range(tf.size(code_points)), lengths)
    offset = tf.range(tf.size(source)) - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths)
    from_table = tf.gather(seq_values, tf.gather(seq_starts, tf.gather(index, source)) + offset)
    return tf.where(tf.gather(mapped, source), from_table, tf.gather(code_points, source)), source


def _strip_accents(code_points: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """NFD of each character on its own, then non-spacing marks dropped.

    Only non-ASCII characters go through `NormalizeUTF8`. For the few characters whose
    decomposition differs between TF's ICU and `tokenizers` (scripts added in recent Unicode
    versions), HF's result is used: they pass through NFD as private-use placeholders.
    """
    overrides = sorted(unicode_tables.NFD_OVERRIDES)
    placeholders = {c: [PLACEHOLDER_BASE + i] for i, c in enumerate(overrides)}
    restore = {PLACEHOLDER_BASE + i: list(unicode_tables.NFD_OVERRIDES[c]) for i, c in enumerate(overrides)}
    code_points, _ = map_code_points(code_points, placeholders)  # one char each: same indices
    wide = code_points >= 0x80
    decomposed = tf.strings.unicode_decode(tf_text.normalize_utf8(
        tf.strings.unicode_encode(tf.expand_dims(tf.boolean_mask(code_points, wide), 1), "UTF-8"), "NFD"), "UTF-8")
    # Row i of `rows` is what char i becomes: itself (ASCII), or its decomposition.
    singles = tf.RaggedTensor.from_row_lengths(code_points, tf.ones_like(code_points, tf.int64))
    wide_rank = tf.cumsum(tf.cast(wide, tf.int32), exclusive=True)
    pick = tf.where(wide, tf.size(code_points) + wide_rank, tf.range(tf.size(code_points)))
    rows = tf.gather(tf.concat([singles, tf.cast(decomposed, tf.int32)], axis=0), pick)
    values, source = rows.flat_values, tf.cast(rows.value_rowids(), tf.int32)
    keep = tf.logical_not(NONSPACING_MARKS.contains(values))
    values, source = tf.boolean_mask(values, keep), tf.boolean_mask(source, keep)
    values, restored_source = map_code_points(values, restore)
    return values, tf.gather(source, restored_source)


def normalize_code_points(code_points: tf.Tensor, lowercase: bool = True, strip_accents: bool | None = None,
                          handle_chinese_chars: bool = True) -> Chars:
    """BertNormalizer(clean_text=True, ...) on a flat int32 vector of code points.

    Args:
        code_points: int32 [n], the characters of one or more texts one after the other.
        lowercase: lower-case (and, unless `strip_accents` says otherwise, strip accents).
        strip_accents: None follows `lowercase`, as in HF.
        handle_chinese_chars: CJK ideographs become words of their own.

    Returns:
        `Chars`: the normalised characters, each with the index of the input char it came from
        and whether it is a word of its own.
    """
    source = tf.range(tf.size(code_points))
    # clean_text: control/format/private-use characters and U+FFFD go, whitespace becomes a space.
    keep = tf.logical_not(REMOVED.contains(code_points))
    code_points, source = tf.boolean_mask(code_points, keep), tf.boolean_mask(source, keep)
    code_points = tf.where(WHITESPACE.contains(code_points), SPACE, code_points)
    # handle_chinese_chars: whatever a CJK character becomes stands alone.
    cjk = CJK.contains(code_points) if handle_chinese_chars else tf.zeros_like(code_points, tf.bool)
    if lowercase if strip_accents is None else strip_accents:
        code_points, step = _strip_accents(code_points)
        source, cjk = tf.gather(source, step), tf.gather(cjk, step)
    if lowercase:
        code_points, step = map_code_points(code_points, unicode_tables.LOWERCASE)
        source, cjk = tf.gather(source, step), tf.gather(cjk, step)
    return Chars(code_points, source, tf.logical_or(cjk, PUNCTUATION.contains(code_points)))


def word_starts(chars: Chars, segment: tf.Tensor) -> tf.Tensor:
    """BertPreTokenizer: bool [n], True where a word begins; spaces begin none (they are dropped).

    A word is a run of characters that are neither spaces nor isolated; each isolated character
    (punctuation, CJK) is a word by itself; `segment` (int [n], non-decreasing) says which text
    each character belongs to, and no word crosses from one text into the next.
    """
    is_space = tf.equal(chars.code_points, SPACE)
    previous = lambda x, first: tf.concat([[first], x[:-1]], axis=0)  # noqa: E731
    new_segment = tf.not_equal(segment, previous(segment, -1))
    boundary = new_segment | previous(is_space, True) | previous(chars.isolated, True) | chars.isolated
    return tf.logical_and(tf.logical_not(is_space), boundary)
