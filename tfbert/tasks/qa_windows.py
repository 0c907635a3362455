"""Question + context packed into overlapping windows, in the graph: the features of extractive QA.

One function serves training, evaluation and the exported SavedModel, so the windows a model is
served with are the windows it was trained on. As transformers' `run_qa.py` (truncation
"only_second" with `return_overflowing_tokens`): the question is cut to `max_query_length` tokens,
each window is `[CLS] question [SEP] context piece [SEP]` of at most `max_seq_length` tokens, and
consecutive pieces of a long context overlap by `doc_stride` tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

FEATURES = ("input_ids", "token_type_ids", "attention_mask")


class Windows(NamedTuple):
    """The windows of a batch of (question, context) pairs, W windows in all.

    Attributes:
        features: `input_ids`, `token_type_ids`, `attention_mask` int32 [W, seq] (padded to the longest).
        example: int32 [W], the pair each window comes from (windows of a pair are consecutive).
        char_start / char_end: int32 [W, seq], `[start, end)` characters of each context token in
            its ORIGINAL context; -1 for the question, special tokens and padding.
    """

    features: dict
    example: tf.Tensor
    char_start: tf.Tensor
    char_end: tf.Tensor


def check_lengths(max_seq_length: int, max_query_length: int, doc_stride: int) -> str | None:
    """Why these lengths cannot make windows, or None when they can."""
    room = max_seq_length - max_query_length - 3
    if max_query_length < 1 or doc_stride < 0:
        return "max_query_length must be at least 1 and doc_stride at least 0"
    if room < 1:
        return (f"max_seq_length {max_seq_length} leaves no context token in a window after a question of "
                f"max_query_length {max_query_length} and 3 special tokens: raise max_seq_length or lower "
                "max_query_length")
    if room <= doc_stride:
        return (f"max_seq_length {max_seq_length} leaves {room} context tokens per window after a question of "
                f"max_query_length {max_query_length} and 3 special tokens; doc_stride ({doc_stride}) must be "
                "smaller, or the windows would not move forward")
    return None


def make_windows(tokenizer, questions, contexts, max_seq_length: int, max_query_length: int,
                 doc_stride: int) -> Windows:
    """[n] questions and [n] contexts (strings) -> their `Windows` (at least one per pair, also for an
    empty context). Graph-safe: only TF and tf_text ops."""
    question = tokenizer.tokenize_with_offsets(questions).ids
    question = question[:, :max_query_length]
    context = tokenizer.tokenize_with_offsets(contexts)
    q_len = question.row_lengths()
    c_len = context.ids.row_lengths()
    budget = tf.cast(max_seq_length - 3, tf.int64) - q_len  # context tokens per window
    step = budget - doc_stride
    windows = 1 + (tf.maximum(c_len - budget, 0) + step - 1) // step
    number = tf.ragged.range(windows)
    example = number.value_rowids()
    start = number.flat_values * tf.gather(step, example)
    size = tf.maximum(tf.minimum(tf.gather(budget, example), tf.gather(c_len, example) - start), 0)
    positions = tf.ragged.range(start, start + size) + tf.gather(context.ids.row_starts(), example)[:, None]

    def piece(part):
        return positions.with_flat_values(tf.gather(part.flat_values, positions.flat_values))

    packed = tokenizer.pack(tf.gather(question, example), piece(context.ids), max_length=max_seq_length,
                            padding="longest", truncation=False)
    width = tf.shape(packed["input_ids"])[1]
    first = tf.cast(tf.gather(q_len, example) + 2, tf.int32)  # [CLS] question [SEP]
    offsets = tf.ragged.range(tf.cast(size, tf.int32))
    column = offsets + first[:, None]

    def place(values):  # a context piece's values at its positions of the packed row, -1 elsewhere
        index = tf.stack([tf.cast(column.value_rowids(), tf.int32), column.flat_values], axis=1)
        return tf.tensor_scatter_nd_update(-tf.ones([tf.shape(first)[0], width], tf.int32), index,
                                           values.flat_values)

    return Windows({name: packed[name] for name in FEATURES}, tf.cast(example, tf.int32),
                   place(piece(context.starts)), place(piece(context.ends)))


def answer_positions(char_start: np.ndarray, char_end: np.ndarray, answer_start: int | None,
                     answer_text: str | None) -> tuple[int, int]:
    """The (start, end) token positions of an answer in one window (numpy rows of `Windows`), or (0, 0)
    ([CLS]) when the window does not hold the whole answer or there is none, as `run_qa.py` labels."""
    if answer_start is None:
        return 0, 0
    answer_end = answer_start + len(answer_text)
    context = np.flatnonzero(char_start >= 0)
    if not len(context) or char_start[context[0]] > answer_start or char_end[context[-1]] < answer_end:
        return 0, 0
    starts, ends = char_start[context], char_end[context]
    start = context[np.flatnonzero(starts <= answer_start)[-1]]
    end = context[np.flatnonzero(ends >= answer_end)[0]]
    return int(start), int(end)
