"""The SavedModel signatures of a token classifier: raw sentences (or pre-split words) -> tags and
entities, all in the graph, with only the ops that stock TF Serving runs.

`serving_default(text [batch] string)`:
    words            [batch, max_words] string    the words as the tokenizer splits them, cut from `text`
    word_start/end   [batch, max_words] int32     `[start, end)` character offsets into `text`
    tags             [batch, max_words] string    the tag of each word (its first sub-token's)
    tag_scores       [batch, max_words] float32   that tag's probability
    num_entities     [batch] int32
    entity_type      [batch, max_entities] string  e.g. "person" ("" pads)
    entity_text      [batch, max_entities] string  the entity cut from `text` (case, accents kept)
    entity_start/end [batch, max_entities] int32   character offsets into `text` (-1 pads)
    entity_score     [batch, max_entities] float32 the mean tag probability of its words
`tokens(tokens [batch, max_words] string, "" pads)`: the same for pre-split words, offsets in words:
    entity_start/end are word indices (end exclusive) and entity_text joins the words with spaces.
`encoded(input_ids, token_type_ids, attention_mask)`: `logits` [batch, seq, num_labels].

A text longer than `max_seq_length` tokens is run as overlapping windows (half a window apart) and
each token is read in the window that centres it best, exactly as training evaluates it
(`tfbert.tasks.token_classification`), so every word gets one tag; a word that gives no token (e.g.
only control characters) is tagged "O" with score 0. Entities are
read from the IOB2 tags as seqeval does: B- starts one, and so does an I- that does not continue
the previous word's type.
"""

from __future__ import annotations

import tensorflow as tf

FEATURES = ("input_ids", "token_type_ids", "attention_mask")


def _word_predictions(probabilities, word_ids, num_words):
    """Per word: the tag id and probability at its first sub-token; -1 / 0 for words with no token.

    probabilities [b, s, n], word_ids [b, s] (-1 special/pad), num_words [b] -> [b, W] int32, float32.
    """
    batch = tf.shape(word_ids)[0]
    width = tf.maximum(tf.reduce_max(num_words), 1)
    previous = tf.concat([tf.fill([batch, 1], -1), word_ids], axis=1)[:, :-1]
    first = tf.logical_and(word_ids >= 0, tf.not_equal(word_ids, previous))
    tag_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    score = tf.reduce_max(probabilities, axis=-1)
    rows = tf.range(batch)[:, None] * width
    # Segment b*W + w for a word's first token; one extra segment collects everything else.
    segment = tf.where(first, rows + word_ids, batch * width)
    segments = batch * width + 1
    tag = tf.math.unsorted_segment_sum(tag_id + 1, segment, segments)[:-1] - 1
    scores = tf.math.unsorted_segment_sum(score, segment, segments)[:-1]
    return tf.reshape(tag, [batch, width]), tf.reshape(scores, [batch, width])


def _entities(tag, types, begins, num_words):
    """Entity bookkeeping from word tag ids [b, W] (-1: no prediction): (entity index of each word or -1,
    begin mask, last-word mask, number of entities [b])."""
    width = tf.shape(tag)[1]
    valid = tf.logical_and(tag >= 0, tf.range(width)[None, :] < num_words[:, None])
    safe = tf.maximum(tag, 0)
    kind = tf.where(valid, tf.gather(types, safe), 0)  # 0: outside
    is_b = tf.logical_and(valid, tf.gather(begins, safe))
    batch = tf.shape(tag)[0]
    previous_kind = tf.concat([tf.zeros([batch, 1], tf.int32), kind[:, :-1]], axis=1)
    begin = tf.logical_and(kind > 0, tf.logical_or(is_b, tf.not_equal(previous_kind, kind)))
    next_begin = tf.concat([begin[:, 1:], tf.zeros([batch, 1], tf.bool)], axis=1)
    next_kind = tf.concat([kind[:, 1:], tf.zeros([batch, 1], tf.int32)], axis=1)
    last = tf.logical_and(kind > 0, tf.logical_or(next_begin, tf.not_equal(next_kind, kind)))
    index = tf.cumsum(tf.cast(begin, tf.int32), axis=1) - 1
    index = tf.where(kind > 0, index, -1)
    return index, begin, last, kind, tf.reduce_sum(tf.cast(begin, tf.int32), axis=1)


def _per_entity(values, mask, index, count):
    """Sums `values` [b, W] over the words of each entity where `mask`: [b, E] (E = max entities)."""
    batch = tf.shape(values)[0]
    width = tf.maximum(tf.reduce_max(count), 1)
    segment = tf.where(tf.logical_and(mask, index >= 0), tf.range(batch)[:, None] * width + index, batch * width)
    summed = tf.math.unsorted_segment_sum(values, segment, batch * width + 1)[:-1]
    return tf.reshape(summed, [batch, width])


def _padded_to(values, width, fill):
    """[b, w] values padded with `fill` to [b, width] columns (width >= w): the word outputs are one column
    wide when no text of the batch has a word (as the tags are), not zero."""
    shape = tf.shape(values)
    # (concatenated, not tf.pad: Fill and ConcatV2 are among the ops tfbert/serving_ops_allowlist.txt lists)
    return tf.concat([values, tf.fill([shape[0], width - shape[1]], tf.constant(fill, values.dtype))], axis=1)


def _cut(text, starts, ends):
    """text [b] cut at [start, end) character offsets [b, k] (-1: "") -> [b, k] strings."""
    texts = tf.tile(text[:, None], [1, tf.shape(starts)[1]])
    return tf.strings.substr(texts, tf.maximum(starts, 0), tf.maximum(ends - starts, 0), unit="UTF8_CHAR")


def tagging_signatures(label_names: list[str]):
    """`signatures(archive, model, tokenizer, max_seq_length)` for `tfbert.export.export_saved_model`."""
    type_names = [""] + sorted({tag[2:] for tag in label_names if tag != "O"})
    types = [type_names.index(tag[2:]) if tag != "O" else 0 for tag in label_names]
    begins = [tag.startswith("B-") for tag in label_names]

    def add(archive, model, tokenizer, max_seq_length: int) -> None:
        tags_table = tf.constant(label_names + [""])  # index -1 (no prediction) -> ""
        kind_table = tf.constant(type_names)
        outside = label_names.index("O") if "O" in label_names else len(label_names)

        budget = max_seq_length - 2
        stride = max(1, budget // 2)  # as tfbert.tasks.token_classification.window_layout

        def token_probabilities(tokens):
            """Softmax per token [b, max_tokens, labels]: every token of every text, a text longer than a
            window run as overlapping windows, each token read in the window nearest to centring it."""
            ids = tokens.ids
            lengths = ids.row_lengths()
            windows = tf.where(lengths <= budget, tf.ones_like(lengths),
                               1 + (tf.maximum(lengths - budget, 0) + stride - 1) // stride)
            window_number = tf.ragged.range(windows)
            window_text = window_number.value_rowids()
            starts = window_number.flat_values * stride
            sizes = tf.minimum(tf.constant(budget, tf.int64), tf.gather(lengths, window_text) - starts)
            positions = tf.ragged.range(starts, starts + sizes) + tf.gather(ids.row_starts(), window_text)[:, None]
            window_ids = positions.with_flat_values(tf.gather(ids.flat_values, positions.flat_values))
            packed = tokenizer.pack(window_ids, max_length=max_seq_length, padding="longest", truncation=True)
            logits = tf.cast(model({name: packed[name] for name in FEATURES}, training=False), tf.float32)
            probabilities = tf.nn.softmax(logits, axis=-1)
            token = tf.ragged.range(lengths)
            text = token.value_rowids()
            t = token.flat_values
            k = tf.clip_by_value((2 * t - budget + stride) // (2 * stride), 0, tf.gather(windows, text) - 1)
            row = tf.gather(window_number.row_starts(), text) + k
            position = t - k * stride + 1  # +1: [CLS]
            width = tf.cast(tf.shape(probabilities)[1], tf.int64)
            flat = tf.reshape(probabilities, [-1, tf.shape(probabilities)[2]])
            per_token = tf.gather(flat, row * width + position)
            return tf.RaggedTensor.from_row_lengths(per_token, lengths).to_tensor(0.0)

        def predict(tokens, num_words):
            probabilities = token_probabilities(tokens)
            tag, score = _word_predictions(probabilities, tokens.word_ids.to_tensor(-1), num_words)
            width = tf.shape(tag)[1]
            in_sentence = tf.range(width)[None, :] < num_words[:, None]
            shown = tf.where(tag >= 0, tag, tf.where(in_sentence, outside, -1))
            tag_strings = tf.gather(tags_table, tf.where(shown >= 0, shown, len(label_names)))
            index, begin, last, kind, count = _entities(tag, tf.constant(types), tf.constant(begins), num_words)
            return {"tags": tag_strings, "tag_scores": tf.where(tag >= 0, score, 0.0), "num_entities": count,
                    "_index": index, "_begin": begin, "_last": last, "_kind": kind, "_score": score}

        def entity_outputs(out, starts, ends):
            index, count = out["_index"], out["num_entities"]
            width = tf.maximum(tf.reduce_max(count), 1)
            present = tf.range(width)[None, :] < count[:, None]
            start = _per_entity(starts, out["_begin"], index, count)
            end = _per_entity(ends, out["_last"], index, count)
            kind = _per_entity(out["_kind"], out["_begin"], index, count)
            total = _per_entity(out["_score"], tf.ones_like(out["_begin"]), index, count)
            size = _per_entity(tf.ones_like(out["_score"]), tf.ones_like(out["_begin"]), index, count)
            return {"num_entities": count,
                    "entity_type": tf.where(present, tf.gather(kind_table, kind), ""),
                    "entity_start": tf.where(present, start, -1), "entity_end": tf.where(present, end, -1),
                    "entity_score": tf.where(present, total / tf.maximum(size, 1.0), 0.0)}

        def public(out):
            return {k: v for k, v in out.items() if not k.startswith("_")}

        def serve_text(text):
            # Offsets are code points of the text with invalid UTF-8 replaced (as the tokenizer reads it).
            text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
            tokens = tokenizer.tokenize_with_offsets(text)
            words, starts, ends = tokenizer.pre_tokenize(text)
            num_words = tf.cast(words.row_lengths(), tf.int32)
            out = predict(tokens, num_words)
            width = tf.shape(out["tags"])[1]
            word_start, word_end = (_padded_to(offsets.to_tensor(-1), width, -1) for offsets in (starts, ends))
            entities = entity_outputs(out, tf.maximum(word_start, 0), tf.maximum(word_end, 0))
            return {**public(out), **entities, "entity_text": _cut(text, entities["entity_start"], entities["entity_end"]),
                    "words": _cut(text, word_start, word_end), "word_start": word_start, "word_end": word_end}

        def serve_tokens(tokens):
            words = tf.RaggedTensor.from_tensor(tokens, padding="")
            num_words = tf.cast(words.row_lengths(), tf.int32)
            out = predict(tokenizer.tokenize_words(words), num_words)
            positions = tf.ragged.range(words.row_lengths()).to_tensor(0)
            positions = _padded_to(tf.cast(positions, tf.int32), tf.shape(out["tags"])[1], 0)
            entities = entity_outputs(out, positions, positions + 1)
            # entity text: its words joined by spaces
            batch, width = tf.shape(positions)[0], tf.shape(entities["entity_start"])[1]
            word_entity = tf.where(out["_index"] >= 0, tf.range(batch)[:, None] * width + out["_index"], batch * width)
            padded_words = _padded_to(words.to_tensor(""), tf.shape(out["tags"])[1], "")
            joined = tf.strings.unsorted_segment_join(padded_words, word_entity, batch * width + 1, separator=" ")
            return {**public(out), **entities, "entity_text": tf.reshape(joined[:-1], [batch, width])}

        def serve_encoded(input_ids, token_type_ids, attention_mask):
            features = {"input_ids": tf.cast(input_ids, tf.int32), "token_type_ids": tf.cast(token_type_ids, tf.int32),
                        "attention_mask": tf.cast(attention_mask, tf.int32)}
            return {"logits": tf.cast(model(features, training=False), tf.float32)}

        archive.add_endpoint("serving_default", serve_text,
                             input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        archive.add_endpoint("tokens", serve_tokens,
                             input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens")])
        archive.add_endpoint("encoded", serve_encoded, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name=n) for n in FEATURES])

    return add
