"""Losses over labelled tokens (NER, masked LM) whose value does not depend on how a batch is split.

Keras' `SparseCategoricalCrossentropy(ignore_class=-100)` averages over the labelled tokens of the batch
it is given. Under a distribution strategy each replica is given its share and the replicas' gradients
are summed (each loss scaled by 1 / replicas), so a step follows the mean of the replicas' means: when
their shares hold different numbers of labelled tokens (always, in NER and masked LM), not the mean over
the batch's tokens that one device takes. `MaskedTokenCrossentropy` divides each replica's sum by the
labelled tokens of every replica (one all-reduce of a scalar), so a mirrored or multi-worker step is a
one-device step, as for the per-example losses of classification and QA (whose shares are equal).

Gradient accumulation has the same question one level up: each batch's loss is its own mean, but the
update of k accumulated batches should follow the mean over all their items, as one batch k times the
size would. `loss_items` counts what a loss averages over in a batch (its labelled tokens, or its
examples); `BertTaskModel.train_step` passes that count to the optimizer (`weighting_batch`), which
weights each batch's gradient by it (`BertAdamW`). transformers' Trainer means to do the same with its
`num_items_in_batch`, but BERT's heads ignore it while the Trainer assumes they use it, so there k
accumulated batches apply the sum of their means (huggingface/transformers#47688, open).
"""

from __future__ import annotations

import contextlib
import threading

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
        return losses * weights / keras.ops.maximum(keras.ops.cast(self.items(labels), losses.dtype), 1.0)

    def items(self, y_true):
        """The labelled tokens of the global batch whose labels are `y_true` (float32): what `call` averages over."""
        counted = keras.ops.not_equal(keras.ops.cast(y_true, "int32"), self.ignore_class)
        return global_sum(keras.ops.sum(keras.ops.cast(counted, "float32")))

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_class": self.ignore_class}


def global_sum(value):
    """`value` summed over the replicas of the distribution strategy in whose step it is computed (itself
    outside one, or with a single replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def loss_items(loss, y_true):
    """How many items `loss` averages over in the global batch whose labels are `y_true` (float32): its
    `items(y_true)` where it has one (`MaskedTokenCrossentropy`: labelled tokens), else the batch's examples
    (the leading dimension of the first label tensor)."""
    if isinstance(loss, keras.losses.Loss) and callable(getattr(loss, "items", None)):  # (a dict's items is not it)
        return loss.items(y_true)
    first = keras.tree.flatten(y_true)[0]
    return global_sum(keras.ops.cast(keras.ops.shape(first)[0], "float32"))


# The items of the batch each replica is applying, by traced function and replica: Keras' LossScaleOptimizer
# applies the gradients of MirroredStrategy's replicas from threads of its own (`call_for_each_replica`
# inside a `merge_call`), not from the replica's thread that set them, and within a `cond` (whose branches
# are graphs of their own inside the function's).
_batch_items: dict = {}


def _replica_key():
    if not tf.inside_function():  # eagerly (run_eagerly=True) every step is its own: one per thread
        return threading.get_ident(), None
    graph = tf.compat.v1.get_default_graph()
    while hasattr(getattr(graph, "outer_graph", None), "outer_graph"):  # a cond's or loop's graph: its function's
        graph = graph.outer_graph
    context = tf.distribute.get_replica_context()
    replica = None if context is None else tf.get_static_value(context.replica_id_in_sync_group)
    return graph, None if replica is None else int(replica)


@contextlib.contextmanager
def weighting_batch(items):
    """Within: the batch whose gradients this replica applies weighs `items` (`loss_items`), for an optimizer
    that accumulates gradients weighted by batch (`batch_weight`).

    Raises:
        RuntimeError: the traced step applied the gradients without reading the weight (a path of a
            distribution strategy where it is not found), which would silently take Keras' unweighted mean.
            (Run eagerly, a step whose float16 gradients overflow applies nothing: not an error.)
    """
    key = _replica_key()
    previous = _batch_items.get(key)
    _batch_items[key] = entry = {"items": items, "read": False}
    try:
        yield
    finally:
        if previous is None:
            del _batch_items[key]
        else:
            _batch_items[key] = previous
    if not entry["read"] and tf.inside_function():
        raise RuntimeError(f"gradient accumulation: the optimizer did not find this batch's weight (replica "
                           f"{key[1]}, {tf.distribute.get_strategy().__class__.__name__}); please report it")


def batch_weight():
    """The weight `weighting_batch` gave the batch this replica is applying, or None outside one."""
    entry = _batch_items.get(_replica_key())
    if entry is None:
        return None
    entry["read"] = True
    return entry["items"]
