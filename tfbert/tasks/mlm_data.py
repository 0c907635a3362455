"""Masked-LM examples in tf.data: documents tokenized by the in-graph tokenizer, packed into blocks, and
masked on the fly (new masks every epoch, from a seed).

Blocks: in document mode every document's tokens are followed by [SEP] and the whole stream is cut
into pieces of `max_seq_length - 2` tokens, each wrapped as `[CLS] piece [SEP]` (transformers'
`run_mlm.py` concatenates and chunks texts the same way); with `line_by_line` each document is one
example, cut at `max_seq_length`.

Masking (BERT's recipe, transformers' `DataCollatorForLanguageModeling`): each token that is not a
special token ([CLS], [SEP], [PAD], [MASK]) is chosen with probability `mlm_probability`; of the chosen,
80% become [MASK], 10% a random token and 10% stay. With `whole_word_masking`, words (a token and the
"##" pieces that follow it) are chosen instead, all of their tokens together. Every example has at
least one chosen token. The labels are the original ids at the chosen positions (`masked_positions`),
so the loss and the logits cover only those.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfbert.data import pipeline
from tfbert.tasks.masked_lm import IGNORE_LABEL

_TOKENIZE_BATCH = 64


def _token_stream(texts: list[str], tokenizer, separate: bool) -> tf.data.Dataset:
    """Per document: its token ids and word-start flags (a token that begins a word), [SEP] appended
    when `separate`."""
    def tokenize(batch):
        tokens = tokenizer.tokenize_with_offsets(batch)
        ids, words = tokens.ids, tokens.word_ids
        previous = tf.concat([tf.fill([words.nrows(), 1], -1), words[:, :-1].to_tensor(-1)], axis=1)
        starts = tf.cast(tf.not_equal(words.to_tensor(-2), previous), tf.int32)
        starts = tf.RaggedTensor.from_tensor(starts, lengths=ids.row_lengths())
        if separate:
            sep = tf.fill([ids.nrows(), 1], tf.constant(tokenizer.sep_id, tf.int32))
            ids = tf.concat([ids, sep], axis=1)
            starts = tf.concat([starts, tf.ones_like(sep)], axis=1)
        return ids, starts

    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(_TOKENIZE_BATCH).map(tokenize)
    return dataset.unbatch()


def block_dataset(texts: list[str], tokenizer, max_seq_length: int, line_by_line: bool) -> tf.data.Dataset:
    """(ids, word_starts) per example, each `[CLS] ... [SEP]`, at most `max_seq_length` tokens."""
    piece = max_seq_length - 2
    cls = tf.constant([tokenizer.cls_id], tf.int32)
    sep = tf.constant([tokenizer.sep_id], tf.int32)
    one = tf.constant([1], tf.int32)

    def wrap(ids, starts):
        return tf.concat([cls, ids[:piece], sep], 0), tf.concat([one, starts[:piece], one], 0)

    stream = _token_stream(texts, tokenizer, separate=not line_by_line)
    if line_by_line:
        return stream.filter(lambda ids, _: tf.size(ids) > 0).map(wrap)
    return stream.unbatch().batch(piece).map(wrap)


def special_ids(tokenizer) -> list[int]:
    return [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id]


def mask_tokens(ids, word_starts, seed, *, mask_id: int, vocab_size: int, specials: list[int],
                mlm_probability: float, whole_word_masking: bool):
    """One example's masked inputs and labels; `seed` is a [2] int64 stateless seed."""
    is_special = tf.reduce_any(tf.equal(ids[:, None], tf.constant(specials, tf.int32)[None, :]), axis=1)
    length = tf.shape(ids)[0]
    if whole_word_masking:
        word_starts = tf.where(is_special, 1, word_starts)  # specials are words of their own
        word = tf.cumsum(word_starts) - 1
        draw = tf.random.stateless_uniform([length], seed)
        chosen = tf.gather(draw, word) < mlm_probability  # a word's draw, read at each of its tokens
    else:
        chosen = tf.random.stateless_uniform([length], seed) < mlm_probability
    chosen &= ~is_special
    # At least one prediction per example: the first candidate token (or word), chosen at random.
    candidates = tf.cast(~is_special, tf.float32)
    fallback = tf.argmax(candidates * tf.random.stateless_uniform([length], seed + 1) + candidates, output_type=tf.int32)
    if whole_word_masking:
        fallback_mask = tf.equal(word, tf.gather(word, fallback)) & ~is_special
    else:
        fallback_mask = tf.equal(tf.range(length), fallback)
    chosen = tf.where(tf.reduce_any(chosen) | ~tf.reduce_any(~is_special), chosen, fallback_mask)
    action = tf.random.stateless_uniform([length], seed + 2)
    random_ids = tf.random.stateless_uniform([length], seed + 3, minval=0, maxval=vocab_size, dtype=tf.int32)
    masked = tf.where(chosen & (action < 0.8), mask_id, tf.where(chosen & (action >= 0.9), random_ids, ids))
    positions = tf.cast(tf.where(chosen)[:, 0], tf.int32)
    features = {"input_ids": masked, "token_type_ids": tf.zeros_like(ids), "attention_mask": tf.ones_like(ids),
                "masked_positions": positions}
    return features, tf.gather(ids, positions)


def masked_dataset(blocks: tf.data.Dataset, tokenizer, *, seed: int, mlm_probability: float,
                   whole_word_masking: bool, fresh_each_epoch: bool) -> tf.data.Dataset:
    """(features, labels) per block, masked with per-example seeds drawn from `seed` (new draws every
    iteration when `fresh_each_epoch`; the same masks every time otherwise, as evaluation needs)."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=fresh_each_epoch)
    mask_id = tokenizer.mask_id
    options = dict(mask_id=mask_id, vocab_size=tokenizer.vocab_size, specials=special_ids(tokenizer),
                   mlm_probability=mlm_probability, whole_word_masking=whole_word_masking)

    def mask(block, draw):
        ids, starts = block
        return mask_tokens(ids, starts, tf.stack([draw, tf.constant(seed, tf.int64)]), **options)

    return tf.data.Dataset.zip((blocks, seeds)).map(mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def batched(blocks: tf.data.Dataset, count: int, lengths: np.ndarray, tokenizer, config, training: bool):
    """Masked, shuffled (when training) and padded batches of `blocks` (already cached)."""
    if training:
        blocks = blocks.shuffle(count, seed=config.seed, reshuffle_each_iteration=True)
    masked = masked_dataset(blocks, tokenizer, seed=config.seed + (0 if training else 1),
                            mlm_probability=config.mlm_probability, whole_word_masking=config.whole_word_masking,
                            fresh_each_epoch=training)
    padding = ({"input_ids": tokenizer.pad_id, "token_type_ids": 0, "attention_mask": 0, "masked_positions": 0},
               IGNORE_LABEL)
    # (the blocks are shuffled above, before masking)
    return pipeline.batch_sequences(masked, count, padding, lengths=lengths,
                                    **{**config.batching(training, keep_order=True), "shuffle": False})
