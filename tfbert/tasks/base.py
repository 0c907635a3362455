"""What every task head shares: `BertTaskModel`, a functional Keras model on `BertBackbone`.

A head subclass builds its layers on `backbone.input` and calls `BertTaskModel.__init__` with its
outputs. The base holds what no head should write again:

* building from the dataset's element spec under a `tf.distribute` strategy (`_maybe_symbolic_build`),
  and logs that Keras can reduce over several workers (`train_step`, `test_step`);
* `get_config` / `from_config` (the backbone serialized, plus each head's own arguments);
* the linear head that transformers' `BertFor{Sequence,Token}Classification` and
  `BertForQuestionAnswering` share (`classifier.weight` [num_labels, hidden], `classifier.bias`):
  read from a checkpoint with its label names (`id2label`), reordered to the caller's labels, and
  written back with the HF config fields that transformers reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfbert import fileio
from tfbert.backbone import BertBackbone
from tfbert.data.examples import DataError
from tfbert.layers import Dropout
from tfbert.tasks.losses import loss_items, weighting_batch

logger = logging.getLogger("tfbert")


def backbone_policy(backbone: BertBackbone):
    """The dtype policy a head on `backbone` must use.

    `BertBackbone` gives its dtype to its layers, not to the Model itself, so the policy it was built
    with is `policy_name`; None means "the global policy at build time"."""
    return backbone.policy_name if backbone.policy_name is not None else backbone.dtype_policy


def check_dropout(dropout, owner: str) -> None:
    if dropout is not None and not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"{owner}: dropout must be in [0, 1), found {dropout!r}")


def check_label_names(label_names: Sequence[str] | None, count: int, owner: str) -> list[str]:
    """`label_names` as a list (default LABEL_0, LABEL_1, ...), checked against the head's size."""
    if label_names is None:
        return [f"LABEL_{i}" for i in range(count)]
    label_names = list(label_names)
    if len(label_names) != count:
        raise ValueError(f"{owner}: got {len(label_names)} label_names for a head with {count} outputs")
    if not all(isinstance(name, str) for name in label_names):
        raise ValueError(f"{owner}: label_names must be strings, found {label_names!r}")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"{owner}: label_names must be unique, found {label_names!r}")
    return label_names


class BertTaskModel(keras.Model):
    """Base of the task heads; not used on its own.

    Subclasses set `HEAD_ARGS` (their `__init__` arguments other than `backbone`, which
    `get_config` returns from attributes of the same names) and, for a linear head, build it with
    `linear_head(...)` so that `load_linear_head` / `linear_head_state` can move it to and from
    transformers' checkpoints.
    """

    HEAD_ARGS: tuple[str, ...] = ()
    # (weight, bias) names of the linear head, [num_labels, hidden] layout, in the order tried.
    HEAD_KEYS: tuple[tuple[str, str], ...] = (("classifier.weight", "classifier.bias"),)

    def linear_head(self, units: int, dropout: float, name: str = "classifier", truncated: bool = True):
        """Dropout + Dense(units) in the backbone's policy. The kernel starts from a normal with
        standard deviation `initializer_range`, truncated at two deviations as TF BERT and the former
        TF classes of transformers draw it, or (`truncated=False`) untruncated, as transformers'
        PyTorch models do; the bias starts at zero."""
        policy = backbone_policy(self.backbone)
        self.output_dropout = Dropout(dropout, dtype=policy, name=f"{name}_dropout")
        normal = keras.initializers.TruncatedNormal if truncated else keras.initializers.RandomNormal
        self.output_dense = keras.layers.Dense(
            units, kernel_initializer=normal(stddev=self.backbone.config.initializer_range),
            dtype=policy, name=name)
        return lambda hidden: self.output_dense(self.output_dropout(hidden))

    @staticmethod
    def float32_logits(outputs, name: str = "logits"):
        # Losses on bfloat16 logits lose precision; the head's last op is always float32.
        return keras.layers.Activation("linear", dtype="float32", name=name)(outputs)

    # ---- Keras plumbing ----------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy, Keras (TF backend) builds the optimizer and metrics from
        # a batch it draws from a *new* iterator over the training data. A dataset that reshuffles
        # on every iteration (ours) then starts each epoch one order later than a run without a
        # strategy, so a mirrored run would not see the batches of a one-device run with the same
        # seed. Build from zeros shaped like the data instead; no iterator is created.
        if iterator is not None and data_batch is None and hasattr(iterator, "data_adapter"):
            spec = iterator.data_adapter.get_tf_dataset().element_spec
            data_batch = keras.tree.map_structure(
                lambda s: tf.zeros([d if d is not None else 1 for d in s.shape], s.dtype), spec)
            if not isinstance(data_batch, tuple):
                data_batch = (data_batch,)
            data_batch = data_batch + (None,) * (3 - len(data_batch))
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # Under MultiWorkerMirroredStrategy Keras (TF backend) reduces each replica's logs with
    # `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar losses and metrics a step
    # returns ("Invalid reduction dimension 0 for input with 0 dimensions"; keras-team/keras#20585).
    # One-element vectors reduce to their mean over all replicas of all workers. (The other half of
    # that issue, the reduce of a whole batch before building, cannot happen here: see above.)
    def train_step(self, data):
        # An optimizer that accumulates gradients over batches weighs each by the items its loss averages
        # (labelled tokens, or examples), so k batches update as one k times the size would (losses.py).
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        weighs = getattr(optimizer, "gradient_accumulation_steps", None) and getattr(optimizer, "weighs_batches", False)
        _, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not weighs or y is None or not self.trainable_weights:  # (no labels: a loss of `add_loss` alone)
            return _reducible_logs(self, super().train_step(data))
        with weighting_batch(loss_items(self.loss, y)):
            return _reducible_logs(self, super().train_step(data))

    def test_step(self, data):
        return _reducible_logs(self, super().test_step(data))

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                **{arg: getattr(self, arg) for arg in self.HEAD_ARGS}}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    # ---- checkpoints -------------------------------------------------------------------------
    @classmethod
    def read_pretrained(cls, path_or_preset: str | os.PathLike, dtype=None, **overrides):
        """The backbone of a checkpoint with its weights loaded, the head's (key, weight, bias) if
        the checkpoint has one (else None), the head fields of its config.json and its name.

        The head's weights are taken out before the encoder is loaded, so they are not reported as
        unused keys; the checkpoint is read once.
        """
        from tfbert.checkpoints import read_checkpoint, resolve

        directory = resolve(path_or_preset)
        config, state, source = read_checkpoint(directory, **overrides)
        head = cls.take_head(state)
        backbone, _ = BertBackbone.from_state(config, state, source, dtype=dtype)
        return backbone, head, read_head_fields(directory), source

    @classmethod
    def take_head(cls, state: dict):
        """Removes this head's weights from a checkpoint's `state` and returns them (None if absent):
        for a linear head, (weight key, weight, bias) of the first of `HEAD_KEYS` present."""
        for weight_key, bias_key in cls.HEAD_KEYS:
            if weight_key in state and bias_key in state:
                return weight_key, state.pop(weight_key), state.pop(bias_key)
        return None

    def load_linear_head(self, head, head_fields: dict, source: str, label_names: Sequence[str] | None,
                         what: str) -> bool:
        """Assigns a checkpoint's linear head when its shape fits (rows reordered to `label_names`
        when the checkpoint names the same labels in another order); otherwise warns, naming both
        shapes, and keeps the random head. Returns whether it loaded."""
        units = self.output_dense.units
        if head is None:
            logger.info("%s: no %s head in the checkpoint; the %d-output head starts from random weights",
                        source, what, units)
            return False
        weight_key, weight, bias = head
        expected = (units, self.backbone.config.hidden_size)
        if tuple(weight.shape) != expected or tuple(bias.shape) != (units,):
            logger.warning("%s: the checkpoint's %s head '%s' has shape %s (bias %s) but this model needs %s; "
                           "the head was not loaded and starts from random weights", source, what, weight_key,
                           tuple(weight.shape), tuple(bias.shape), expected)
            return False
        order = head_order(head_fields.get("id2label"), label_names, source)
        if order is not None:
            weight, bias = np.asarray(weight)[order], np.asarray(bias)[order]
        self.output_dense.kernel.assign(np.asarray(weight, np.float32).T)
        self.output_dense.bias.assign(np.asarray(bias, np.float32))
        logger.info("%s: loaded the %s head '%s' %s", source, what, weight_key, tuple(weight.shape))
        return True

    def write_pretrained(self, directory: str | os.PathLike, head_state: dict[str, np.ndarray],
                         hf_fields: dict[str, Any], vocab_file: str | None = None,
                         drop_prefixes: tuple[str, ...] = ()) -> None:
        """Writes a transformers directory: the encoder as `bert.*`, `head_state` beside it, and
        config.json with the backbone's fields updated by `hf_fields` (architectures, labels...);
        encoder weights whose names start with `drop_prefixes` (e.g. "pooler.") are left out."""
        from tfbert.checkpoints import backbone_state, huggingface

        directory = os.fspath(directory)
        state = {f"bert.{key}": value for key, value in backbone_state(self.backbone).items()
                 if not key.startswith(drop_prefixes)}
        state.update(head_state)
        huggingface.write_directory(directory, self.backbone.config, state, vocab_file=vocab_file)
        hf_config = self.backbone.config.to_hf_dict()
        hf_config.update(hf_fields)
        fileio.write_json(os.path.join(directory, "config.json"), hf_config, sort_keys=True)

    def linear_head_state(self, prefix: str = "classifier") -> dict[str, np.ndarray]:
        dense = self.output_dense
        return {f"{prefix}.weight": np.ascontiguousarray(np.asarray(dense.kernel.numpy(), np.float32).T),
                f"{prefix}.bias": np.asarray(dense.bias.numpy(), np.float32)}


def label_fields(label_names: Sequence[str]) -> dict[str, Any]:
    """transformers' `num_labels`, `id2label` and `label2id` for a head's labels, in output order."""
    return {"num_labels": len(label_names), "id2label": {str(i): name for i, name in enumerate(label_names)},
            "label2id": {name: i for i, name in enumerate(label_names)}}


def head_order(id2label: dict | None, label_names: Sequence[str] | None, source: str) -> list[int] | None:
    """Row order that makes a checkpoint head's labels line up with `label_names`, or None to keep it."""
    if not id2label or not label_names:
        return None
    names = [id2label.get(str(i), id2label.get(i)) for i in range(len(label_names))]
    if names == list(label_names) or all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    if sorted(map(str, names)) == sorted(label_names):
        logger.info("%s: the head's classes %s are reordered to the data's %s", source, names, list(label_names))
        return [names.index(name) for name in label_names]
    logger.warning("%s: the checkpoint's head was trained for the classes %s, but this model's are %s; "
                   "its logits start out meaning the checkpoint's classes", source, names, list(label_names))
    return None


def read_head_fields(directory: str) -> dict:
    """`classifier_dropout`, `problem_type` and `id2label` from a HF config.json, if any."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)  # read_checkpoint has already parsed it, so it is valid JSON
    return {key: data[key] for key in ("classifier_dropout", "problem_type", "id2label") if data.get(key) is not None}


# ---- predictions ---------------------------------------------------------------------------


def _reducible_logs(model: keras.Model, logs: dict) -> dict:
    if not isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {name: tf.reshape(value, [1]) if tf.is_tensor(value) and value.shape.rank == 0 else value
            for name, value in logs.items()}


def predict_batches(model: keras.Model, dataset: tf.data.Dataset):
    """Yields (features, labels, outputs) per batch of a (features, labels) dataset, numpy, with
    one traced prediction function per model.

    A dataset of fixed-shape batches (``batch_sequences(static_shapes=True)``: elements
    ``(features, labels, weights)``) runs under the model's strategy when that spreads over several
    replicas of one machine or a TPU: every replica takes its share of each batch, as in training.
    The rows that only pad a batch (weight 0) are left out of what is yielded.
    """
    padded = isinstance(dataset.element_spec, tuple) and len(dataset.element_spec) == 3
    if padded and _distributes(model.distribute_strategy):
        batches = _distributed_predictions(model, dataset)
    else:
        batches = _predictions(model, dataset)
    for features, labels, weights, outputs in batches:
        features, labels, outputs = keras.tree.map_structure(np.asarray, (features, labels, outputs))
        if weights is not None:
            keep = np.asarray(weights) > 0
            features, labels, outputs = keras.tree.map_structure(lambda a: a[keep], (features, labels, outputs))
        yield features, labels, outputs


def _distributes(strategy: tf.distribute.Strategy) -> bool:
    # A multi-worker cluster evaluates on every worker alone (each needs every prediction, in order).
    return isinstance(strategy, tf.distribute.TPUStrategy) or (
        strategy.num_replicas_in_sync > 1 and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's retracing warning about the evaluation functions below: their batches come in a
    few lengths (bucket padding), one trace each, and a search makes one function per trial's model."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and ("_predictions.<locals>" in message or "distributed_step" in message))


logging.getLogger("tensorflow").addFilter(_ExpectedRetracing())


def _predictions(model: keras.Model, dataset: tf.data.Dataset):
    predict = getattr(model, "_tfbert_predict_fn", None)
    if predict is None:
        predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True, autograph=False)
        model._tfbert_predict_fn = predict
    for features, labels, *weights in dataset:
        yield features, labels, (weights[0] if weights else None), predict(features)


def _distributed_predictions(model: keras.Model, dataset: tf.data.Dataset):
    """Each batch split over the strategy's replicas; the parts gathered back in order (replica i
    holds the i-th slice of the batch)."""
    strategy = model.distribute_strategy
    step = getattr(model, "_tfbert_distributed_predict_fn", None)
    if step is None:
        def replica_step(features, labels, weights):
            return features, labels, weights, model(features, training=False)

        def distributed_step(element):
            parts = strategy.run(replica_step, args=element)
            return tf.nest.map_structure(lambda part: strategy.gather(part, axis=0), parts)

        step = tf.function(distributed_step, reduce_retracing=True)
        model._tfbert_distributed_predict_fn = step
    for element in strategy.experimental_distribute_dataset(dataset):
        yield step(element)


def predict_with_labels(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Runs the model over a (features, labels) dataset; returns aligned (labels, outputs)."""
    labels, outputs = [], []
    for _, y, out in predict_batches(model, dataset):
        labels.append(y)
        outputs.append(out)
    return np.concatenate(labels), np.concatenate(outputs)


# ---- the task contract -------------------------------------------------------------------------


@dataclasses.dataclass
class TaskData:
    """A task's examples, read and checked before any training starts.

    Attributes:
        train / validation / test: the splits, in the task's own example type (anything with
            `len()`); `test` may be None.
        label_names: the task's labels in output order (None for regression).
        description: where the data came from, for the run log and metrics.json.
    """

    train: Any
    validation: Any
    test: Any | None
    label_names: list[str] | None
    description: str

    def split(self, name: str):
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def report_skipped(examples):
    """Logs each example a reader dropped under --skip_bad_rows (`examples.skipped`: "file:line: reason"),
    when it is read (a split taken from it does not carry them); returns `examples`."""
    for skipped in getattr(examples, "skipped", None) or []:
        logger.warning("skipped %s", skipped)
    return examples


def read_file_splits(config, read, split_off):
    """train / validation / test from `--train_file`, `--validation_file`, `--test_file`: every file is
    read (and so checked) before the first training step. Without a validation file, `split_off(train)`
    holds out `--validation_fraction` of the training data, or there is no validation split when the
    fraction is 0. The rows each file drops under --skip_bad_rows are reported as it is read."""
    train = report_skipped(read(config.train_file))
    test = report_skipped(read(config.test_file)) if config.test_file else None
    if config.validation_file:
        validation = report_skipped(read(config.validation_file))
    elif config.validation_fraction > 0:
        train, validation = split_off(train)
        if not len(validation):
            logger.warning("%s: --validation_fraction %s held out nothing (too few examples, or articles for a split "
                           "by title): the run has no validation and keeps its last epoch; give --validation_file "
                           "for one", config.train_file, config.validation_fraction)
    else:
        validation = None  # --validation_fraction 0: train on everything, keep the last epoch
    return train, validation, test


class Task:
    """What a task supplies to the one runner (`tfbert.training.runner`); everything else (seeding,
    strategy, optimizer, fit with resume, best epoch, early stopping, TensorBoard, run directory,
    metrics.json, config.yaml, HF export, SavedModel export) is the runner's.

    A subclass is stateless: the runner passes the run config (the task's own `RunConfig`
    subclass), the `TaskData` and the tokenizer to each method.
    """

    name: str = ""
    # Evaluate the validation split before the first step too (pre-training: the gain must show).
    evaluate_before_training: bool = False
    # The loss reads no output at a padded position, so training and the export may skip padding
    # (`BertBackbone.skip_padding`): the outputs there mean nothing.
    skips_padding: bool = True

    def load_data(self, config) -> TaskData:
        """Reads every split the config names and checks them all before training starts.

        Raises:
            tfbert.data.readers.DataError: naming the file and line of the first bad row.
        """
        raise NotImplementedError

    def read_file(self, config, path: str):
        """One data file in the task's formats, read as the config says (columns, tag scheme, ...) and
        checked: what `load_data` reads for each of --train_file, --validation_file and --test_file.

        Raises:
            tfbert.data.readers.DataError: naming the file and line of the first bad row.
        """
        raise NotImplementedError

    def check_labels(self, config, examples, data: TaskData) -> None:
        """Refuses `examples` with a label or tag the model does not know (`data.label_names`), naming
        its row; nothing to check for tasks without labels."""

    def evaluation_data(self, config, path: str, run_data: TaskData) -> TaskData:
        """A finished run's data with the file at `path` as its test split (the run's labels and the
        rest of `run_data`, `data_for_export`'s), for evaluating the run on it.

        Raises:
            tfbert.data.readers.DataError: a bad row, or a label the run's model does not know.
        """
        test = report_skipped(self.read_file(config, path))
        if not len(test):
            raise DataError("no examples to evaluate", path)
        self.check_labels(config, test, run_data)
        return dataclasses.replace(run_data, test=test, description=path)

    def load_tokenizer(self, config, data: TaskData, work_dir: str | None = None):
        """The run's tokenizer: the one of `config.model`'s checkpoint. `work_dir` is where this process
        may keep files of its own (the output directory; a worker's own folder in a multi-worker
        cluster, where only the chief writes the run's outputs)."""
        from tfbert.text import BertTokenizer

        return BertTokenizer.from_pretrained(config.model)

    def make_dataset(self, data: TaskData, split: str, tokenizer, config, training: bool):
        """The batched `(features, labels)` `tf.data.Dataset` of a split; shuffled when `training`."""
        raise NotImplementedError

    def truncation_report(self, data: TaskData, tokenizer, max_seq_length: int) -> dict:
        """How many training examples `max_seq_length` cuts (see `tfbert.data.pipeline`)."""
        raise NotImplementedError

    def build_model(self, config, data: TaskData, dtype) -> keras.Model:
        """The task model from `config.model`, with its head sized for `data` (called under the
        run's strategy scope)."""
        raise NotImplementedError

    def loss(self, model):
        return model.default_loss()

    def train_metrics(self, config) -> list:
        """Keras metrics shown in the progress bar while training (cheap, per batch)."""
        return []

    def metric_names(self, config) -> list[str]:
        """The scalar metrics `evaluate` returns (without the `val_` prefix)."""
        raise NotImplementedError

    def default_best_metric(self, config) -> str:
        raise NotImplementedError

    def evaluate(self, model, dataset, data: TaskData, split: str, tokenizer, config,
                 with_loss: bool = False) -> dict:
        """Metrics over a whole split from the model's predictions on `dataset` (the split's
        `make_dataset(..., training=False)`): numbers (logged, and used for the best epoch) and,
        optionally, reports (lists, dicts, text) that go to metrics.json. With `with_loss`, also
        the split's "loss"."""
        raise NotImplementedError

    def save_pretrained(self, model, directory: str, data: TaskData) -> None:
        """Writes the transformers-format model (config.json with the labels, safetensors)."""
        model.save_pretrained(directory, label_names=data.label_names)

    def write_extras(self, model, data: TaskData, config, results: dict, output_dir: str, log_dir: str) -> None:
        """Task-specific files and TensorBoard summaries (label lists, confusion matrices...)."""

    def export(self, model, tokenizer, data: TaskData, config, base_dir: str, version: int | None = None,
               overwrite: bool = False) -> str:
        """Writes the task's SavedModel for TF Serving (`tfbert.export.export_saved_model` with the
        task's signatures); returns the version directory."""
        raise NotImplementedError

    def data_for_export(self, run_dir: str, config) -> TaskData:
        """What `export` needs of the data, read back from a finished run directory: the label names
        (from `hf_model/config.json`'s id2label)."""
        with open(os.path.join(run_dir, "hf_model", "config.json"), encoding="utf-8") as f:
            id2label = json.load(f).get("id2label") or {}
        names = [id2label[key] for key in sorted(id2label, key=int)] or None
        return TaskData(None, None, None, names, run_dir)
