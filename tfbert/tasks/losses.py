"""Losses over labelled tokens (NER, masked LM) whose value does not depend on how a batch is split.

Keras' `SparseCategoricalCrossentropy(ignore_class=-100)` averages over the labelled tokens of the batch
it is given. Under a distribution strategy each replica is given its share and the replicas' gradients
are summed (each loss scaled by 1 / replicas), so a step follows the mean of the replicas' means: when
their shares hold different numbers of labelled tokens (always, in NER and masked LM), not the mean over
the batch's tokens that one device takes. `MaskedTokenCrossentropy` divides each replica's sum by the
labelled tokens of every replica (one all-reduce of a scalar), so a mirrored or multi-worker step is a
one-device step, as for the per-example losses of classification and QA (whose shares are equal).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Label id of the positions that carry no label: special tokens, padding and, by default, every
# sub-token after a word's first. The loss and the metrics skip it (transformers uses the same value).
IGNORE_LABEL = -100


@keras.saving.register_keras_serializable(package="tfbert")
class MaskedTokenCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits [..., classes] against int labels [...], averaged over the labels that are
    not `ignore_class` in the whole (global) batch, as transformers' `CrossEntropyLoss(ignore_index=-100)`
    averages them on one device; 0 for a batch without labelled tokens.

    Example:
        >>> import numpy as np
        >>> loss = MaskedTokenCrossentropy()
        >>> logits = np.log(np.float32([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
        >>> round(float(loss(np.array([[0, -100, 1]]), logits)), 4)  # (ln 2 + -ln 0.8) / 2
        0.4581
    """

    def __init__(self, ignore_class: int = IGNORE_LABEL, name: str = "masked_token_crossentropy", **kwargs):
        kwargs["reduction"] = "sum"  # each token's share of the global mean, summed (see `call`)
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(y_true, "int32")
        counted = keras.ops.not_equal(labels, self.ignore_class)
        losses = keras.losses.sparse_categorical_crossentropy(
            keras.ops.where(counted, labels, 0), y_pred, from_logits=True)
        weights = keras.ops.cast(counted, losses.dtype)
        return losses * weights / keras.ops.maximum(global_sum(keras.ops.sum(weights)), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_class": self.ignore_class}


def global_sum(value):
    """`value` summed over the replicas of the distribution strategy in whose step it is computed (itself
    outside one, or with a single replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
