"""`BertQuestionAnswerer`: start and end logits over the tokens of a window (extractive QA), the head
of transformers' `BertForQuestionAnswering`."""

from __future__ import annotations

import os

import keras

from tfbert.backbone import BertBackbone
from tfbert.tasks.base import BertTaskModel, check_dropout


@keras.saving.register_keras_serializable(package="tfbert")
class SpanLoss(keras.losses.Loss):
    """Labels int [batch, 2] (start, end), logits [batch, seq, 2]: the mean of the two cross-entropies."""

    def __init__(self, name: str = "span_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, "int32")
        start = keras.losses.sparse_categorical_crossentropy(y_true[:, 0], y_pred[:, :, 0], from_logits=True)
        end = keras.losses.sparse_categorical_crossentropy(y_true[:, 1], y_pred[:, :, 1], from_logits=True)
        return (start + end) / 2


@keras.saving.register_keras_serializable(package="tfbert")
class BertQuestionAnswerer(BertTaskModel):
    """BERT with a span head: `Dense(2, name="qa_outputs")` on the last hidden states.

    Inputs are the backbone's (`input_ids`, `token_type_ids`, `attention_mask`, int [batch, seq]);
    the output is float32 logits [batch, seq, 2]: `[..., 0]` the start and `[..., 1]` the end logit of
    each token, as transformers' `BertForQuestionAnswering` (`qa_outputs.weight` [2, hidden]; no
    dropout before it) splits them, so checkpoints load both ways.

    Labels for `default_loss` are int [batch, 2], the (start, end) token positions of the answer, (0, 0)
    ([CLS]) for a window without it.

    Example:
        >>> import numpy as np
        >>> from tfbert import BertBackbone, BertConfig
        >>> backbone = BertBackbone(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                    num_attention_heads=2, intermediate_size=64))
        >>> reader = BertQuestionAnswerer(backbone)
        >>> inputs = {"input_ids": np.array([[2, 17, 3, 43, 44, 3]]), "token_type_ids": np.array([[0, 0, 0, 1, 1, 1]]),
        ...           "attention_mask": np.ones((1, 6), "int32")}
        >>> tuple(reader(inputs).shape)
        (1, 6, 2)
    """

    HEAD_KEYS = (("qa_outputs.weight", "qa_outputs.bias"),)
    HEAD_ARGS = ("dropout",)

    def __init__(self, backbone: BertBackbone, dropout: float | None = None, **kwargs):
        check_dropout(dropout, "BertQuestionAnswerer")
        self.backbone = backbone
        backbone.pooler.trainable = False  # transformers builds this head without the pooler
        # transformers has no dropout before qa_outputs (0, the default); a search may try some.
        self.dropout = float(dropout or 0.0)
        head = self.linear_head(2, self.dropout, name="qa_outputs")
        inputs = backbone.input
        logits = self.float32_logits(head(backbone(inputs)["sequence_output"]))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

    @staticmethod
    def default_loss() -> keras.losses.Loss:
        """(cross-entropy of the start position + that of the end position) / 2 over the window's
        tokens, averaged over the batch, as `BertForQuestionAnswering` computes it."""
        return SpanLoss()

    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, dtype=None, dropout: float | None = None,
                        **overrides) -> "BertQuestionAnswerer":
        """Builds a question answerer from a BERT checkpoint, with its `qa_outputs` head when it has
        one (a `BertForQuestionAnswering` checkpoint); otherwise the head starts random.

        Raises:
            tfbert.checkpoints.CheckpointError: unreadable files, or encoder weights missing or of
                the wrong shape (named).
        """
        backbone, head, head_fields, source = cls.read_pretrained(path_or_preset, dtype=dtype, **overrides)
        model = cls(backbone, dropout=dropout)
        model.load_linear_head(head, head_fields, source, None, "question-answering")
        return model

    def save_pretrained(self, directory: str | os.PathLike, label_names=None, vocab_file: str | None = None) -> None:
        """Writes a Hugging Face `BertForQuestionAnswering` directory (config.json, model.safetensors,
        and `vocab_file` if given)."""
        self.write_pretrained(directory, self.linear_head_state("qa_outputs"),
                              {"architectures": ["BertForQuestionAnswering"]}, vocab_file=vocab_file,
                              drop_prefixes=("pooler.",))
