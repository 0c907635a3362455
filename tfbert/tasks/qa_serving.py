"""The SavedModel signatures of a question answerer: a question and a context of any length in, the
answer out, windows and span decoding in the graph (TF and tf_text ops only).

`serving_default` takes `question` and `context` strings [batch] and returns `answer` (the text cut
from the context), `score` (its probability among the n best candidates, as `qa_decoding.decode`),
`start`/`end` (character offsets into the context; -1 without an answer) and, for SQuAD v2.0
models, `no_answer`. The windows are those of training (`qa_windows.make_windows`) and the decoding
that of evaluation: the best span by start + end logit over all windows, inside the context, at most
`max_answer_length` tokens. `encoded` returns the start and end logits of packed inputs.
"""

from __future__ import annotations

import tensorflow as tf

from tfbert.tasks.qa_windows import FEATURES, make_windows


def decode_in_graph(logits, windows, num_questions, max_answer_length: int, n_best_size: int, version_2: bool,
                    null_score_diff_threshold: float) -> dict:
    """Per question: best span score, its window and token positions, probability and no-answer flag."""
    start_logits, end_logits = logits[..., 0], logits[..., 1]
    width = tf.shape(start_logits)[1]
    valid = windows.char_start >= 0
    position = tf.range(width)
    gap = position[None, :] - position[:, None]
    allowed = (gap >= 0) & (gap < max_answer_length)
    mask = valid[:, :, None] & valid[:, None, :] & allowed[None]
    scores = tf.where(mask, start_logits[:, :, None] + end_logits[:, None, :], float("-inf"))
    flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
    k = tf.minimum(n_best_size, tf.shape(flat)[1])
    window_scores, window_index = tf.math.top_k(flat, k)  # best first; ties: lower index first
    rows = tf.cast(windows.example, tf.int64)

    def per_question(values, fill):
        grouped = tf.RaggedTensor.from_value_rowids(values, rows, nrows=tf.cast(num_questions, tf.int64))
        return grouped.merge_dims(1, 2).to_tensor(fill)

    window_of = tf.broadcast_to(tf.range(tf.shape(flat)[0])[:, None], tf.shape(window_index))
    candidates = per_question(window_scores, float("-inf"))
    candidate_window = per_question(window_of, 0)
    candidate_index = per_question(window_index, 0)
    n = tf.minimum(n_best_size, tf.shape(candidates)[1])
    best_scores, best = tf.math.top_k(candidates, n)
    span = best_scores[:, 0]
    window = tf.gather(candidate_window, best[:, 0], batch_dims=1)
    index = tf.gather(candidate_index, best[:, 0], batch_dims=1)
    pool = best_scores
    answered = span > float("-inf")
    if version_2:
        null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], windows.example, num_questions)
        pool = tf.concat([best_scores, null[:, None]], axis=1)
        answered &= (null - span) <= null_score_diff_threshold
    normalizer = tf.reduce_logsumexp(pool, axis=1)
    chosen = tf.where(answered, span, pool[:, -1] if version_2 else span)
    probability = tf.where(tf.math.is_finite(normalizer), tf.exp(chosen - normalizer), 0.0)
    return {"answered": answered, "window": window, "start_token": index // width, "end_token": index % width,
            "score": probability}


def qa_signatures(max_query_length: int, doc_stride: int, max_answer_length: int, n_best_size: int,
                  version_2: bool, null_score_diff_threshold: float = 0.0):
    """`signatures(archive, model, tokenizer, max_seq_length)` for `tfbert.export.export_saved_model`."""

    def add(archive, model, tokenizer, max_seq_length: int) -> None:
        def serve(question, context):
            # Offsets count the characters of the context with invalid UTF-8 replaced, as it is tokenized.
            context = tf.strings.unicode_transcode(context, "UTF-8", "UTF-8", errors="replace")
            windows = make_windows(tokenizer, question, context, max_seq_length, max_query_length, doc_stride)
            logits = tf.cast(model(windows.features, training=False), tf.float32)
            found = decode_in_graph(logits, windows, tf.shape(question)[0], max_answer_length, n_best_size,
                                    version_2, null_score_diff_threshold)
            window = found["window"]
            start = tf.gather_nd(windows.char_start, tf.stack([window, found["start_token"]], axis=1))
            end = tf.gather_nd(windows.char_end, tf.stack([window, found["end_token"]], axis=1))
            start = tf.where(found["answered"], start, -1)
            end = tf.where(found["answered"], end, -1)
            answer = tf.strings.substr(context, tf.maximum(start, 0), tf.maximum(end - start, 0), unit="UTF8_CHAR")
            out = {"answer": answer, "score": found["score"], "start": start, "end": end}
            if version_2:
                out["no_answer"] = tf.logical_not(found["answered"])
            return out

        def serve_encoded(input_ids, token_type_ids, attention_mask):
            features = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
            logits = tf.cast(model(features, training=False), tf.float32)
            return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

        archive.add_endpoint("serving_default", serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="question"), tf.TensorSpec([None], tf.string, name="context")])
        archive.add_endpoint("encoded", serve_encoded, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name=n) for n in FEATURES])

    return add
