import keras
import numpy as np
import pytest

from conftest import tiny_config, transformers_learning_rates
from tfbert import BertBackbone
from tfbert.training.optimization import (BertAdamW, WarmupLinearDecay, count_encoder_layers, create_optimizer,
                                          layerwise_lr_factor, learning_rate_schedule, warmup_steps_for)
from tfbert.training.run_config import LR_SCHEDULES

# ----------------------------------------------------------------------------------------------------------------------
# helpers


def _bert_classifier(num_labels=3):
    """A tiny BertBackbone plus a `classifier` Dense head on the pooled output, as a task model builds it.

    No dropout, so that two training steps from the same weights see the same gradients.
    """
    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    logits = keras.layers.Dense(num_labels, name="classifier")(backbone.output["pooled_output"])
    return keras.Model(backbone.input, logits, name="bert_classifier")


def _bert_batch(batch=4, seq=8, seed=0):
    rng = np.random.default_rng(seed)
    features = {"input_ids": rng.integers(5, 40, (batch, seq)).astype("int32"),
                "token_type_ids": np.zeros((batch, seq), "int32"),
                "attention_mask": np.ones((batch, seq), "int32")}
    return features, rng.integers(0, 3, (batch,)).astype("int32")


def _dense_model(seed=0, dtype=None):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden", dtype=dtype,
                                kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
    outputs = keras.layers.Dense(1, name="head", dtype=dtype,
                                 kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(hidden)
    return keras.Model(inputs, outputs)


def _values(variables):
    return {v.path: np.array(v.numpy()) for v in variables}


# ----------------------------------------------------------------------------------------------------------------------
# schedule


@pytest.mark.parametrize("step, expected", [(0, 0.0), (5, 0.5e-3), (10, 1e-3), (55, 0.5e-3), (100, 0.0), (150, 0.0)])
def test_warmup_linear_decay_values(step, expected):
    schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-9)


def test_warmup_linear_decay_without_warmup_starts_at_peak():
    schedule = WarmupLinearDecay(2.0, total_steps=4, warmup_steps=0)
    assert [float(schedule(s)) for s in range(6)] == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0, 0.0])


def test_warmup_linear_decay_serialization_round_trip():
    schedule = WarmupLinearDecay(3e-5, total_steps=1000, warmup_steps=100)
    config = keras.optimizers.schedules.serialize(schedule)
    assert config["registered_name"] == "tfbert>WarmupLinearDecay"
    restored = keras.optimizers.schedules.deserialize(config)
    assert isinstance(restored, WarmupLinearDecay)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 50, 100, 700, 1200):
        assert float(restored(step)) == pytest.approx(float(schedule(step)))


@pytest.mark.parametrize("kwargs", [dict(total_steps=0, warmup_steps=0), dict(total_steps=10, warmup_steps=11),
                                    dict(total_steps=10, warmup_steps=-1)])
def test_warmup_linear_decay_rejects_bad_steps(kwargs):
    with pytest.raises(ValueError, match="WarmupLinearDecay"):
        WarmupLinearDecay(1e-3, **kwargs)


@pytest.mark.parametrize("kind", LR_SCHEDULES)
@pytest.mark.parametrize("total_steps, warmup_steps", [(110, 10), (7, 0), (5, 2), (1, 0)])
def test_each_schedule_is_transformers_own(kind, total_steps, warmup_steps):
    schedule = learning_rate_schedule(kind, 3e-4, total_steps, warmup_steps)
    ours = [float(schedule(step)) for step in range(total_steps)]
    expected = transformers_learning_rates(kind, 3e-4, total_steps, warmup_steps)
    assert ours == pytest.approx(expected, rel=1e-6, abs=3e-4 * 1e-6)  # float32 against float64: 1e-6 of the peak


def test_schedules_past_the_end_and_their_errors():
    assert float(learning_rate_schedule("cosine", 1.0, 10, 2)(15)) == pytest.approx(0.0, abs=1e-7)  # stays at 0
    assert float(learning_rate_schedule("constant_with_warmup", 1.0, 10, 2)(15)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kind must be one of linear, cosine, constant_with_warmup, got 'constant'"):
        learning_rate_schedule("constant", 1.0, 10, 0)
    with pytest.raises(ValueError, match="warmup_steps must be an integer in"):
        learning_rate_schedule("cosine", 1.0, 10, 11)


def test_a_cosine_optimizer_round_trips_with_its_schedule(bert_classifier):
    optimizer = create_optimizer(bert_classifier, learning_rate=2e-5, total_steps=100, schedule="cosine",
                                 clipnorm=None)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored._learning_rate, keras.optimizers.schedules.CosineDecay)
    assert restored.global_clipnorm is None
    for step in (0, 5, 10, 60, 100):
        assert float(restored._learning_rate(step)) == pytest.approx(float(optimizer._learning_rate(step)))


def test_warmup_steps_for():
    assert warmup_steps_for(1000, 0.1) == 100
    assert warmup_steps_for(15, 0.1) == 1  # rounded down, as BERT's run_classifier.py
    assert warmup_steps_for(15, 0.0) == 0
    with pytest.raises(ValueError, match="warmup_ratio"):
        warmup_steps_for(10, 1.5)


# ----------------------------------------------------------------------------------------------------------------------
# layer-wise LR decay


@pytest.fixture(scope="module")
def bert_classifier():
    return _bert_classifier()


def test_layerwise_factor_per_variable_group(bert_classifier):
    assert count_encoder_layers(bert_classifier.trainable_variables) == 2
    optimizer = create_optimizer(bert_classifier, learning_rate=1e-3, total_steps=10, layerwise_lr_decay=0.5)
    optimizer.build(bert_classifier.trainable_variables)
    expected_by_prefix = {"embeddings/": 0.5 ** 3, "encoder_layer_0/": 0.5 ** 2, "encoder_layer_1/": 0.5,
                          "pooler/": 1.0, "classifier/": 1.0}
    seen = set()
    for variable in bert_classifier.trainable_variables:
        prefix = next(p for p in expected_by_prefix if variable.path.startswith(p))
        seen.add(prefix)
        assert optimizer.learning_rate_factor(variable) == pytest.approx(expected_by_prefix[prefix]), variable.path
    assert seen == set(expected_by_prefix)
    # Paths of a backbone nested inside another model still match on whole path components.
    assert layerwise_lr_factor("bert/encoder_layer_1/query/kernel", num_layers=2, decay=0.5) == 0.5
    assert layerwise_lr_factor("mlm_head/word_embeddings_bias", num_layers=2, decay=0.5) == 1.0
    assert layerwise_lr_factor("encoder_layer_1/query/kernel", num_layers=2, decay=None) == 1.0


def test_layerwise_decay_needs_encoder_layers():
    with pytest.raises(ValueError, match="encoder_layer"):
        create_optimizer(_dense_model(), learning_rate=1e-3, total_steps=10, layerwise_lr_decay=0.9)
    with pytest.raises(ValueError, match="num_layers=2"):
        layerwise_lr_factor("encoder_layer_2/query/kernel", num_layers=2, decay=0.9)


def test_layerwise_decay_scales_each_variables_update_in_a_training_step(bert_classifier):
    # The same step from the same weights, with and without LLRD: Adam's update is linear in the learning rate,
    # so each variable's change must shrink by exactly its factor (embeddings move decay**3 as far as the head).
    peak, decay = 1e-3, 0.5
    model = bert_classifier
    features, labels = _bert_batch()
    start = _values(model.trainable_variables)
    deltas = {}
    for layerwise_lr_decay in (None, decay):
        for variable in model.trainable_variables:
            variable.assign(start[variable.path])
        model.compile(optimizer=create_optimizer(model, learning_rate=peak, total_steps=10, warmup_ratio=0.0,
                                                 weight_decay=0.0, clipnorm=None,
                                                 layerwise_lr_decay=layerwise_lr_decay),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(features, labels)
        deltas[layerwise_lr_decay] = {p: v - start[p] for p, v in _values(model.trainable_variables).items()}
    for path, plain in deltas[None].items():
        assert np.abs(plain).max() > 0, path
        factor = layerwise_lr_factor(path, num_layers=2, decay=decay)
        # atol: one float32 spacing of the variable's largest weight (LayerNorm's gamma ~1: 6e-8 below 1.0), the
        # rounding of the new weight, which a tiny change (an element with a ~0 gradient) cannot hide.
        np.testing.assert_allclose(deltas[decay][path], factor * plain, rtol=1e-3,
                                   atol=np.spacing(np.abs(start[path]).max()), err_msg=path)
    # Largest move of any element: the head's is about lr (Adam's first step is ~lr * sign(g)), the embeddings'
    # decay**3 of it.
    ratio = np.abs(deltas[decay]["embeddings/word_embeddings/embeddings"]).max() / \
        np.abs(deltas[decay]["classifier/kernel"]).max()
    assert ratio == pytest.approx(decay ** 3, rel=1e-2)
    for variable in model.trainable_variables:  # restore the shared fixture's weights
        variable.assign(start[variable.path])


def test_repeated_tokens_get_one_dense_adam_update():
    # On the TF backend an embedding gradient is an IndexedSlices with a row per occurrence; Keras's Adam alone
    # squares those rows separately and moves a token seen n times by up to sqrt(n) * lr. Summed first, Adam's
    # first step moves every element by at most lr (lr * |g| / (|g| + eps)).
    ids = keras.Input((6,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(5, 4, name="embeddings")(ids))
    model = keras.Model(ids, keras.layers.Dense(1, name="head")(pooled))
    peak = 1e-2
    model.compile(optimizer=create_optimizer(model, learning_rate=peak, total_steps=10, warmup_ratio=0.0,
                                             weight_decay=0.0, clipnorm=None), loss="mse")
    table = model.get_layer("embeddings").embeddings
    before = table.numpy()
    model.train_on_batch(np.full((4, 6), 2, "int32"), np.full((4, 1), 100.0, "float32"))  # token 2, 24 times
    moved = np.abs(table.numpy() - before)
    assert moved[2].max() == pytest.approx(peak, rel=1e-3)
    np.testing.assert_array_equal(moved[[0, 1, 3, 4]], 0.0)


# ----------------------------------------------------------------------------------------------------------------------
# weight decay and clipping


@pytest.mark.parametrize("layerwise_lr_decay", [None, 0.5])
def test_weight_decay_skips_layer_norm_and_biases(bert_classifier, layerwise_lr_decay):
    # With zero gradients Adam's moments stay 0 and its update is 0, so only decoupled weight decay moves a
    # variable: w <- w * (1 - weight_decay * lr * layerwise factor).
    peak, weight_decay = 0.1, 0.5
    variables = bert_classifier.trainable_variables
    optimizer = create_optimizer(bert_classifier, learning_rate=peak, total_steps=10, warmup_ratio=0.0,
                                 weight_decay=weight_decay, layerwise_lr_decay=layerwise_lr_decay)
    before = _values(variables)
    optimizer.apply([np.zeros(v.shape, "float32") for v in variables], variables)
    after = _values(variables)
    decayed = set()
    for variable in variables:
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("gamma", "beta", "bias"):
            np.testing.assert_array_equal(after[variable.path], before[variable.path], err_msg=variable.path)
        else:
            factor = layerwise_lr_factor(variable.path, num_layers=2, decay=layerwise_lr_decay)
            np.testing.assert_allclose(after[variable.path], before[variable.path] * (1 - weight_decay * peak * factor),
                                       rtol=1e-6, err_msg=variable.path)
            decayed.add(name)
    assert decayed == {"kernel", "embeddings"}
    for variable, value in before.items():  # restore the shared fixture's weights
        next(v for v in variables if v.path == variable).assign(value)


def test_global_norm_clipping_bounds_a_huge_gradient():
    model = _dense_model()
    variables = model.trainable_variables
    huge = [np.full(v.shape, 1e6, "float32") for v in variables]
    optimizer = create_optimizer(model, learning_rate=1e-3, total_steps=10, warmup_ratio=0.0, weight_decay=0.0,
                                 clipnorm=1.0)
    optimizer.apply(huge, variables)
    # After one step Adam's first moment is (1 - beta_1) * the clipped gradient, so its global norm shows the clip.
    momentums = [v for v in optimizer.variables if v.path.endswith("_momentum")]
    assert len(momentums) == len(variables)
    global_norm = np.sqrt(sum(float(np.sum(np.square(m.numpy()))) for m in momentums))
    assert global_norm == pytest.approx(0.1 * 1.0, rel=1e-5)
    # Without clipping the same gradient leaves a first moment a million times larger.
    model_b = _dense_model()
    unclipped = create_optimizer(model_b, learning_rate=1e-3, total_steps=10, warmup_ratio=0.0, clipnorm=None)
    unclipped.apply(huge, model_b.trainable_variables)
    unclipped_norm = np.sqrt(sum(float(np.sum(np.square(v.numpy()))) for v in unclipped.variables
                                 if v.path.endswith("_momentum")))
    assert unclipped_norm > 1e5


# ----------------------------------------------------------------------------------------------------------------------
# gradient accumulation with model.fit


class _RecordPerBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.records.append({"weights": _values(self.model.trainable_variables),
                             "updates": int(self.model.optimizer.iterations),
                             "learning_rate": float(self.model.optimizer.learning_rate)})

    def on_train_begin(self, logs=None):
        self.records = [{"weights": _values(self.model.trainable_variables), "updates": 0}]


def _regression_data(samples=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 4)).astype("float32")
    return x, (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]


def test_gradient_accumulation_with_fit_updates_every_kth_batch_and_counts_updates():
    x, y = _regression_data()
    k, peak = 3, 0.05
    model = _dense_model()
    optimizer = create_optimizer(model, learning_rate=peak, total_steps=2, warmup_ratio=0.0,
                                 gradient_accumulation_steps=k)
    model.compile(optimizer=optimizer, loss="mse")
    recorder = _RecordPerBatch()
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])  # 6 micro-batches

    changed = [any(not np.array_equal(after["weights"][p], before["weights"][p]) for p in before["weights"])
               for before, after in zip(recorder.records, recorder.records[1:])]
    assert changed == [False, False, True, False, False, True]
    assert [r["updates"] for r in recorder.records[1:]] == [0, 0, 1, 1, 1, 2]
    assert int(optimizer.iterations) == 2 and int(optimizer._iterations) == 6  # updates vs micro-batches
    # The schedule is evaluated on updates: lr(0) = peak for the first update, lr(1) = peak / 2 for the second.
    assert [r["learning_rate"] for r in recorder.records[1:]] == pytest.approx(
        [peak, peak, peak / 2, peak / 2, peak / 2, 0.0])

    # k micro-batches of 2 give the same weights as one batch of 2k (mean of equal-size batch means).
    reference = _dense_model()
    reference.compile(optimizer=create_optimizer(reference, learning_rate=peak, total_steps=2, warmup_ratio=0.0),
                      loss="mse")
    reference.fit(x, y, batch_size=2 * k, epochs=1, shuffle=False, verbose=0)
    for accumulated, direct in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(accumulated.numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)


def _accumulated_and_one_batch(head, labels, k, batch):
    """The weights of a tiny task model after one update over `labels`' examples: `k` accumulated batches of
    `batch` (the last may be partial), and one batch of all of them."""
    from tfbert.tasks import BertClassifier, BertQuestionAnswerer, BertTokenClassifier

    rng = np.random.default_rng(1)
    n, seq = len(labels), 8
    features = {"input_ids": rng.integers(5, 40, (n, seq)).astype("int32"),
                "token_type_ids": np.zeros((n, seq), "int32"), "attention_mask": np.ones((n, seq), "int32")}
    trained = []
    for accumulation, batch_size in ((k, batch), (1, n)):
        keras.utils.set_random_seed(0)
        backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
        model = {"classifier": lambda: BertClassifier(backbone, num_classes=3, dropout=0.0),
                 "reader": lambda: BertQuestionAnswerer(backbone, dropout=0.0),
                 "tagger": lambda: BertTokenClassifier(backbone, num_labels=3, dropout=0.0)}[head]()
        model.compile(optimizer=create_optimizer(model, learning_rate=1e-2, total_steps=1, warmup_ratio=0.0,
                                                 gradient_accumulation_steps=accumulation),
                      loss=model.default_loss())
        model.fit(features, labels, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        assert int(model.optimizer.iterations) == 1
        trained.append(model.get_weights())
    return trained


def _tagged(rng_seed=2):
    # NER / masked LM: the first two sentences hold 3 labelled tokens, the last two 14
    labels = np.random.default_rng(rng_seed).integers(0, 3, (4, 8)).astype("int32")
    labels[0, 2:] = labels[1, 1:] = -100
    labels[2:, ::8] = -100
    return labels


@pytest.mark.parametrize("head, labels, k, batch", [
    ("tagger", _tagged(), 2, 2),  # 3 labelled tokens, then 14
    ("classifier", np.int32([0, 1, 2, 1, 0]), 3, 2),  # batches of 2, 2 and 1 example(s)
    ("reader", np.int32([[1, 2], [0, 0], [3, 5], [2, 2], [6, 7]]), 3, 2),  # of 2, 2 and 1 question window(s)
])
def test_accumulated_batches_weigh_by_their_items_as_one_batch_would(monkeypatch, head, labels, k, batch):
    # Keras' mean of the batch means counts each of the tagger's first 3 tokens 4.7 times as much as each
    # of the 14 (and the lone last example twice); one batch counts them alike, and so does accumulation.
    # (transformers' Trainer sums the means with BERT's heads: huggingface/transformers#47688.)
    accumulated, one_batch = _accumulated_and_one_batch(head, labels, k=k, batch=batch)
    assert max(float(np.abs(a - b).max()) for a, b in zip(accumulated, one_batch)) < 1e-5
    from tfbert.tasks import base
    monkeypatch.setattr(base.BertTaskModel, "train_step", lambda self, data: keras.Model.train_step(self, data))
    keras_mean, _ = _accumulated_and_one_batch(head, labels, k=k, batch=batch)
    assert max(float(np.abs(a - b).max()) for a, b in zip(keras_mean, one_batch)) > 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# loss scaling, serialization, checkpoints


def test_each_update_is_the_items_weighted_mean_of_its_group_and_the_count_starts_again(monkeypatch):
    # the gradient each update applies (before Adam): (3 g1 + 14 g2) / 17, then (5 g3 + 5 g4) / 10, run
    # eagerly (a step there is not traced: its weight is this thread's)
    from tfbert.tasks.losses import weighting_batch

    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer = BertAdamW(learning_rate=0.1, gradient_accumulation_steps=2, weight_decay=0.0)
    applied = []
    monkeypatch.setattr(BertAdamW, "_backend_update_step",
                        lambda self, grads, variables, lr: applied.append(np.array(grads[0])))
    batches = [([1.0, 2.0], 3), ([-4.0, 8.0], 14), ([2.0, 0.0], 5), ([0.0, 6.0], 5)]
    for gradient, items in batches:
        with weighting_batch(np.float32(items)):
            optimizer.apply([np.float32(gradient)], [variable])
    np.testing.assert_allclose(applied, [(3 * np.float32([1, 2]) + 14 * np.float32([-4, 8])) / 17, [1.0, 3.0]],
                               rtol=1e-6)
    assert float(optimizer._accumulated_items.numpy()) == 0.0 and int(optimizer.iterations) == 2


def test_accumulation_under_loss_scaling_counts_the_items_of_the_batches_it_keeps():
    # mixed_float16: Keras' LossScaleOptimizer applies the gradients inside a `cond` (a graph of its own)
    from tfbert.tasks import BertTokenClassifier

    keras.utils.set_random_seed(0)
    model = BertTokenClassifier(BertBackbone(tiny_config(), dtype="mixed_float16"), num_labels=3)
    model.compile(optimizer=create_optimizer(model, learning_rate=1e-2, total_steps=1, loss_scale=True,
                                             gradient_accumulation_steps=3), loss=model.default_loss())
    features, _ = _bert_batch(batch=4)
    model.fit(features, _tagged(), batch_size=2, shuffle=False, verbose=0)  # 2 of the group's 3 batches
    inner = model.optimizer.inner_optimizer
    kept = int(inner._iterations)  # a batch whose float16 gradients overflow is dropped, not counted
    counted = float(inner._accumulated_items.numpy())  # the batches hold 3 and 14 labelled tokens
    assert (kept, counted) == (2, 17.0) or (kept == 1 and counted in (3.0, 14.0))


def test_loss_scale_wraps_and_trains_a_mixed_float16_model():
    x, y = _regression_data(samples=16)
    model = _dense_model(dtype="mixed_float16")
    optimizer = create_optimizer(model, learning_rate=1e-2, total_steps=4, loss_scale=True,
                                 gradient_accumulation_steps=2)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, BertAdamW)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)  # 8 micro-batches
    # A micro-batch whose float16 gradients overflow halves the loss scale and is dropped: it is neither
    # accumulated nor counted. The wrapper reports the inner optimizer's update count.
    skipped = int(round(np.log2(optimizer.initial_scale / float(optimizer.dynamic_scale))))
    assert int(optimizer.inner_optimizer._iterations) == 8 - skipped
    assert int(optimizer.iterations) == (8 - skipped) // 2 >= 1
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored.inner_optimizer, BertAdamW)
    assert restored.inner_optimizer.get_config() == optimizer.inner_optimizer.get_config()


def test_optimizer_config_round_trip_keeps_schedule_llrd_and_exclusions(bert_classifier):
    optimizer = create_optimizer(bert_classifier, learning_rate=2e-5, total_steps=100, layerwise_lr_decay=0.8,
                                 gradient_accumulation_steps=4)
    config = keras.optimizers.serialize(optimizer)
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, BertAdamW)
    assert restored.get_config() == optimizer.get_config()
    assert isinstance(restored._learning_rate, WarmupLinearDecay)
    assert (restored.beta_1, restored.beta_2, restored.epsilon, restored.global_clipnorm) == (0.9, 0.999, 1e-6, 1.0)
    assert (restored.layerwise_lr_decay, restored.num_layers, restored.gradient_accumulation_steps) == (0.8, 2, 4)
    restored.build(bert_classifier.trainable_variables)
    by_path = {v.path: v for v in bert_classifier.trainable_variables}
    assert not restored._use_weight_decay(by_path["encoder_layer_0/attention_layer_norm/gamma"].value)
    assert not restored._use_weight_decay(by_path["classifier/bias"].value)
    assert restored._use_weight_decay(by_path["classifier/kernel"].value)


def _accumulating_dense_model():
    model = _dense_model()
    model.compile(optimizer=create_optimizer(model, learning_rate=1e-2, total_steps=10, gradient_accumulation_steps=2),
                  loss="mse")
    return model


def test_saved_weights_restore_optimizer_state(tmp_path):
    # What BackupAndRestore relies on: model.save_weights / load_weights carry the optimizer's
    # moments, gradient accumulators and step counter.
    x, y = _regression_data()

    model = _accumulating_dense_model()
    model.fit(x[:10], y[:10], batch_size=2, epochs=1, shuffle=False, verbose=0)  # 5 micro-batches: 1 left pending
    path = str(tmp_path / "state.weights.h5")
    model.save_weights(path)

    restored = _accumulating_dense_model()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(path)
    assert int(restored.optimizer._iterations) == 5 and int(restored.optimizer.iterations) == 2
    for saved, loaded in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy(), err_msg=saved.path)


@pytest.mark.parametrize("micro_batches, pending", [(5, 1), (4, 0)])
def test_a_backup_from_before_the_accumulated_items_loads_and_drops_an_unweighted_group(capsys, micro_batches,
                                                                                        pending):
    x, y = _regression_data()

    model = _accumulating_dense_model()
    model.fit(x[:2 * micro_batches], y[:2 * micro_batches], batch_size=2, shuffle=False, verbose=0)
    store = {}
    model.optimizer.save_own_variables(store)
    assert model.optimizer.variables[-1].path.endswith("accumulated_items")
    del store[str(len(store) - 1)]  # as an older tfbert wrote it

    restored = _accumulating_dense_model()
    restored.optimizer.build(restored.trainable_variables)
    restored.optimizer.load_own_variables(store)
    optimizer = restored.optimizer
    assert int(optimizer._iterations) == micro_batches  # the moments and counters are loaded ...
    for saved, loaded in zip(model.optimizer._momentums, optimizer._momentums):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    # ... and a group in progress goes on without its unweighted gradients, saying so
    assert all(not np.any(a.numpy()) for a in optimizer._accumulated_gradients)
    warning = capsys.readouterr().out
    assert (f"the {pending} batch(es) accumulated in it are not applied" in warning) == bool(pending)


def _kernel_calls(graph) -> int:
    """Calls of the fused `adamw_update` kernel in a traced graph."""
    return sum(op.type in ("PartitionedCall", "StatefulPartitionedCall") and "adamw_update" in op.get_attr("f").name
               for op in graph.get_operations())


@pytest.mark.parametrize("clipnorm, layerwise_lr_decay", [(1e-3, None), (None, 0.5), (1e-3, 0.8)])
def test_fused_adamw_update_is_keras_adamw_with_clip_and_decay_in_one_kernel(monkeypatch, clipnorm,
                                                                               layerwise_lr_decay):
    # `adamw_update` computes the global-norm clip's scaling, the decoupled weight decay and Keras' Adam
    # formula in one pass over each variable; three steps of it and of Keras' own ops (its clip pass, the
    # decay, Keras' Adam.update_step) end on the same weights up to float32 rounding. clipnorm 1e-3 is far
    # below the gradients' norm, so every step is clipped.
    import tensorflow as tf

    features, labels = _bert_batch(seed=3)
    weights = {}
    for fused in (True, False):
        keras.utils.set_random_seed(0)
        model = _bert_classifier()
        optimizer = create_optimizer(model, learning_rate=1e-2, total_steps=5, warmup_ratio=0.2, weight_decay=0.1,
                                     clipnorm=clipnorm, layerwise_lr_decay=layerwise_lr_decay)
        if not fused:  # Keras' own path: its clip pass, then the per-variable decay and Keras' Adam ops
            monkeypatch.setattr(BertAdamW, "_kernel_variables", lambda self, variable: None)
            monkeypatch.setattr(BertAdamW, "_backend_apply_gradients", keras.optimizers.AdamW._backend_apply_gradients)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = _values(model.trainable_variables)
        for _ in range(3):
            model.train_on_batch(features, labels)
        weights[fused] = _values(model.trainable_variables)
        graph = tf.function(lambda: optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                                                    model.trainable_variables)).get_concrete_function().graph
        assert _kernel_calls(graph) == (len(model.trainable_variables) if fused else 0)
        if fused:  # the decay is inside the kernel, not an assign_sub of its own
            assert not any(op.type == "AssignSubVariableOp" for op in graph.get_operations())
        monkeypatch.undo()
    for path, value in weights[True].items():
        if not path.endswith("key/bias"):  # (softmax ignores a key bias: its gradient is ~0)
            assert np.abs(value - start[path]).max() > 0, path  # every other variable moved
        # Updates are ~1e-2; one step of the two differs by <= 2.4e-7 (rounding: XLA contracts multiply-adds),
        # which Adam's division by sqrt(v) can grow over three steps (3e-6 seen on a weight of 0.31).
        np.testing.assert_allclose(value, weights[False][path], rtol=2e-5, atol=1e-6, err_msg=path)


def test_gradient_accumulation_updates_each_variable_with_the_kernel_inside_its_cond():
    # Under accumulation Keras' own `_backend_apply_gradients` runs (it clips the averaged gradient itself, inside
    # the cond of the k-th micro-batch); each variable's update there is still one `adamw_update`.
    import tensorflow as tf

    model = _dense_model()
    optimizer = create_optimizer(model, learning_rate=1e-3, total_steps=10, warmup_ratio=0.0,
                                 gradient_accumulation_steps=2)
    optimizer.build(model.trainable_variables)
    graph = tf.function(lambda: optimizer.apply([tf.ones_like(v) for v in model.trainable_variables],
                                                model.trainable_variables)).get_concrete_function().graph
    conds = [op for op in graph.get_operations() if op.type in ("If", "StatelessIf")]
    assert conds, "accumulation runs its update inside a cond"
    branches = [graph._functions[name] for name in graph._functions if "true" in name]  # noqa: SLF001
    assert sum(_kernel_calls(branch.graph) for branch in branches) == len(model.trainable_variables)
