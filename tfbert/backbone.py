"""`BertBackbone`: the BERT encoder as a functional Keras model, dict in -> dict out."""

from __future__ import annotations

import os

import keras
from keras import ops

from tfbert.config import BertConfig
from tfbert.layers import BertEmbeddings, BertEncoderBlock, TokenRows, weight_initializer, weights_from_checkpoint

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")


@keras.saving.register_keras_serializable(package="tfbert")
class BertBackbone(keras.Model):
    """A BERT encoder (post-LayerNorm transformer with absolute positions).

    Inputs are a dict of int tensors of shape [batch, seq] named as in transformers'
    TF BERT signatures: `input_ids`, `token_type_ids`, `attention_mask` (1 = token,
    0 = padding); `seq` may be anything up to `max_position_embeddings`. Outputs are
    `{"sequence_output": [batch, seq, hidden], "pooled_output": [batch, hidden]}`,
    float32 whatever the dtype policy.

    Args:
        config: a `BertConfig`, or its fields as keyword arguments.
        dtype: a Keras dtype policy name, e.g. "mixed_bfloat16"; defaults to the global policy.

    Example:
        >>> import numpy as np
        >>> backbone = BertBackbone(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                    num_attention_heads=2, intermediate_size=64))
        >>> out = backbone({"input_ids": np.array([[2, 5, 3]]), "token_type_ids": np.zeros((1, 3)),
        ...                 "attention_mask": np.ones((1, 3))})
        >>> tuple(out["sequence_output"].shape), tuple(out["pooled_output"].shape)
        ((1, 3, 32), (1, 32))
    """

    def __init__(self, config: BertConfig | None = None, dtype=None, **kwargs):
        config_fields = {k: kwargs.pop(k) for k in list(kwargs) if k in BertConfig.__dataclass_fields__}
        if config is None:
            config = BertConfig(**config_fields)
        elif isinstance(config, dict):
            config = BertConfig.from_dict(config)
        elif config_fields:
            raise TypeError("pass either a BertConfig or its fields, not both")
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
        embeddings = BertEmbeddings(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size,
            max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
            layer_norm_eps=config.layer_norm_eps, dropout=config.hidden_dropout_prob,
            initializer_range=config.initializer_range, dtype=dtype, name="embeddings")
        x = embeddings(inputs["input_ids"], inputs["token_type_ids"])
        for i in range(config.num_hidden_layers):
            x = BertEncoderBlock(
                hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size, activation=config.hidden_act,
                dropout=config.hidden_dropout_prob, attention_dropout=config.attention_probs_dropout_prob,
                layer_norm_eps=config.layer_norm_eps, initializer_range=config.initializer_range,
                dtype=dtype, name=f"encoder_layer_{i}")(x, inputs["attention_mask"])
        pooler = keras.layers.Dense(
            config.hidden_size, activation="tanh",
            kernel_initializer=weight_initializer(config.initializer_range),
            dtype=dtype, name="pooler")
        pooled = pooler(x[:, 0, :])
        # Heads and losses want float32, whatever precision the encoder ran in.
        outputs = {
            "sequence_output": keras.layers.Activation("linear", dtype="float32", name="sequence_output")(x),
            "pooled_output": keras.layers.Activation("linear", dtype="float32", name="pooled_output")(pooled),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        self.policy_name = None if dtype is None else keras.dtype_policies.get(dtype).name
        self._skip_padding = False  # not in the config: how the encoder runs, not what it computes

    def call(self, inputs, training=None, mask=None):
        if not isinstance(inputs, dict):  # the documented form is a dict; anything else as Keras runs it
            return super().call(inputs, training=training, mask=mask)
        return self._encode(*(ops.cast(inputs[name], "int32") for name in INPUT_NAMES), training=training)

    def _encode(self, input_ids, token_type_ids, attention_mask, training=None):
        """The functional graph's computation, one body for both layouts: the encoder blocks on 2-D
        [tokens, hidden] activations (`BertEncoderBlock.on_tokens`), all batch * seq positions, or with
        `skip_padding` the embeddings' token rows gathered once and kept packed through every block, put
        back on the padded layout once for `sequence_output` (which a classifier's graph never computes:
        nothing reads it) and read at each row's first position for the pooler."""
        batch, seq = ops.shape(input_ids)[0], ops.shape(input_ids)[1]
        hidden_size = self.config.hidden_size
        # Training rounds the token count up to a multiple of 64: XLA compiles the fused GELU and dropout
        # kernels once per shape, and a count that changes with every batch would compile every step.
        rows = TokenRows(attention_mask, multiple=64 if training else 1) if self._skip_padding else None
        tokens = ops.reshape(self.embeddings(input_ids, token_type_ids, training=training), (-1, hidden_size))
        if rows is not None:
            tokens = rows.gather(tokens)
        for layer in self.encoder_layers:
            tokens = layer.on_tokens(tokens, attention_mask, rows, training=training)
        if rows is None:
            sequence = ops.reshape(tokens, (batch, seq, hidden_size))
            first = sequence[:, 0, :]
        else:
            sequence, first = ops.reshape(rows.scatter(tokens), (batch, seq, hidden_size)), rows.firsts(tokens)
        return {"sequence_output": self.get_layer("sequence_output")(sequence),
                "pooled_output": self.get_layer("pooled_output")(self.pooler(first))}

    # ---- layer access used by checkpoint conversion and LoRA ----------------------------------
    @property
    def embeddings(self) -> BertEmbeddings:
        return self.get_layer("embeddings")

    @property
    def encoder_layers(self) -> list[BertEncoderBlock]:
        return [self.get_layer(f"encoder_layer_{i}") for i in range(self.config.num_hidden_layers)]

    @property
    def pooler(self) -> keras.layers.Dense:
        return self.get_layer("pooler")

    @property
    def skip_padding(self) -> bool:
        """Whether the encoder runs its per-token layers on the real tokens alone.

        Off by default. Padding costs a padded batch's dense layers (most of BERT's arithmetic) in
        proportion: SST-2 dev in batches of 32 padded to their longest is 48% padding. On, the
        embeddings' token rows are gathered once and stay packed through the encoder blocks' dense
        layers, LayerNorms, GELU and dropout, each block spreading them onto the padded layout for
        attention alone; the real positions' outputs and the gradients are the same within float32
        rounding, padded positions of `sequence_output` are 0 (but the first of each row). The number
        of tokens then changes from batch to batch, which TPUs and XLA (`jit_compile`) cannot compile
        well: tfbert's runner turns it on for training where it can (`--skip_padding`), and exports
        (`tfbert.export`) turn it on for their serving copy (neither for question answering, whose
        outputs at padded positions are part of its loss). In training the token count is rounded
        up to a multiple of 64 (rows of zeros) to bound the XLA-compiled kernels' shapes.
        """
        return self._skip_padding

    @skip_padding.setter
    def skip_padding(self, value: bool) -> None:
        self._skip_padding = bool(value)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dtype": self.policy_name,
                "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ---- checkpoints -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike, dtype=None, return_report: bool = False,
                        **overrides):
        """Builds a backbone from a checkpoint and loads its weights.

        Args:
            path_or_preset: a Hugging Face BERT directory, an original Google BERT checkpoint
                directory, a named preset (e.g. "minilm-l6") or a Hugging Face hub id
                (see `tfbert.checkpoints.resolve`).
            dtype: Keras dtype policy for the model, e.g. "mixed_bfloat16".
            return_report: also return the `tfbert.checkpoints.LoadReport` (loaded, missing and
                unexpected keys).
            **overrides: config fields to change, e.g. `hidden_dropout_prob=0.2`.

        Raises:
            tfbert.checkpoints.CheckpointError: unreadable files, a shape mismatch or a missing
                encoder weight, by name.
        """
        from tfbert.checkpoints import read_checkpoint

        backbone, report = cls.from_state(*read_checkpoint(path_or_preset, **overrides), dtype=dtype)
        return (backbone, report) if return_report else backbone

    @classmethod
    def from_state(cls, config: BertConfig, state: dict, source: str, dtype=None):
        """A backbone of `config` holding a checkpoint's `state` (Hugging Face names, as `read_checkpoint`
        returns it; `source` names it in errors) and the `LoadReport`. The weights the checkpoint holds are
        not drawn at random first; those it lacks (an optional pooler) are, as a new model's."""
        from tfbert.checkpoints.mapping import assign_state, weight_map

        with weights_from_checkpoint():
            backbone = cls(config, dtype=dtype)
        report = assign_state(backbone, state, source)
        variables = {key: variable for key, variable, _ in weight_map(backbone)}
        for key in report.missing:
            variable = variables[key]
            if len(variable.shape) > 1:  # a kernel; biases start at zero either way
                variable.assign(weight_initializer(config.initializer_range)(variable.shape, "float32"))
        return backbone, report

    def save_pretrained(self, directory: str | os.PathLike, vocab_file: str | None = None,
                        tokenizer_dir: str | None = None) -> None:
        """Writes `config.json` + `model.safetensors` (+ `vocab.txt` or a tokenizer directory's
        files) that transformers' `BertModel.from_pretrained` loads."""
        from tfbert.checkpoints import backbone_state, huggingface

        huggingface.write_directory(os.fspath(directory), self.config, backbone_state(self),
                                    tokenizer_dir=tokenizer_dir, vocab_file=vocab_file)
