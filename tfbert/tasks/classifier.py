"""`BertClassifier`: sequence classification, multi-label classification or regression
from BERT's pooled `[CLS]` output, the head of transformers' `BertForSequenceClassification`."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import keras

from tfbert.backbone import BertBackbone
from tfbert.tasks.base import BertTaskModel, check_dropout, check_label_names, label_fields

logger = logging.getLogger(__name__)

TASKS = ("classification", "multi_label", "regression")

# transformers' `problem_type` for each task, as written to / read from config.json.
PROBLEM_TYPES = {
    "classification": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}



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
    check_dropout(dropout, "BertClassifier")


@keras.saving.register_keras_serializable(package="tfbert")
class BertClassifier(BertTaskModel):
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

    HEAD_ARGS = ("num_classes", "task", "dropout")
    # transformers' BertForSequenceClassification, then Google's run_classifier.py.
    HEAD_KEYS = (("classifier.weight", "classifier.bias"), ("output_weights", "output_bias"))

    def __init__(self, backbone: BertBackbone, num_classes: int, task: str = "classification",
                 dropout: float | None = None, **kwargs):
        _check_head_args(num_classes, task, dropout)
        if dropout is None:
            dropout = backbone.config.hidden_dropout_prob
        self.backbone = backbone
        head = self.linear_head(num_classes, dropout)

        # === Functional model ===
        inputs = backbone.input
        logits = self.float32_logits(head(backbone(inputs)["pooled_output"]))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.task = task
        self.dropout = float(dropout)

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
        _check_head_args(num_classes, task, dropout)
        backbone, head, head_fields, source = cls.read_pretrained(path_or_preset, dtype=dtype, **overrides)
        if dropout is None:
            dropout = head_fields.get("classifier_dropout")
        model = cls(backbone, num_classes=num_classes, task=task, dropout=dropout)
        loaded = model.load_linear_head(head, head_fields, source, label_names, "sequence-classification")
        checkpoint_problem = head_fields.get("problem_type")
        if loaded and checkpoint_problem and checkpoint_problem != PROBLEM_TYPES[task]:
            logger.warning("%s: the head was trained with problem_type=%r, but task=%r expects %r; "
                           "its logits may mean something else", source, checkpoint_problem, task,
                           PROBLEM_TYPES[task])
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
        label_names = check_label_names(label_names, self.num_classes, "save_pretrained")
        self.write_pretrained(directory, self.linear_head_state(), {
            "architectures": ["BertForSequenceClassification"], **label_fields(label_names),
            "problem_type": self.problem_type, "classifier_dropout": self.dropout}, vocab_file=vocab_file)
