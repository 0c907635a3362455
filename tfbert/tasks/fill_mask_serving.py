"""The SavedModel signatures of a masked LM: text with one or more [MASK] tokens in, the top-k fills of
each mask out, tokenized and predicted in the graph.

`serving_default` takes `text` [batch] strings and returns, for each text's masks in order (at most
the masks within `max_seq_length` tokens), `num_masks` [batch], `tokens` [batch, masks, k] strings,
`token_ids` and `scores` [batch, masks, k] (softmax probabilities, best first), and `mask_start` /
`mask_end` [batch, masks], each mask's character offsets in the text; padded rows are "" / 0 / -1.
`encoded` returns the logits at given `masked_positions` of packed inputs.
"""

from __future__ import annotations

import tensorflow as tf

from tfbert.tasks.masked_lm import FEATURES

TOP_K = 5


def fill_mask_signatures(top_k: int = TOP_K):
    """`signatures(archive, model, tokenizer, max_seq_length)` for `tfbert.export.export_saved_model`."""

    def add(archive, model, tokenizer, max_seq_length: int) -> None:
        vocab = tf.constant(tokenizer.vocab)

        def serve(text):
            text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
            packed = tokenizer.pack(tokenizer.tokenize_with_offsets(text), max_length=max_seq_length)
            is_mask = tf.equal(packed["input_ids"], tokenizer.mask_id)
            positions = tf.ragged.boolean_mask(tf.broadcast_to(tf.range(tf.shape(is_mask)[1]), tf.shape(is_mask)),
                                               is_mask)
            count = tf.cast(positions.row_lengths(), tf.int32)
            inputs = {name: packed[name] for name in FEATURES}
            inputs["masked_positions"] = positions.to_tensor(0)
            probabilities = tf.nn.softmax(tf.cast(model(inputs, training=False), tf.float32), axis=-1)
            scores, ids = tf.math.top_k(probabilities, k=min(top_k, len(tokenizer.vocab)))
            present = tf.range(tf.shape(ids)[1])[None, :] < count[:, None]
            offsets = tf.gather(packed["offsets"], inputs["masked_positions"], batch_dims=1)
            return {"num_masks": count,
                    "tokens": tf.where(present[:, :, None], tf.gather(vocab, ids), ""),
                    "token_ids": tf.where(present[:, :, None], ids, -1),
                    "scores": tf.where(present[:, :, None], scores, 0.0),
                    "mask_start": tf.where(present, offsets[..., 0], -1),
                    "mask_end": tf.where(present, offsets[..., 1], -1)}

        def serve_encoded(input_ids, token_type_ids, attention_mask, masked_positions):
            features = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
                        "masked_positions": masked_positions}
            return {"logits": tf.cast(model(features, training=False), tf.float32)}

        archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        archive.add_endpoint("encoded", serve_encoded, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name=n) for n in FEATURES + ("masked_positions",)])

    return add
