"""`BertTokenClassifier`: one label per token (named-entity recognition, POS tagging), the head of
transformers' `BertForTokenClassification`."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import keras

from tfbert.backbone import BertBackbone
from tfbert.tasks.base import BertTaskModel, check_dropout, check_label_names, label_fields
from tfbert.tasks.losses import IGNORE_LABEL, MaskedTokenCrossentropy

logger = logging.getLogger("tfbert")


@keras.saving.register_keras_serializable(package="tfbert")
class BertTokenClassifier(BertTaskModel):
    """BERT with a per-token classification head on the last hidden states.

    Inputs are the backbone's (`input_ids`, `token_type_ids`, `attention_mask`, int [batch, seq]);
    the output is float32 logits [batch, seq, num_labels]. The head is
    `sequence_output -> Dropout -> Dense(num_labels, name="classifier")`, as in transformers'
    `BertForTokenClassification`, so checkpoints load both ways.

    Args:
        backbone: the `BertBackbone` to put the head on.
        num_labels: number of tags (e.g. 13 for WNUT-17's IOB2 tags).
        dropout: dropout before the Dense layer; defaults to the backbone config's
            `hidden_dropout_prob`, as transformers does when `classifier_dropout` is unset.
        **kwargs: passed to `keras.Model`, e.g. `name`.

    Raises:
        ValueError: `num_labels` not a positive integer, or dropout outside [0, 1).

    Example:
        >>> import numpy as np
        >>> from tfbert import BertBackbone, BertConfig
        >>> backbone = BertBackbone(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                    num_attention_heads=2, intermediate_size=64))
        >>> tagger = BertTokenClassifier(backbone, num_labels=5)
        >>> inputs = {"input_ids": np.array([[2, 17, 43, 3, 0]]), "token_type_ids": np.zeros((1, 5), "int32"),
        ...           "attention_mask": np.array([[1, 1, 1, 1, 0]])}
        >>> tuple(tagger(inputs).shape)
        (1, 5, 5)
        >>> tagger.compile(optimizer="adam", loss=tagger.default_loss())
        >>> history = tagger.fit(inputs, np.array([[-100, 1, 4, -100, -100]]), verbose=0)
    """

    HEAD_ARGS = ("num_labels", "dropout")

    def __init__(self, backbone: BertBackbone, num_labels: int, dropout: float | None = None, **kwargs):
        if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
            raise ValueError(f"BertTokenClassifier: num_labels must be a positive integer, found {num_labels!r}")
        check_dropout(dropout, "BertTokenClassifier")
        if dropout is None:
            dropout = backbone.config.hidden_dropout_prob
        self.backbone = backbone
        # The pooler plays no part in token outputs (transformers builds this head without one).
        backbone.pooler.trainable = False
        # Untruncated, as BertForTokenClassification starts: on WNUT-17 the truncated draw of the
        # other heads trained to 3.1 points lower dev F1 and 1.3 lower test F1 over four seeds
        # (benchmarks/README.md).
        head = self.linear_head(num_labels, dropout, truncated=False)

        inputs = backbone.input
        logits = self.float32_logits(head(backbone(inputs)["sequence_output"]))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        self.num_labels = num_labels
        self.dropout = float(dropout)

    @staticmethod
    def default_loss() -> keras.losses.Loss:
        """Cross-entropy per labelled token, averaged over the tokens whose label is not
        `IGNORE_LABEL` (-100), as transformers' `BertForTokenClassification` computes it (over the whole
        batch under a distribution strategy too: `MaskedTokenCrossentropy`)."""
        return MaskedTokenCrossentropy(IGNORE_LABEL)

    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, num_labels: int, dtype=None,
                        dropout: float | None = None, label_names: Sequence[str] | None = None,
                        **overrides) -> "BertTokenClassifier":
        """Builds a token classifier from a BERT checkpoint, with its head when the checkpoint has one
        of the right shape (`classifier.weight` [num_labels, hidden], as `BertForTokenClassification`
        saves it). A checkpoint that names the same tags in another order (`id2label`) has its rows
        reordered to `label_names`. See `BertClassifier.from_pretrained` for the other arguments.

        Raises:
            tfbert.checkpoints.CheckpointError: unreadable files, or encoder weights missing or of
                the wrong shape (named).
        """
        backbone, head, head_fields, source = cls.read_pretrained(path_or_preset, dtype=dtype, **overrides)
        if dropout is None:
            dropout = head_fields.get("classifier_dropout")
        model = cls(backbone, num_labels=num_labels, dropout=dropout)
        model.load_linear_head(head, head_fields, source, label_names, "token-classification")
        return model

    def save_pretrained(self, directory: str | os.PathLike, label_names: Sequence[str] | None = None,
                        vocab_file: str | None = None) -> None:
        """Writes a Hugging Face `BertForTokenClassification` directory (config.json with
        `id2label`/`label2id`, model.safetensors, and `vocab_file` if given).

        Raises:
            ValueError: `label_names` of the wrong length, duplicated, or not strings.
        """
        label_names = check_label_names(label_names, self.num_labels, "save_pretrained")
        self.write_pretrained(directory, self.linear_head_state(), {
            "architectures": ["BertForTokenClassification"], **label_fields(label_names),
            "classifier_dropout": self.dropout}, vocab_file=vocab_file, drop_prefixes=("pooler.",))
