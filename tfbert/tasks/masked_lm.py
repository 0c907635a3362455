"""`BertMaskedLM`: BERT's masked-language-model head, as transformers' `BertForMaskedLM`.

`sequence_output -> Dense(hidden, act) -> LayerNorm -> x @ word_embeddings^T + bias`: the output layer
is tied to the input word embeddings and has its own bias (`cls.predictions.*` in checkpoints).
Logits are computed only at the positions asked for (`masked_positions`), so a batch never holds
[batch, seq, vocab] floats in training; pass every position to get all of them.
"""

from __future__ import annotations

import logging
import os

import keras
import numpy as np

from tfbert.backbone import BertBackbone
from tfbert.layers import LayerNormalization, get_activation
from tfbert.tasks.base import BertTaskModel, backbone_policy
from tfbert.tasks.losses import IGNORE_LABEL, MaskedTokenCrossentropy

logger = logging.getLogger("tfbert")

FEATURES = ("input_ids", "token_type_ids", "attention_mask")
HEAD_PREFIX = "cls.predictions."


class TiedOutput(keras.layers.Layer):
    """`x @ embeddings^T + bias`, the embeddings read from another layer (not tracked here, so saved once)."""

    def __init__(self, embedding: keras.layers.Embedding, **kwargs):
        super().__init__(**kwargs)
        self._embeddings = lambda: embedding.embeddings  # a callable is not tracked as a sub-layer
        self.vocab_size = embedding.input_dim

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")

    def call(self, x):
        kernel = keras.ops.cast(self._embeddings(), x.dtype)
        return keras.ops.matmul(x, keras.ops.transpose(kernel)) + keras.ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.vocab_size,)


@keras.saving.register_keras_serializable(package="tfbert")
class BertMaskedLM(BertTaskModel):
    """BERT with the masked-LM head.

    Inputs: the backbone's (`input_ids`, `token_type_ids`, `attention_mask`, int [batch, seq]) and
    `masked_positions` int [batch, predictions], the positions to predict (padding rows may repeat 0;
    their labels are -100). Output: float32 logits [batch, predictions, vocab_size].

    Example:
        >>> import numpy as np
        >>> from tfbert import BertBackbone, BertConfig
        >>> backbone = BertBackbone(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                    num_attention_heads=2, intermediate_size=64))
        >>> mlm = BertMaskedLM(backbone)
        >>> inputs = {"input_ids": np.array([[2, 4, 43, 3]]), "token_type_ids": np.zeros((1, 4), "int32"),
        ...           "attention_mask": np.ones((1, 4), "int32"), "masked_positions": np.array([[1]])}
        >>> tuple(mlm(inputs).shape)
        (1, 1, 100)
    """

    HEAD_KEYS = ()

    def __init__(self, backbone: BertBackbone, **kwargs):
        self.backbone = backbone
        backbone.pooler.trainable = False  # BertForMaskedLM has no pooler
        config = backbone.config
        policy = backbone_policy(backbone)
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.transform = keras.layers.Dense(config.hidden_size, kernel_initializer=init, dtype=policy,
                                            name="mlm_transform")
        self.transform_norm = LayerNormalization(epsilon=config.layer_norm_eps, dtype=policy,
                                                 name="mlm_transform_layer_norm")
        self.output_layer = TiedOutput(backbone.embeddings.word_embeddings, dtype=policy, name="mlm_output")
        activation = get_activation(config.hidden_act)

        inputs = dict(backbone.input)
        inputs["masked_positions"] = keras.Input(shape=(None,), dtype="int32", name="masked_positions")
        hidden = backbone({name: inputs[name] for name in FEATURES})["sequence_output"]
        picked = keras.ops.take_along_axis(hidden, keras.ops.expand_dims(inputs["masked_positions"], -1), axis=1)
        x = self.transform_norm(keras.layers.Activation(activation, dtype=policy)(self.transform(picked)))
        logits = self.float32_logits(self.output_layer(x))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

    @staticmethod
    def default_loss() -> keras.losses.Loss:
        """Cross-entropy over the masked positions (labels -100 elsewhere), as `BertForMaskedLM` (over the
        whole batch under a distribution strategy too: `MaskedTokenCrossentropy`)."""
        return MaskedTokenCrossentropy(IGNORE_LABEL)

    # ---- checkpoints -----------------------------------------------------------------------------
    @classmethod
    def take_head(cls, state: dict) -> dict | None:
        head = {key: state.pop(key) for key in list(state) if key.startswith(HEAD_PREFIX)}
        return head or None

    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, dtype=None, **overrides) -> "BertMaskedLM":
        """Builds the model from a BERT checkpoint with its MLM head (`cls.predictions.*`, as
        `BertForMaskedLM` and Google's pre-training checkpoints have it); a checkpoint without one
        (e.g. a sentence-embedding model) gets a fresh head, and the log says so.

        Raises:
            tfbert.checkpoints.CheckpointError: unreadable files, or encoder weights missing or of
                the wrong shape (named).
        """
        backbone, head, _, source = cls.read_pretrained(path_or_preset, dtype=dtype, **overrides)
        model = cls(backbone)
        if head is None:
            logger.warning("%s: no masked-LM head (cls.predictions.*) in the checkpoint; the head starts fresh "
                           "(transform random, output tied to the word embeddings, bias 0)", source)
            return model
        expected = {f"{HEAD_PREFIX}transform.dense.weight": (model.transform.kernel, True),
                    f"{HEAD_PREFIX}transform.dense.bias": (model.transform.bias, False),
                    f"{HEAD_PREFIX}transform.LayerNorm.weight": (model.transform_norm.gamma, False),
                    f"{HEAD_PREFIX}transform.LayerNorm.bias": (model.transform_norm.beta, False),
                    f"{HEAD_PREFIX}bias": (model.output_layer.bias, False)}
        aliases = {f"{HEAD_PREFIX}transform.LayerNorm.gamma": f"{HEAD_PREFIX}transform.LayerNorm.weight",
                   f"{HEAD_PREFIX}transform.LayerNorm.beta": f"{HEAD_PREFIX}transform.LayerNorm.bias",
                   f"{HEAD_PREFIX}decoder.bias": f"{HEAD_PREFIX}bias"}
        head = {aliases.get(k, k): v for k, v in head.items()}
        missing = [k for k in expected if k not in head]
        if missing:
            logger.warning("%s: the masked-LM head lacks %s; the head starts fresh", source, ", ".join(missing))
            return model
        for key, (variable, transpose) in expected.items():
            value = np.asarray(head[key], np.float32)
            value = value.T if transpose else value
            if tuple(value.shape) != tuple(variable.shape):
                logger.warning("%s: %s has shape %s, the model needs %s; the head starts fresh", source, key,
                               value.shape, tuple(variable.shape))
                return cls(backbone)
            variable.assign(value)
        logger.info("%s: loaded the masked-LM head", source)
        return model

    def save_pretrained(self, directory: str | os.PathLike, label_names=None, vocab_file: str | None = None) -> None:
        """Writes a Hugging Face `BertForMaskedLM` directory (config.json, model.safetensors, and
        `vocab_file` if given); the decoder is tied to the word embeddings, as transformers saves it."""
        bias = np.asarray(self.output_layer.bias.numpy(), np.float32)
        state = {f"{HEAD_PREFIX}transform.dense.weight": np.ascontiguousarray(self.transform.kernel.numpy().T),
                 f"{HEAD_PREFIX}transform.dense.bias": np.asarray(self.transform.bias.numpy()),
                 f"{HEAD_PREFIX}transform.LayerNorm.weight": np.asarray(self.transform_norm.gamma.numpy()),
                 f"{HEAD_PREFIX}transform.LayerNorm.bias": np.asarray(self.transform_norm.beta.numpy()),
                 f"{HEAD_PREFIX}bias": bias}
        # The pooler is kept although BertForMaskedLM has none (transformers notes it as unused when it loads
        # the directory): a classifier fine-tuned from the adapted model starts from the checkpoint's pooler
        # (which pre-training leaves untouched), not from a random one.
        self.write_pretrained(directory, state, {"architectures": ["BertForMaskedLM"]}, vocab_file=vocab_file)
