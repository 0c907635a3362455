import keras
import numpy as np
import pytest

from conftest import tiny_config
from tfbert import BertBackbone


def _inputs(batch=2, seq=7, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), "int32")
    mask[0, seq - 2:] = 0
    return {"input_ids": rng.integers(5, 40, (batch, seq)).astype("int32"),
            "token_type_ids": (np.arange(seq)[None, :] >= seq // 2).astype("int32").repeat(batch, 0),
            "attention_mask": mask}


def test_dict_in_dict_out_any_length(tiny_backbone):
    assert [i.name for i in tiny_backbone.inputs] == ["attention_mask", "input_ids", "token_type_ids"] or \
        sorted(tiny_backbone.input) == ["attention_mask", "input_ids", "token_type_ids"]
    for seq in (1, 7, 64):
        out = tiny_backbone(_inputs(seq=seq))
        assert tuple(out["sequence_output"].shape) == (2, seq, 32)
        assert tuple(out["pooled_output"].shape) == (2, 32)


def test_padding_does_not_change_real_positions(tiny_backbone):
    x = _inputs(batch=1, seq=5)
    x["attention_mask"][:] = 1
    padded = {k: np.concatenate([v, np.zeros((1, 4), "int32")], axis=1) for k, v in x.items()}
    a = tiny_backbone(x)["sequence_output"].numpy()
    b = tiny_backbone(padded)["sequence_output"].numpy()[:, :5]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_keras_save_and_config_round_trip(tiny_backbone, tmp_path):
    x = _inputs()
    path = tmp_path / "backbone.keras"
    tiny_backbone.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, BertBackbone) and restored.config == tiny_backbone.config
    np.testing.assert_array_equal(restored(x)["pooled_output"], tiny_backbone(x)["pooled_output"])
    clone = BertBackbone.from_config(tiny_backbone.get_config())
    assert clone.count_params() == tiny_backbone.count_params()


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_outputs_float32_and_stay_close(tiny_backbone, policy):
    mixed = BertBackbone(tiny_backbone.config, dtype=policy)
    mixed.set_weights(tiny_backbone.get_weights())
    assert mixed.get_layer("encoder_layer_0").query.compute_dtype == policy.split("_")[1]
    x = _inputs()
    out = mixed(x)
    assert all(v.dtype == "float32" for v in out.values())
    ref = tiny_backbone(x)["sequence_output"].numpy()
    got = out["sequence_output"].numpy()
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() < (0.15 if policy == "mixed_bfloat16" else 0.02)


def test_dropout_only_in_training():
    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.5))
    x = _inputs()
    np.testing.assert_array_equal(backbone(x)["pooled_output"], backbone(x)["pooled_output"])
    assert not np.allclose(backbone(x, training=True)["pooled_output"], backbone(x)["pooled_output"])


def test_exact_gelu_is_keras_gelu_with_its_derivative_written_out():
    import tensorflow as tf

    from tfbert.layers import exact_gelu, get_activation

    assert get_activation("gelu") is exact_gelu
    x = tf.constant(np.linspace(-9, 9, 20001, dtype="float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, keras_own = exact_gelu(x), keras.activations.gelu(x, approximate=False)
    np.testing.assert_array_equal(ours.numpy(), keras_own.numpy())
    derivative = tape.gradient(ours, x).numpy()
    np.testing.assert_allclose(derivative, tape.gradient(keras_own, x).numpy(), rtol=0, atol=3e-7)
    # Phi(x) + x phi(x): 0.5 at 0, -0.1289 at its minimum (x = -sqrt 2), 1 far right, 0 far left
    assert derivative[10000] == pytest.approx(0.5) and derivative.min() == pytest.approx(-0.1289, abs=1e-4)
    assert derivative[-1] == pytest.approx(1.0) and derivative[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_exact_gelu_of_half_precision_is_the_float32_gelu_rounded_once(dtype):
    """Mixed precision: the GELU and its derivative are computed in float32 and rounded once to the
    input's dtype, not computed in bfloat16/float16 op by op."""
    import tensorflow as tf

    from tfbert.layers import exact_gelu

    x = tf.constant(np.linspace(-6, 6, 4801, dtype="float32"))
    narrow = tf.cast(x, dtype)
    wide = tf.cast(narrow, "float32")  # the same values, exactly representable in float32
    upstream = tf.cast(tf.constant(np.linspace(-2, 2, 4801, dtype="float32")), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([narrow, wide])
        ours, reference = exact_gelu(narrow), exact_gelu(wide)
    assert ours.dtype == dtype and tape.gradient(ours, narrow, upstream).dtype == dtype
    np.testing.assert_array_equal(ours.numpy(), tf.cast(reference, dtype).numpy())
    np.testing.assert_array_equal(tape.gradient(ours, narrow, upstream).numpy(),
                                  tf.cast(tape.gradient(reference, wide, tf.cast(upstream, "float32")), dtype).numpy())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_fused_exact_gelu_for_training_is_exact_gelu_within_an_ulp(dtype):
    """The XLA-fused GELU that training uses: the value and derivative of `exact_gelu` within float32
    rounding (XLA's erfc is not TensorFlow's kernel), and in half precision the float32 result rounded."""
    import tensorflow as tf

    from tfbert.layers import exact_gelu, fused_exact_gelu, get_activation

    assert get_activation("gelu", training=True) is fused_exact_gelu and get_activation("gelu") is exact_gelu
    x = tf.cast(tf.constant(np.linspace(-9, 9, 20001, dtype="float32")), dtype)
    wide = tf.cast(x, "float32")  # the same values, exactly representable in float32
    upstream = tf.cast(tf.constant(np.linspace(-2, 2, 20001, dtype="float32")), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, wide])
        fused, exact, fused_wide = fused_exact_gelu(x), exact_gelu(x), fused_exact_gelu(wide)
    grads = [tape.gradient(y, x, upstream) for y in (fused, exact)]
    assert fused.dtype == dtype and grads[0].dtype == dtype
    if dtype == "float32":
        np.testing.assert_allclose(fused.numpy(), exact.numpy(), rtol=2.5e-7, atol=1e-7)
        np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), rtol=2.5e-7, atol=2e-7)
    else:
        np.testing.assert_array_equal(fused.numpy(), tf.cast(fused_wide, dtype).numpy())
        np.testing.assert_array_equal(grads[0].numpy(), tf.cast(
            tape.gradient(fused_wide, wide, tf.cast(upstream, "float32")), dtype).numpy())


def test_training_and_inference_gelu_give_the_same_encoder_gradients():
    """Without dropout, training (3-D dense layers, fused GELU) and inference (2-D dense layers,
    `serving_gelu`) compute the same block: outputs and gradients differ only by float rounding."""
    import tensorflow as tf

    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    x = _inputs()
    grads = []
    for training in (True, False):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(backbone(x, training=training)["sequence_output"]))
        grads.append(tape.gradient(loss, backbone.trainable_weights))
    pooler = ["pooler" in weight.path for weight in backbone.trainable_weights]  # off the sequence output's path
    assert all((a is None and b is None) == off for a, b, off in zip(*grads, pooler))
    trained, inferred = ([tf.convert_to_tensor(g).numpy() for g, off in zip(gs, pooler) if not off] for gs in grads)
    # float rounding, amplified where LayerNorm divides by a small spread: against the largest gradient
    scale = max(np.abs(g).max() for g in inferred)
    for a, b in zip(trained, inferred):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_serving_gelu_is_exact_gelu(dtype):
    """Inference's GELU (plain ops that Grappler fuses into the matmul) has exact_gelu's values bit for bit."""
    import tensorflow as tf

    from tfbert.layers import exact_gelu, serving_gelu

    x = tf.cast(tf.constant(np.linspace(-9, 9, 20001, dtype="float32")), dtype)
    served = serving_gelu(x)
    assert served.dtype == dtype
    np.testing.assert_array_equal(served.numpy(), exact_gelu(x).numpy())


def _ragged_batch(seq=9, seed=1):
    """Rows of 9, 4 and 1 tokens, a left-padded row and a row with no token at all."""
    x = _inputs(batch=5, seq=seq, seed=seed)
    x["attention_mask"][:] = 1
    x["attention_mask"][1, 4:] = 0
    x["attention_mask"][2, 1:] = 0
    x["attention_mask"][3, :3] = 0
    x["attention_mask"][4, :] = 0
    return x


def _real_positions(x):
    real = x["attention_mask"].astype(bool)
    real[:, 0] = True  # the first position is always computed
    real[4] = False  # no token: nothing to attend to, its outputs are defined by neither path
    return real


@pytest.mark.parametrize("training", [False, True])
def test_skip_padding_gives_the_real_tokens_the_same_outputs(training):
    """With `skip_padding` the per-token layers run on the real tokens alone: every real position's output
    and the pooled output as without it, 0 at padded positions (but the first of a row)."""
    import tensorflow as tf

    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    x = _ragged_batch()
    real = _real_positions(x)
    padded = backbone(x, training=training)
    assert not backbone.skip_padding and "skip_padding" not in backbone.get_config()["config"]
    backbone.skip_padding = True
    assert backbone.skip_padding
    # dynamic shapes, as in an export's signature
    run = tf.function(lambda inputs: backbone(inputs, training=training), input_signature=[
        {k: tf.TensorSpec([None, None], tf.int32, name=k) for k in x}])
    for skipped in (backbone(x, training=training), run(x)):
        seq = skipped["sequence_output"].numpy()
        np.testing.assert_allclose(seq[real], padded["sequence_output"].numpy()[real], rtol=0, atol=2e-6)
        np.testing.assert_allclose(skipped["pooled_output"][:4], padded["pooled_output"][:4], rtol=0, atol=2e-6)
        np.testing.assert_array_equal(seq[:4][~real[:4]], 0.0)
        assert np.isfinite(seq[4]).all()
    no_tokens = {k: v[4:] for k, v in x.items()}  # a batch without a single token still runs
    assert np.isfinite(backbone(no_tokens, training=training)["sequence_output"].numpy()).all()
    backbone.skip_padding = False
    np.testing.assert_array_equal(backbone(x, training=training)["sequence_output"].numpy(),
                                  padded["sequence_output"].numpy())


def test_skip_padding_in_training_gives_the_same_gradients():
    """The real tokens' loss has the same gradient with and without `skip_padding` (the filler rows
    that round the token count up contribute nothing)."""
    import tensorflow as tf

    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    x = _ragged_batch()
    real = tf.constant(_real_positions(x)[..., None], tf.float32)
    grads = []
    for skip in (False, True):
        backbone.skip_padding = skip
        with tf.GradientTape() as tape:
            out = backbone(x, training=True)
            loss = tf.reduce_sum(tf.square(out["sequence_output"] * real)) + tf.reduce_sum(out["pooled_output"][:4])
        grads.append([tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, backbone.trainable_weights)])
    scale = max(np.abs(g).max() for g in grads[0])
    for a, b, weight in zip(*grads, backbone.trainable_weights):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale, err_msg=weight.path)


def test_token_rows_gather_spread_and_scatter_the_real_tokens():
    import tensorflow as tf

    from tfbert.layers import TokenRows

    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], "int32")
    flat = tf.constant(np.arange(1, 13, dtype="float32")[:, None] * [1.0, -1.0])  # [12, 2], row i holds i + 1
    rows = TokenRows(mask)
    assert rows.kept.numpy().tolist() == [0, 1, 4, 5, 6, 8]  # row 1 and row 2 keep their first position
    tokens = rows.gather(flat)
    np.testing.assert_array_equal(tokens[:, 0], [1, 2, 5, 6, 7, 9])
    # padding reads the last token before it
    np.testing.assert_array_equal(rows.spread(tokens)[:, 0], [1, 2, 2, 2, 5, 6, 7, 7, 9, 9, 9, 9])
    np.testing.assert_array_equal(rows.scatter(tokens)[:, 0], [1, 2, 0, 0, 5, 6, 7, 0, 9, 0, 0, 0])
    filled = TokenRows(mask, multiple=4)  # 6 tokens + 2 rows of zeros
    tokens = filled.gather(flat)
    np.testing.assert_array_equal(tokens[:, 0], [1, 2, 5, 6, 7, 9, 0, 0])
    np.testing.assert_array_equal(filled.spread(tokens)[:, 0], [1, 2, 2, 2, 5, 6, 7, 7, 9, 9, 9, 9])
    np.testing.assert_array_equal(filled.scatter(tokens + 1.0)[:, 0], [2, 3, 0, 0, 6, 7, 8, 0, 10, 0, 0, 0])


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "bfloat16"])
def test_layer_norm_with_written_out_gradient_is_keras_layer_norm(policy):
    """Values and the gradients of input, gamma and beta against Keras' LayerNormalization with the
    same weights: float32 within float rounding, bfloat16 within one bfloat16 rounding of the output."""
    import tensorflow as tf

    from tfbert.layers import LayerNormalization

    rng = np.random.default_rng(0)
    ours, keras_own = (cls(epsilon=1e-12, dtype=policy) for cls in (LayerNormalization, keras.layers.LayerNormalization))
    for layer in (ours, keras_own):
        layer.build((None, None, 48))
        layer.set_weights([rng.normal(1, 0.1, 48).astype("float32"), rng.normal(0, 0.1, 48).astype("float32")])
        rng = np.random.default_rng(0)
    dtype = "float32" if policy == "float32" else "bfloat16"
    x = tf.cast(tf.constant(rng.normal(3, 2, (4, 9, 48)).astype("float32")), dtype)
    upstream = tf.cast(tf.constant(rng.normal(size=(4, 9, 48)).astype("float32")), dtype)
    results = []
    for layer in (ours, keras_own):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        results.append([y] + tape.gradient(y, [x, layer.gamma, layer.beta], upstream))
    assert [t.dtype for t in results[0]] == [t.dtype for t in results[1]]  # output, d input, d gamma, d beta
    wide = tf.cast(x, "float32")  # Keras does not autocast a LayerNormalization's inputs: the output is cast
    assert ours(wide).dtype == keras_own(wide).dtype == ours.compute_dtype
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-2, atol=2e-2)
    for name, a, b in zip(("output", "d input", "d gamma", "d beta"), *results):
        np.testing.assert_allclose(tf.cast(a, "float32").numpy(), tf.cast(b, "float32").numpy(), err_msg=name,
                                   **tolerance)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_keeps_one_minus_rate_of_the_units_and_the_expected_value(rate):
    """4.7M units: the kept fraction within 1e-3 of 1 - rate (sd <= 2.3e-4), the output's mean within 1e-3
    of the input's, and the two units a 32-bit word decides dropped together with probability rate**2."""
    import tensorflow as tf

    from tfbert.layers import Dropout

    out = Dropout(rate, seed=3)(tf.ones((24, 12, 128, 128)), training=True)
    kept = tf.cast(out != 0, "float32")
    assert abs(float(tf.reduce_mean(kept)) - (1 - rate)) < 1e-3
    assert abs(float(tf.reduce_mean(out)) - 1.0) < 1e-3
    threshold = round(rate * 65536)
    np.testing.assert_allclose(tf.boolean_mask(out, out != 0).numpy(), 65536 / (65536 - threshold), rtol=1e-7)
    pairs = tf.reshape(kept, (-1, 2))
    both_dropped = float(tf.reduce_mean(tf.cast(tf.reduce_sum(pairs, axis=1) == 0, "float32")))
    assert abs(both_dropped - rate ** 2) < 2e-3


def test_dropout_mask_is_the_same_for_float32_and_bfloat16_and_reproducible():
    """Keras draws bfloat16 uniforms (multiples of 1/128) and kept 0.8984 at rate 0.1; here the mask does
    not depend on the dtype, a seeded layer repeats itself, and successive calls draw new masks."""
    import tensorflow as tf

    from tfbert.layers import Dropout

    x = tf.ones((6, 12, 33, 33), "float32")  # an odd number of units: the last word's second half unused
    narrow_layer, wide_layer = Dropout(0.1, seed=3, dtype="mixed_bfloat16"), Dropout(0.1, seed=3)
    narrow = narrow_layer(tf.cast(x, "bfloat16"), training=True)
    wide = wide_layer(x, training=True)
    assert narrow.dtype == "bfloat16" and wide.shape == x.shape
    np.testing.assert_array_equal((narrow != 0).numpy(), (wide != 0).numpy())
    scale = tf.cast(65536 / (65536 - 6554), "bfloat16")  # kept units scaled in bfloat16
    kept = tf.boolean_mask(narrow, narrow != 0)
    np.testing.assert_array_equal(kept.numpy(), tf.fill(kept.shape, scale).numpy())
    np.testing.assert_array_equal(Dropout(0.1, seed=3)(x, training=True).numpy(), wide.numpy())
    assert (wide_layer(x, training=True).numpy() != wide.numpy()).any()
    np.testing.assert_array_equal(wide_layer(x, training=False).numpy(), x.numpy())


def test_dropout_seed_state_is_saved_with_the_weights(tmp_path):
    """Keras saves no seed generator state: a model loaded from a backup drew its first masks again.
    The state goes into the weights file; a file written without it loads and leaves the state alone."""
    import keras
    import tensorflow as tf

    from tfbert.layers import Dropout

    def model():
        inputs = keras.Input((8,))
        return keras.Model(inputs, Dropout(0.5, seed=7)(keras.layers.Dense(8)(inputs), training=True))

    x = tf.ones((4, 8))
    trained = model()
    for _ in range(3):
        trained(x)  # three masks drawn
    trained.save_weights(tmp_path / "w.weights.h5")
    expected = trained(x).numpy()  # the fourth mask

    resumed = model()
    resumed.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(resumed(x).numpy(), expected)

    # a file without the state (as written before it was saved): loads, the fresh state stays
    import h5py

    with h5py.File(tmp_path / "w.weights.h5", "r+") as f:
        paths = []
        f.visit(lambda name: paths.append(name) if name.endswith(Dropout.SEED_STATE) else None)
        assert len(paths) == 1
        del f[paths[0]]
    fresh, old = model(), model()
    old.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(old(x).numpy() != 0, fresh(x).numpy() != 0)
    np.testing.assert_array_equal(old.get_weights()[0], trained.get_weights()[0])


def test_dropout_gradient_is_the_mask_times_the_scale():
    import tensorflow as tf

    from tfbert.layers import Dropout

    x = tf.constant(np.random.default_rng(0).normal(size=(4, 7, 9)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = Dropout(0.25, seed=1)(x, training=True)
    grad = tape.gradient(out, x)
    np.testing.assert_allclose(grad.numpy(), np.where(out.numpy() != 0, 65536 / (65536 - 16384), 0.0), rtol=1e-7)
    np.testing.assert_allclose(out.numpy(), x.numpy() * grad.numpy(), rtol=1e-6)
