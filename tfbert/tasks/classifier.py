"""`BertClassifier`: sequence classification, multi-label classification or regression
from BERT's pooled `[CLS]` output, the head of transformers' `BertForSequenceClassification`."""

from __future__ import annotations

import json
import logging
import os
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfbert import fileio
from tfbert.backbone import BertBackbone

logger = logging.getLogger(__name__)

TASKS = ("classification", "multi_label", "regression")

# transformers' `problem_type` for each task, as written to / read from config.json.
PROBLEM_TYPES = {
    "classification": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}

# (weight, bias) names of a sequence-classification head, [num_labels, hidden] layout:
# transformers' BertForSequenceClassification, then Google's run_classifier.py.
HEAD_KEYS = (("classifier.weight", "classifier.bias"), ("output_weights", "output_bias"))


def _check_head_args(num_classes, task: str, dropout) -> None:
    if task not in TASKS:
        raise ValueError(f"BertClassifier: task must be one of {', '.join(map(repr, TASKS))}, found {task!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"BertClassifier: num_classes must be a positive integer, found {num_classes!r}")
    if task == "regression" and num_classes != 1:
        raise ValueError(f"BertClassifier: task='regression' predicts one value, so num_classes must be 1; "
                         f"found num_classes={num_classes}")
    if task == "classification" and num_classes < 2:
        raise ValueError("BertClassifier: task='classification' needs num_classes >= 2 (softmax over classes); "
                         "for a single binary label use task='multi_label' with num_classes=1")
    if dropout is not None and not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"BertClassifier: dropout must be in [0, 1), found {dropout!r}")


@keras.saving.register_keras_serializable(package="tfbert")
class BertClassifier(keras.Model):
    """BERT with a classification or regression head on the pooled `[CLS]` output.

    The model is functional: its inputs are the backbone's own input dict
    (`input_ids`, `token_type_ids`, `attention_mask`, int [batch, seq]) and its output is
    float32 logits [batch, num_classes] (raw scores; no softmax or sigmoid). The head is
    `pooled_output -> Dropout -> Dense(num_classes, name="classifier")`, exactly as in
    transformers' `BertForSequenceClassification`, so checkpoints load both ways. The head
    runs in the backbone's dtype policy (e.g. "mixed_bfloat16"); the logits are cast to
    float32 so that losses stay accurate.

    Args:
        backbone: the `BertBackbone` to put the head on.
        num_classes: number of logits. For `task="regression"` it must be 1.
        task: "classification" (one label per example, softmax over classes),
            "multi_label" (independent binary labels, sigmoid per class) or
            "regression" (one real value). Chooses `default_loss()` and the `problem_type`
            that `save_pretrained` writes.
        dropout: dropout rate before the Dense layer. Defaults to the backbone config's
            `hidden_dropout_prob`, as transformers does when `classifier_dropout` is unset.
        **kwargs: passed to `keras.Model`, e.g. `name`.

    Raises:
        ValueError: unknown `task`, a non-positive `num_classes`, `num_classes != 1` for
            regression, fewer than 2 classes for classification, or dropout outside [0, 1).

    Example:
        >>> import numpy as np
        >>> from tfbert import BertBackbone, BertConfig
        >>> backbone = BertBackbone(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                    num_attention_heads=2, intermediate_size=64))
        >>> classifier = BertClassifier(backbone, num_classes=3)
        >>> inputs = {"input_ids": np.array([[2, 17, 43, 3, 0]]), "token_type_ids": np.zeros((1, 5), "int32"),
        ...           "attention_mask": np.array([[1, 1, 1, 1, 0]])}
        >>> tuple(classifier(inputs).shape)
        (1, 3)
        >>> classifier.compile(optimizer="adam", loss=classifier.default_loss())
        >>> history = classifier.fit(inputs, np.array([2]), verbose=0)

        A fine-tuned Hugging Face checkpoint, and back:

        >>> clf = BertClassifier.from_pretrained("path/to/bert-sst2", num_classes=2)  # doctest: +SKIP
        >>> clf.save_pretrained("out/", label_names=["negative", "positive"])         # doctest: +SKIP
    """

    def __init__(self, backbone: BertBackbone, num_classes: int, task: str = "classification",
                 dropout: float | None = None, **kwargs):
        _check_head_args(num_classes, task, dropout)
        config = backbone.config
        if dropout is None:
            dropout = config.hidden_dropout_prob
        # `BertBackbone` gives its dtype to its layers, not to the Model itself, so the policy
        # it was built with is `policy_name`; None means "the global policy at build time".
        policy = backbone.policy_name if backbone.policy_name is not None else backbone.dtype_policy

        # === Layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(dropout, dtype=policy, name="classifier_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
            dtype=policy, name="classifier")

        # === Functional model ===
        inputs = backbone.input
        pooled = backbone(inputs)["pooled_output"]
        logits = self.output_dense(self.output_dropout(pooled))
        # Losses on bfloat16 logits lose precision; the head's last op is always float32.
        logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.task = task
        self.dropout = float(dropout)

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

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "task": self.task,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: dict) -> "BertClassifier":
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    @property
    def problem_type(self) -> str:
        """transformers' name for this task, e.g. "single_label_classification"."""
        return PROBLEM_TYPES[self.task]

    def default_loss(self) -> keras.losses.Loss:
        """The loss for `task`, on logits.

        Returns:
            `SparseCategoricalCrossentropy(from_logits=True)` for "classification" (integer
            labels [batch]), `BinaryCrossentropy(from_logits=True)` for "multi_label" (0/1
            labels [batch, num_classes]) or `MeanSquaredError()` for "regression"
            (targets [batch] or [batch, 1]). These are the losses transformers picks for
            the same `problem_type`.
        """
        if self.task == "classification":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if self.task == "multi_label":
            return keras.losses.BinaryCrossentropy(from_logits=True)
        return keras.losses.MeanSquaredError()

    # ---- checkpoints -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, num_classes: int, task: str = "classification",
                        dtype=None, dropout: float | None = None, label_names: Sequence[str] | None = None,
                        **overrides) -> "BertClassifier":
        """Builds a classifier from a BERT checkpoint, with its head when the checkpoint has one.

        The encoder loads as in `BertBackbone.from_pretrained`. A sequence-classification head
        in the checkpoint (`classifier.weight` [num_labels, hidden] and `classifier.bias`, as
        `BertForSequenceClassification` saves them) is loaded when `num_labels == num_classes`;
        otherwise the head starts random and a warning names both shapes. The checkpoint is
        read once.

        Args:
            path_or_preset: a HF directory, a Google checkpoint directory, a preset name or a
                Hugging Face hub id (see `tfbert.checkpoints.resolve`).
            num_classes: number of logits of the new model.
            task: "classification", "multi_label" or "regression".
            dtype: Keras dtype policy, e.g. "mixed_bfloat16".
            dropout: head dropout; defaults to the checkpoint's `classifier_dropout`, else its
                `hidden_dropout_prob`.
            label_names: the new model's class names, in logit order. When the checkpoint's head
                names its classes (`id2label`, not the generic LABEL_i) and they are the same
                names in another order, the head's rows are reordered to match; other names
                give a warning naming both lists (the head still loads).
            **overrides: `BertConfig` fields to change, e.g. `hidden_dropout_prob=0.2`.

        Raises:
            tfbert.checkpoints.CheckpointError: unreadable files, or encoder weights missing or
                of the wrong shape (named).
            TypeError: an override that is not a `BertConfig` field.
            ValueError: invalid `num_classes` / `task` / `dropout` (see the class docstring).
        """
        from tfbert.checkpoints import assign_state, read_checkpoint, resolve

        _check_head_args(num_classes, task, dropout)
        directory = resolve(path_or_preset)
        config, state, source = read_checkpoint(directory, **overrides)
        head_fields = _read_head_fields(directory)
        if dropout is None:
            dropout = head_fields.get("classifier_dropout")

        # Taken out before the encoder load, so they are not reported as unused keys.
        head = None
        for weight_key, bias_key in HEAD_KEYS:
            if weight_key in state and bias_key in state:
                head = (weight_key, state.pop(weight_key), state.pop(bias_key))
                break

        backbone = BertBackbone(config, dtype=dtype)
        assign_state(backbone, state, source)
        model = cls(backbone, num_classes=num_classes, task=task, dropout=dropout)

        if head is None:
            logger.info("%s: no sequence-classification head in the checkpoint; the %d-class head "
                        "starts from random weights", source, num_classes)
            return model
        weight_key, weight, bias = head
        dense = model.output_dense
        expected = (num_classes, config.hidden_size)
        if tuple(weight.shape) == expected and tuple(bias.shape) == (num_classes,):
            order = _head_order(head_fields.get("id2label"), label_names, source)
            if order is not None:
                weight, bias = np.asarray(weight)[order], np.asarray(bias)[order]
            dense.kernel.assign(np.asarray(weight, np.float32).T)
            dense.bias.assign(np.asarray(bias, np.float32))
            logger.info("%s: loaded the classification head '%s' %s", source, weight_key, tuple(weight.shape))
            checkpoint_problem = head_fields.get("problem_type")
            if checkpoint_problem and checkpoint_problem != PROBLEM_TYPES[task]:
                logger.warning("%s: the head was trained with problem_type=%r, but task=%r expects %r; "
                               "its logits may mean something else", source, checkpoint_problem, task,
                               PROBLEM_TYPES[task])
        else:
            logger.warning("%s: the checkpoint's classification head '%s' has shape %s (bias %s) but this model "
                           "needs %s (num_classes=%d); the head was not loaded and starts from random weights",
                           source, weight_key, tuple(weight.shape), tuple(bias.shape), expected, num_classes)
        return model

    def save_pretrained(self, directory: str | os.PathLike, label_names: Sequence[str] | None = None,
                        vocab_file: str | None = None) -> None:
        """Writes a Hugging Face `BertForSequenceClassification` directory.

        `config.json` gets `architectures`, `num_labels`, `id2label`/`label2id`, `problem_type`
        and `classifier_dropout`; `model.safetensors` holds the encoder as `bert.*` and the
        head as `classifier.weight` [num_labels, hidden] / `classifier.bias`.

        Args:
            directory: created if needed; existing files of the same name are replaced.
            label_names: one name per class, in logit order; default "LABEL_0", "LABEL_1", ...
            vocab_file: a `vocab.txt` to copy alongside, so the directory also loads a tokenizer.

        Raises:
            ValueError: `label_names` of the wrong length, duplicated, or not strings.
        """
        from tfbert.checkpoints import backbone_state, huggingface

        if label_names is None:
            label_names = [f"LABEL_{i}" for i in range(self.num_classes)]
        label_names = list(label_names)
        if len(label_names) != self.num_classes:
            raise ValueError(f"save_pretrained: got {len(label_names)} label_names for a model with "
                             f"num_classes={self.num_classes}")
        if not all(isinstance(name, str) for name in label_names):
            raise ValueError(f"save_pretrained: label_names must be strings, found {label_names!r}")
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"save_pretrained: label_names must be unique, found {label_names!r}")

        directory = os.fspath(directory)
        state = {f"bert.{key}": value for key, value in backbone_state(self.backbone).items()}
        dense = self.output_dense
        state["classifier.weight"] = np.ascontiguousarray(np.asarray(dense.kernel.numpy(), np.float32).T)
        state["classifier.bias"] = np.asarray(dense.bias.numpy(), np.float32)
        huggingface.write_directory(directory, self.backbone.config, state, vocab_file=vocab_file)

        hf_config = self.backbone.config.to_hf_dict()
        hf_config.update({
            "architectures": ["BertForSequenceClassification"],
            "num_labels": self.num_classes,
            "id2label": {str(i): name for i, name in enumerate(label_names)},
            "label2id": {name: i for i, name in enumerate(label_names)},
            "problem_type": self.problem_type,
            "classifier_dropout": self.dropout,
        })
        fileio.write_json(os.path.join(directory, "config.json"), hf_config, sort_keys=True)


def _head_order(id2label: dict | None, label_names: Sequence[str] | None, source: str) -> list[int] | None:
    """Row order that makes a checkpoint head's classes line up with `label_names`, or None to keep it."""
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


def _read_head_fields(directory: str) -> dict:
    """`classifier_dropout`, `problem_type` and `id2label` from a HF config.json, if any."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)  # read_checkpoint has already parsed it, so it is valid JSON
    return {key: data[key] for key in ("classifier_dropout", "problem_type", "id2label") if data.get(key) is not None}
