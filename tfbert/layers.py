"""Keras layers of a BERT encoder: embeddings, a post-LayerNorm transformer block.

Weights are laid out the way Keras layers store them (`Dense` kernels are
[in, out]); `tfbert.checkpoints` maps them to and from Hugging Face / Google names.
"""

from __future__ import annotations

import contextlib
import math
import threading

import keras
import tensorflow as tf
from keras import ops

from tfbert.config import SUPPORTED_ACTIVATIONS


_building = threading.local()


@contextlib.contextmanager
def weights_from_checkpoint():
    """Inside, tfbert's layers create the weights they would draw from a truncated normal as zeros: for a
    model whose checkpoint overwrites them (`BertBackbone.from_state`). MiniLM's random draws took 0.3-0.5 s
    of every run's start (issue 12, time to the first step), to be overwritten at once."""
    before = getattr(_building, "from_checkpoint", False)
    _building.from_checkpoint = True
    try:
        yield
    finally:
        _building.from_checkpoint = before


def weight_initializer(stddev: float):
    """BERT's weight initializer, a normal of `stddev` truncated at two deviations (zeros inside
    `weights_from_checkpoint`)."""
    if getattr(_building, "from_checkpoint", False):
        return keras.initializers.Zeros()
    return keras.initializers.TruncatedNormal(stddev=stddev)


def _normal_cdf(x):
    """Phi(x), the standard normal CDF, as Keras' exact GELU computes it."""
    return 0.5 * tf.math.erfc(x * -0.7071067811865476)


def _normal_pdf(x):
    """phi(x) = exp(-x^2 / 2) / sqrt(2 pi), the standard normal density."""
    return 0.3989422804014327 * tf.exp(-0.5 * tf.square(x))


@tf.custom_gradient
def exact_gelu(x):
    """`x * Phi(x)`, the exact GELU, as Keras computes it (`keras.activations.gelu(x, approximate=False)`,
    the same ops and values in float32), with its derivative `Phi(x) + x * phi(x)` written out: TensorFlow's
    own gradient of those ops took 20% longer (9 element-wise passes over [batch, seq, intermediate] per
    layer instead of 6).

    A bfloat16 or float16 `x` (mixed precision) is computed in float32 and the result rounded once to
    `x`'s dtype: closer to the float32 GELU than the same ops in bfloat16, and faster on CPUs, whose
    bfloat16 `Erfc` and `Exp` were the slowest element-wise kernels of a mixed_bfloat16 step (issue 12:
    one layer's GELU forward and backward 48 -> 31 ms)."""
    wide = tf.cast(x, tf.float32)  # the identity for float32
    cdf = _normal_cdf(wide)

    def gradient(upstream):
        return tf.cast(tf.cast(upstream, tf.float32) * (cdf + wide * _normal_pdf(wide)), x.dtype)

    return tf.cast(wide * cdf, x.dtype), gradient


@tf.function(jit_compile=True, reduce_retracing=True)
def _gelu_and_slope(x):
    """The exact GELU of `x` (rounded to `x`'s dtype) and its float32 derivative, in one XLA-fused pass."""
    wide = tf.cast(x, tf.float32)
    cdf = _normal_cdf(wide)
    return tf.cast(wide * cdf, x.dtype), cdf + wide * _normal_pdf(wide)


@tf.function(jit_compile=True, reduce_retracing=True)
def _times_slope(upstream, slope):
    return tf.cast(tf.cast(upstream, tf.float32) * slope, upstream.dtype)


@tf.custom_gradient
def fused_exact_gelu(x):
    """`exact_gelu` for training: the GELU and its derivative computed together in one XLA-compiled
    element-wise pass, the backward pass one fused multiply. `exact_gelu` runs each of its 5 forward
    and 6 backward element-wise ops as its own pass over [batch, seq, intermediate]; this runs 2
    (issue 12: one layer's GELU forward and backward at [32, 128, 1536], Intel Xeon: float32 22.5 ->
    15.7 ms, bfloat16 31.7 -> 12.7 ms). XLA's `erfc` is not TensorFlow's kernel: values and derivative
    within 1 float32 ulp of `exact_gelu` (2.4e-7 and 1e-6 here; equal after rounding to bfloat16).
    Used where the encoder trains; inference and exports run `serving_gelu`, whose plain TensorFlow ops
    every TF Serving build runs."""
    value, slope = _gelu_and_slope(x)
    return value, lambda upstream: _times_slope(upstream, slope)


def serving_gelu(x):
    """The exact GELU for inference: `tf.nn.gelu(x, approximate=False)` (Keras' exact GELU), computed in
    float32 for a bfloat16 or float16 `x` and rounded once, as `exact_gelu` does; the same values as
    `exact_gelu` (the same operations). Plain ops with no custom gradient around them, in the form
    TensorFlow's graph optimizer (Grappler's remapper) recognizes: after a 2-D `MatMul` and bias add it
    becomes one oneDNN matmul with the GELU fused in, where `exact_gelu` ran 4 element-wise passes over
    [tokens, intermediate] (issue 12: MiniLM's forward pass at batch 32 1.22x faster together with
    `BertEncoderBlock`'s 2-D dense layers). Not for training: its gradient is TensorFlow's autodiff of
    those ops (training runs `fused_exact_gelu`)."""
    return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=False), x.dtype)


def get_activation(name: str, training: bool = False):
    """The activation transformers' `ACT2FN[name]` computes, as a Keras callable; with `training`, the
    variant to differentiate (for "gelu", `fused_exact_gelu`)."""
    if name == "gelu":
        return fused_exact_gelu if training else exact_gelu
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: keras.activations.gelu(x, approximate=True)
    if name in ("silu", "swish"):
        return keras.activations.silu
    if name in ("relu", "tanh"):
        return keras.activations.get(name)
    raise ValueError(f"hidden_act {name!r} is not supported; supported: {', '.join(SUPPORTED_ACTIVATIONS)}")


class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` whose keep mask costs half the random numbers and does not depend on the dtype.

    Keras draws one uniform float per unit (one 32-bit Philox output each), and for a bfloat16 input
    draws them in bfloat16: multiples of 1/128, so `rate=0.1` kept 0.8984 of the units while scaling
    them by 1/0.9. Here one stateless Philox draw of 32-bit words decides two units per word: each
    16-bit half keeps its unit when it is >= `round(rate * 2**16)`. The kept units are scaled by
    the inverse of that keep probability (for `rate=0.1`: 1 - 6554 / 65536 = 0.899994, within 1e-5
    of 0.9), so the layer's expected output is its input exactly, as with Keras' dropout. The mask is
    the same for float32, bfloat16 and float16 inputs with the same seed, and the draw is half of
    Keras': dropout's random numbers were 6% of a float32 training step (issue 12). A seeded layer is
    reproducible; its masks differ from `keras.layers.Dropout`'s with the same seed. The compare, the
    scaling and the select run as one XLA-compiled pass, forward and backward (`_keep_and_scale`);
    XLA compiles it once per input shape in a process. `noise_shape` takes Keras' own path."""

    BITS = 16
    SEED_STATE = "seed_generator_state"

    # Keras saves a layer's weights but not its seed generator's state, so a run resumed from a
    # backup (or any model loaded from a .weights.h5 / .keras file) would draw the dropout masks of
    # its first steps again. The state is saved with the layer's variables, so that a resumed run
    # draws the masks the uninterrupted run draws; a file written without it leaves the state as is.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        if getattr(self, "seed_generator", None) is not None:
            store[self.SEED_STATE] = self.seed_generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        if self.SEED_STATE in keys and getattr(self, "seed_generator", None) is not None:
            self.seed_generator.state.assign(store[self.SEED_STATE])
        super().load_own_variables({key: store[key] for key in keys if key != self.SEED_STATE})

    def call(self, inputs, training=False):
        threshold = min(round(self.rate * 2 ** self.BITS), 2 ** self.BITS - 1)
        if not training or threshold == 0 or self.rate >= 1.0 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        seed = self.seed_generator.next()  # advances as Keras' own dropout advances it
        if seed.dtype != tf.int32:  # stateless ops take int32 seeds; Keras folds its int64 state the same way
            seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        size = tf.size(inputs)
        words = tf.random.stateless_uniform(((size + 1) // 2,), seed=seed, minval=None, maxval=None,
                                            dtype=tf.uint32)
        halves = tf.reshape(tf.reshape(tf.bitcast(words, tf.uint16), (-1,))[:size], tf.shape(inputs))
        scale = 2 ** self.BITS / (2 ** self.BITS - threshold)  # 1 / P(keep)
        return _dropout(inputs, halves, threshold, scale)


@tf.function(jit_compile=True, reduce_retracing=True)
def _keep_and_scale(x, halves, threshold, scale):
    """`x * scale` where `halves >= threshold`, else 0: compare, scale and select in one XLA-fused pass."""
    return tf.where(halves >= tf.cast(threshold, tf.uint16), x * tf.cast(scale, x.dtype), tf.zeros_like(x))


def _dropout(x, halves, threshold, scale):
    """Dropout is linear in `x`: its gradient is the same masking and scaling of the upstream gradient."""

    @tf.custom_gradient
    def apply(x):
        return _keep_and_scale(x, halves, threshold, scale), lambda up: _keep_and_scale(up, halves, threshold, scale)

    return apply(x)


class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis with its gradient written out.

    The same formula in float32 (a bfloat16 input is normalized in float32, `gamma` and `beta` stay
    float32, the output is rounded once), values within float32 rounding of Keras' layer; TensorFlow's
    own gradient of Keras' ops ran 20-odd element-wise ops and reductions per layer, the written-out
    one (`dx = rstd * (g - mean(g) - norm * mean(g * norm))`, `g = dy * gamma`) runs 8. One layer's
    forward and backward at [32, 128, 384] (issue 12, Intel Xeon): float32 7.6 -> 5.7 ms, bfloat16
    9.3 -> 6.8 ms. Other axes and `rms_scaling` take Keras' own path; the weights are Keras' own."""

    def call(self, inputs):
        axis = self.axis if isinstance(self.axis, int) else (self.axis[0] if len(self.axis) == 1 else None)
        rank = len(inputs.shape)
        if self.rms_scaling or not (self.center and self.scale) or axis not in (-1, rank - 1):
            return super().call(inputs)
        # float32 weights under a mixed policy; a plain "bfloat16" policy's are widened (a no-op for float32)
        outputs = _layer_norm(inputs, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32), self.epsilon)
        return ops.cast(outputs, self.compute_dtype)  # as Keras' layer returns (its inputs are not autocast)


def _layer_norm(x, gamma, beta, epsilon: float):
    """LayerNorm of `x` over its last axis, computed in float32, with the written-out gradient."""

    @tf.custom_gradient
    def apply(x, gamma, beta):
        wide = tf.cast(x, tf.float32)
        centered = wide - tf.reduce_mean(wide, axis=-1, keepdims=True)
        rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True) + epsilon)
        norm = centered * rstd

        def gradient(upstream):
            with tf.name_scope("layer_norm_gradient"):  # a name profiles can group its ops by
                up = tf.cast(upstream, tf.float32)
                outer = list(range(len(up.shape) - 1))
                g = up * gamma
                dx = rstd * (g - tf.reduce_mean(g, axis=-1, keepdims=True)
                             - norm * tf.reduce_mean(g * norm, axis=-1, keepdims=True))
                return tf.cast(dx, x.dtype), tf.reduce_sum(up * norm, axis=outer), tf.reduce_sum(up, axis=outer)

        return tf.cast(norm * gamma + beta, x.dtype), gradient

    return apply(x, gamma, beta)


class Dense(keras.layers.Dense):
    """`keras.layers.Dense` whose weights files keep LoRA adapters apart from the kernel they adapt.

    Keras' own Dense, with `enable_lora`, saves the merged kernel and zeroes both adapter matrices when
    it loads: after `BackupAndRestore` resumes a run or the best epoch's weights are loaded back, A and
    B are both zero, their gradients are zero, and the adapters never train again (and an adapter
    checkpoint written then holds nothing). This layer saves the kernel, the bias and the adapters as
    they are (plus the adapters' scale), so a LoRA model reloads exactly; a layer without LoRA that
    loads such a file takes the merged kernel. Without LoRA it saves what Keras' Dense saves.
    """

    def save_own_variables(self, store):
        if not (self.built and self.lora_enabled and self.quantization_mode is None):
            return super().save_own_variables(store)
        store["0"] = self._kernel
        if self.bias is not None:
            store["1"] = self.bias
        store["lora_a"], store["lora_b"] = self.lora_kernel_a, self.lora_kernel_b
        store["lora_scale"] = ops.convert_to_numpy(self.lora_alpha / self.lora_rank)

    def load_own_variables(self, store):
        if "lora_a" not in store.keys() or self.quantization_mode is not None:
            return super().load_own_variables(store)
        if not self.built:
            return
        kernel = ops.convert_to_numpy(store["0"])
        if self.lora_enabled:
            self._kernel.assign(kernel)
            self.lora_kernel_a.assign(store["lora_a"])
            self.lora_kernel_b.assign(store["lora_b"])
        else:
            self._kernel.assign(kernel + ops.convert_to_numpy(store["lora_a"]) @ ops.convert_to_numpy(
                store["lora_b"]) * ops.convert_to_numpy(store["lora_scale"]))
        if self.bias is not None:
            self.bias.assign(store["1"])


@keras.saving.register_keras_serializable(package="tfbert")
class BertEmbeddings(keras.layers.Layer):
    """Word + absolute position + token type embeddings, then LayerNorm and dropout."""

    def __init__(self, vocab_size: int, hidden_size: int, max_position_embeddings: int, type_vocab_size: int,
                 layer_norm_eps: float = 1e-12, dropout: float = 0.0, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.initializer_range = initializer_range
        init = weight_initializer(initializer_range)
        self.word_embeddings = keras.layers.Embedding(vocab_size, hidden_size, embeddings_initializer=init,
                                                      dtype=self.dtype_policy, name="word_embeddings")
        self.position_embeddings = keras.layers.Embedding(max_position_embeddings, hidden_size,
                                                          embeddings_initializer=init, dtype=self.dtype_policy,
                                                          name="position_embeddings")
        self.token_type_embeddings = keras.layers.Embedding(type_vocab_size, hidden_size,
                                                            embeddings_initializer=init, dtype=self.dtype_policy,
                                                            name="token_type_embeddings")
        self.layer_norm = LayerNormalization(epsilon=layer_norm_eps, dtype=self.dtype_policy, name="layer_norm")
        self.dropout = Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_ids_shape, token_type_ids_shape=None):
        self.word_embeddings.build(input_ids_shape)
        self.position_embeddings.build(input_ids_shape)
        self.token_type_embeddings.build(input_ids_shape)
        self.layer_norm.build(tuple(input_ids_shape) + (self.hidden_size,))
        self.built = True

    def call(self, input_ids, token_type_ids, training=None):
        seq_len = ops.shape(input_ids)[1]
        positions = ops.expand_dims(ops.arange(seq_len, dtype="int32"), 0)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(positions))
        x = self.layer_norm(x)
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_ids_shape, token_type_ids_shape=None):
        return tuple(input_ids_shape) + (self.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "max_position_embeddings": self.max_position_embeddings, "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps, "dropout": self.dropout_rate,
            "initializer_range": self.initializer_range,
        })
        return config


@keras.saving.register_keras_serializable(package="tfbert")
class BertEncoderBlock(keras.layers.Layer):
    """One post-LayerNorm transformer block, as in BERT.

    `x = LN(x + Dropout(Attention(x)))`, then `x = LN(x + Dropout(Dense(act(Dense(x)))))`.
    Attention logits and softmax run in float32 under mixed precision.
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, activation: str = "gelu",
                 dropout: float = 0.0, attention_dropout: float = 0.0, layer_norm_eps: float = 1e-12,
                 initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout_rate = dropout
        self.attention_dropout_rate = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.head_size = hidden_size // num_heads
        init = weight_initializer(initializer_range)
        dense = dict(kernel_initializer=init, dtype=self.dtype_policy)
        self.query = Dense(hidden_size, name="query", **dense)
        self.key = Dense(hidden_size, name="key", **dense)
        self.value = Dense(hidden_size, name="value", **dense)
        self.attention_output = Dense(hidden_size, name="attention_output", **dense)
        self.attention_layer_norm = LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="attention_layer_norm")
        self.intermediate = Dense(intermediate_size, name="intermediate", **dense)
        self.output_dense = Dense(hidden_size, name="output", **dense)
        self.output_layer_norm = LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="output_layer_norm")
        self.attention_dropout = Dropout(attention_dropout, dtype=self.dtype_policy)
        self.attention_output_dropout = Dropout(dropout, dtype=self.dtype_policy)
        self.output_dropout = Dropout(dropout, dtype=self.dtype_policy)
        self._training_act = get_activation(activation, training=True)
        self._serving_act = serving_gelu if activation == "gelu" else get_activation(activation)

    def build(self, x_shape, attention_mask_shape=None):
        hidden = tuple(x_shape[:-1]) + (self.hidden_size,)
        for layer in (self.query, self.key, self.value, self.attention_output, self.intermediate):
            layer.build(hidden)
        self.output_dense.build(tuple(x_shape[:-1]) + (self.intermediate_size,))
        self.attention_layer_norm.build(hidden)
        self.output_layer_norm.build(hidden)
        self.built = True

    def _split_heads(self, x, batch, seq):
        x = ops.reshape(x, (batch, seq, self.num_heads, self.head_size))  # from [batch, seq, hidden] or 2-D
        return ops.transpose(x, (0, 2, 1, 3))  # [batch, heads, seq, head_size]

    def _attend(self, q, k, v, attention_mask, training):
        """Scaled dot-product attention over [batch, heads, seq, head_size] `q`, `k`, `v`; the context as
        [batch, seq, heads, head_size]. The logits and softmax run in float32."""
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_size) + attention_bias_from_mask(attention_mask)
        probs = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        probs = self.attention_dropout(probs, training=training)
        return ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))

    def call(self, x, attention_mask, training=None):
        """The block on [batch, seq, hidden] `x`, every position (`on_tokens`).

        Args:
            x: [batch, seq, hidden].
            attention_mask: int [batch, seq], 1 for tokens to attend to, 0 for padding.
        """
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        hidden = self.on_tokens(ops.reshape(x, (-1, self.hidden_size)), attention_mask, training=training)
        return ops.reshape(hidden, (batch, seq, self.hidden_size))

    def on_tokens(self, tokens, attention_mask, rows=None, training=None):
        """The block on 2-D [tokens, hidden] activations, returned in the same layout: each dense layer
        a plain matmul and bias add, which TensorFlow's graph optimizer fuses into one oneDNN kernel at
        inference (with the GELU: `serving_gelu`). With `rows` (a `TokenRows` of `attention_mask`),
        `tokens` are its token rows and the dense layers, LayerNorms, GELU and dropout (all per token)
        run on them alone, attention on the padded [batch, seq] layout (`BertBackbone.skip_padding`
        keeps them packed from block to block); without, `tokens` are all batch * seq positions.
        """
        batch, seq = ops.shape(attention_mask)[0], ops.shape(attention_mask)[1]

        def heads(projected):
            return self._split_heads(projected if rows is None else rows.spread(projected), batch, seq)

        q, k, v = (heads(dense(tokens)) for dense in (self.query, self.key, self.value))
        context = ops.reshape(self._attend(q, k, v, attention_mask, training), (-1, self.hidden_size))
        if rows is not None:
            context = rows.gather(context)
        attended = self.attention_output_dropout(self.attention_output(context), training=training)
        hidden = self.attention_layer_norm(tokens + attended)
        act = self._training_act if training else self._serving_act
        output = self.output_dropout(self.output_dense(act(self.intermediate(hidden))), training=training)
        return self.output_layer_norm(hidden + output)

    def compute_output_shape(self, x_shape, attention_mask_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_size": self.hidden_size, "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size, "activation": self.activation,
            "dropout": self.dropout_rate, "attention_dropout": self.attention_dropout_rate,
            "layer_norm_eps": self.layer_norm_eps, "initializer_range": self.initializer_range,
        })
        return config


def attention_bias_from_mask(attention_mask, dtype: str = "float32"):
    """[batch, seq] 0/1 mask -> [batch, 1, 1, seq] additive bias (0 keep, -1e9-ish drop)."""
    mask = ops.cast(attention_mask, dtype)
    return ops.expand_dims(ops.expand_dims((1.0 - mask) * -1e9, 1), 1)


class TokenRows:
    """Where the tokens of a [batch, seq] 0/1 `attention_mask` are in its flattened [batch * seq] layout,
    to run per-token layers on them alone (`BertBackbone.skip_padding`).

    `gather` takes the token rows (in order) of a [batch * seq, ...] tensor, plus, with `multiple`,
    rows of zeros up to a multiple of it; `spread` puts token rows back on the padded layout for
    attention, padding reading the last token before it (any finite row serves: attention gives
    padding no weight); `scatter` puts them back with zeros at the padding. The first position of
    every row counts as a token (BERT's [CLS]), so a batch without tokens still has rows to read.

    Their gradients are written out, each the other's forward (a gather or a scatter of the token
    rows): TensorFlow's own gradient of a gather is a segment sum over the whole layout, and with the
    filler rows' slicing it cost a padding-free training step 7%. `spread`'s gradient keeps the token
    rows' own gradient alone: a padded position's q, k and v have none, as attention gives padding zero
    weight and the padded positions' outputs are dropped (true of every row with a token).
    """

    def __init__(self, attention_mask, multiple: int = 1):
        self.mask = mask = tf.cast(attention_mask, tf.int32)
        is_token = tf.reshape(tf.concat([tf.ones_like(mask[:, :1]), mask[:, 1:]], axis=1), [-1]) > 0
        self.size = tf.size(is_token, out_type=tf.int64)
        self.kept = tf.where(is_token)[:, 0]  # int64 [tokens]
        self.source = tf.maximum(tf.cumsum(tf.cast(is_token, tf.int64)) - 1, 0)
        # filler rows of zeros after the tokens, up to a multiple of `multiple`
        self.filler = tf.math.floormod(-tf.size(self.kept, out_type=tf.int64), multiple) if multiple > 1 else None

    def _pad(self, tokens):
        return tokens if self.filler is None else tf.pad(tokens, tf.stack([tf.stack([0, self.filler]), [0, 0]]))

    def _unpad(self, rows):
        return rows if self.filler is None else rows[:tf.size(self.kept)]

    def _scatter(self, tokens, width):
        return tf.scatter_nd(self.kept[:, None], self._unpad(tokens), tf.stack([self.size, width]))

    def gather(self, flat):
        @tf.custom_gradient
        def apply(flat):
            return self._pad(tf.gather(flat, self.kept)), lambda up: self._scatter(up, tf.shape(flat, tf.int64)[1])
        return apply(flat)

    def spread(self, tokens):
        @tf.custom_gradient
        def apply(tokens):
            return tf.gather(tokens, self.source), lambda up: self._pad(tf.gather(up, self.kept))
        return apply(tokens)

    def firsts(self, tokens):
        """The token rows of each sequence's first position ([CLS]), [batch, ...]."""
        batch, seq = tf.shape(self.mask, tf.int64)[0], tf.shape(self.mask, tf.int64)[1]
        return tf.gather(tokens, tf.gather(self.source, tf.range(batch) * seq))

    def scatter(self, tokens):
        @tf.custom_gradient
        def apply(tokens):
            return self._scatter(tokens, tf.shape(tokens, tf.int64)[1]), lambda up: self._pad(tf.gather(up, self.kept))
        return apply(tokens)
