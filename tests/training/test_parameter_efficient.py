"""LoRA adapters and frozen layers (`tfbert.training.parameter_efficient`), alone and through a train_cls run."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import tiny_config, write_sentiment_csv
from tfbert import BertBackbone
from tfbert.export import float32_copy, merged_copy
from tfbert.tasks import BertClassifier, BertTokenClassifier
from tfbert.errors import TfbertError
from tfbert.training.parameter_efficient import (AdapterError, ParameterEfficientError, apply_to_model,
                                                 load_adapters, parameter_counts, save_adapters)
from tfbert.training.run_config import ClassifierRunConfig


def _inputs(batch=4, length=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(5, 40, (batch, length)).astype("int32"),
            "token_type_ids": np.zeros((batch, length), "int32"), "attention_mask": np.ones((batch, length), "int32")}


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return BertClassifier(BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
                          num_classes=3, dropout=0.0)


def _train_a_little(model, steps=3):
    x = _inputs(8)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=model.default_loss())
    model.fit(x, np.arange(8) % 3, epochs=steps, verbose=0)


def test_lora_starts_as_the_base_model_and_trains_only_adapters_and_head():
    model = _classifier()
    x = _inputs()
    before = model.predict(x, verbose=0)
    done = apply_to_model(model, lora_rank=4, lora_alpha=8, lora_targets="query,value,intermediate")
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)  # B starts at zero
    assert done["lora_targets"] == ["query", "value", "intermediate"] and done["lora_alpha"] == 8.0
    trainable = {v.path for v in model.trainable_weights}
    # 2 layers x 3 targets x (A, B) adapters, and the head; nothing else of the backbone.
    assert trainable == {f"encoder_layer_{i}/{t}/lora_kernel_{ab}" for i in range(2)
                         for t in ("query", "value", "intermediate") for ab in "ab"} | {"classifier/kernel",
                                                                                        "classifier/bias"}
    hidden, inner = 32, 64
    adapters = 2 * (2 * (hidden * 4 + 4 * hidden) + (hidden * 4 + 4 * inner))
    assert done["parameters"] == {"trainable": adapters + hidden * 3 + 3, "total": parameter_counts(model)["total"]}
    snapshot = {v.path: v.numpy().copy() for v in model.weights}
    _train_a_little(model)
    for v in model.weights:
        changed = not np.array_equal(snapshot[v.path], v.numpy())
        assert changed == (v.path in trainable and not v.path.endswith("lora_kernel_a")) or \
            v.path.endswith("lora_kernel_a"), v.path  # every frozen weight is bit-identical


def test_merged_model_matches_the_adapted_one():
    model = _classifier()
    apply_to_model(model, lora_rank=2, lora_targets="query,key,value,attention_output,intermediate,output")
    rng = np.random.default_rng(1)
    for v in model.weights:
        if "lora_kernel_b" in v.path:
            v.assign(rng.normal(size=v.shape) * 0.3)
    x = _inputs()
    adapted = model.predict(x, verbose=0)
    for merged in (merged_copy(model), float32_copy(model)):
        assert not [v for v in merged.weights if "lora" in v.path]
        np.testing.assert_allclose(merged.predict(x, verbose=0), adapted, atol=1e-5)
        assert np.abs(merged.predict(x, verbose=0) - _classifier().predict(x, verbose=0)).max() > 1e-3


def test_weights_files_keep_the_adapters(tmp_path):
    # Keras' Dense saves LoRA layers merged and zeroes A and B on load, which leaves the adapters dead
    # after a resume or a best-epoch reload; tfbert's layers keep them.
    model = _classifier()
    apply_to_model(model, lora_rank=2)
    _train_a_little(model)
    model.save_weights(tmp_path / "w.weights.h5")
    resumed = _classifier()
    apply_to_model(resumed, lora_rank=2)
    resumed.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(model.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    before = {v.path: v.numpy().copy() for v in resumed.weights if "lora_kernel" in v.path}
    _train_a_little(resumed, steps=1)
    assert all(not np.array_equal(before[v.path], v.numpy()) for v in resumed.weights if "lora_kernel" in v.path)
    # a model without adapters takes the merged kernels
    plain = _classifier()
    plain.load_weights(tmp_path / "w.weights.h5")
    x = _inputs()
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("freeze_layers, freeze_embeddings", [(1, False), (2, True)])
def test_frozen_layers_stay_bit_identical(freeze_layers, freeze_embeddings):
    model = _classifier()
    apply_to_model(model, freeze_layers=freeze_layers, freeze_embeddings=freeze_embeddings)
    frozen = tuple(f"encoder_layer_{i}/" for i in range(freeze_layers)) + (("embeddings/",) if freeze_embeddings
                                                                            else ())
    snapshot = {v.path: v.numpy().copy() for v in model.weights}
    _train_a_little(model)
    for v in model.weights:
        same = np.array_equal(snapshot[v.path], v.numpy())
        if v.path.startswith(frozen):
            assert same, f"{v.path} moved although frozen"
    moved = [v.path for v in model.weights if not np.array_equal(snapshot[v.path], v.numpy())]
    assert any(p.startswith(f"encoder_layer_{freeze_layers}/") for p in moved) or freeze_layers == 2
    assert "classifier/kernel" in moved and ("embeddings/word_embeddings/embeddings" in moved) != freeze_embeddings


def test_frozen_layers_get_no_adapters_and_stay_bit_identical_under_lora(tmp_path):
    model = _classifier()
    unfrozen = _classifier()
    apply_to_model(unfrozen, lora_rank=2)
    settings = apply_to_model(model, lora_rank=2, freeze_layers=1, freeze_embeddings=True)
    adapters = {v.path for v in model.weights if "lora_kernel" in v.path}
    assert adapters == {f"encoder_layer_1/{t}/lora_kernel_{ab}" for t in ("query", "value") for ab in "ab"}
    assert settings["parameters"]["trainable"] == parameter_counts(unfrozen)["trainable"] - 2 * (32 * 2 + 2 * 32)
    snapshot = {v.path: v.numpy().copy() for v in model.weights}
    _train_a_little(model)
    for v in model.weights:
        if v.path.startswith(("encoder_layer_0/", "embeddings/")):
            np.testing.assert_array_equal(v.numpy(), snapshot[v.path], err_msg=f"{v.path} moved although frozen")
    assert not np.array_equal(snapshot["encoder_layer_1/query/lora_kernel_b"],
                              model.backbone.encoder_layers[1].query.lora_kernel_b.numpy())
    # the adapters reload onto the base with the same layers frozen (and adapted)
    save_adapters(model, str(tmp_path / "adapters"), "minilm-l6", settings)
    fresh = _classifier()
    load_adapters(fresh, str(tmp_path / "adapters"))
    x = _inputs(seed=3)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_adapters_save_alone_and_reload_onto_the_base(tmp_path):
    model = _classifier()
    settings = apply_to_model(model, lora_rank=4)
    _train_a_little(model)
    save_adapters(model, str(tmp_path / "adapters"), "minilm-l6", settings)
    config = json.loads((tmp_path / "adapters" / "adapter_config.json").read_text())
    assert config["base_model"] == "minilm-l6" and config["lora_rank"] == 4
    assert set(config["variables"]) == {v.path for v in model.trainable_weights}
    size = os.path.getsize(tmp_path / "adapters" / "adapter_model.safetensors")
    assert size < sum(v.numpy().nbytes for v in model.weights) / 5
    fresh = _classifier()  # the same base weights (same seed), no adapters yet
    load_adapters(fresh, str(tmp_path / "adapters"))
    x = _inputs(seed=3)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    # another head does not fit: the error names the variable
    keras.utils.set_random_seed(0)
    other = BertTokenClassifier(BertBackbone(tiny_config()), num_labels=5)
    with pytest.raises(AdapterError, match="variable 'classifier/(kernel|bias)' has shape"):
        load_adapters(other, str(tmp_path / "adapters"))
    with pytest.raises(AdapterError, match="not an adapter directory"):
        load_adapters(fresh, str(tmp_path))
    # a base of the same shapes but other weights: refused, naming the base the adapters need
    other_base = _classifier(seed=1)
    before = {v.path: v.numpy().copy() for v in other_base.weights}
    with pytest.raises(AdapterError, match="base weights are not those these adapters were trained on "
                                           r"\(base_model: minilm-l6\)"):
        load_adapters(other_base, str(tmp_path / "adapters"))
    for v in other_base.weights:  # nothing half-loaded
        if "lora_kernel" not in v.path:
            np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)


@pytest.mark.parametrize("field, value, message", [
    ("lora_rank", 0, "lora_rank"), ("lora_alpha", 8.0, "given with lora_rank"),
    ("lora_targets", "query,attention", "'lora_targets' .*attention is not one"),
    ("lora_targets", "key", "'lora_targets' must be given with lora_rank"), ("freeze_layers", -1, "freeze_layers")])
def test_bad_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ClassifierRunConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("lora_rank", 4), ("freeze_layers", 1), ("freeze_embeddings", True)])
def test_pre_training_from_scratch_has_nothing_to_adapt_or_freeze(field, value):
    from tfbert.training.run_config import MaskedLMRunConfig

    # random weights: the adapters' base pointer would name only the tokenizer (a silent wrong reload)
    with pytest.raises(ValueError, match=f"field '{field}' must be unset when pre-training from scratch"):
        MaskedLMRunConfig(model_config="config.json", **{field: value})


def test_freezing_more_layers_than_the_model_has_is_an_error():
    # a TfbertError: the pipelines print it as one line naming the flag
    with pytest.raises(ParameterEfficientError, match="--freeze_layers: the model has 2 encoder layers, found 3"):
        apply_to_model(_classifier(), freeze_layers=3)
    with pytest.raises(TfbertError, match="freezes every encoder layer"):
        apply_to_model(_classifier(), freeze_layers=2, lora_rank=2)


@pytest.mark.slow
def test_train_cls_with_lora_writes_adapters_and_a_merged_export(tmp_path, tiny_model_dir, capsys):
    from tfbert.training.runner import export_run, train

    train_file = write_sentiment_csv(tmp_path / "train.csv", 96, seed=1)
    config = ClassifierRunConfig(model=tiny_model_dir, train_file=train_file, epochs=2, batch_size=8,
                                 max_seq_length=32, learning_rate=3e-3, lora_rank=4, freeze_embeddings=True,
                                 output_dir=str(tmp_path / "run"), log_dir=str(tmp_path / "tb"))
    train(config)
    run = tmp_path / "run"
    counts = json.loads((run / "metrics.json").read_text())["parameters"]
    model = BertClassifier.from_pretrained(tiny_model_dir, num_classes=2)
    apply_to_model(model, lora_rank=4, freeze_embeddings=True)
    assert counts == parameter_counts(model) and 0 < counts["trainable"] < counts["total"] / 5
    assert f"parameters: {counts['trainable']:,} trainable of {counts['total']:,}" in capsys.readouterr().out
    adapters = json.loads((run / "adapters" / "adapter_config.json").read_text())
    assert adapters["base_model"] == os.path.abspath(tiny_model_dir)
    # the backbone's kernels in hf_model/ are the merged ones: they differ from the base checkpoint
    from safetensors.numpy import load_file

    base, tuned = load_file(f"{tiny_model_dir}/model.safetensors"), load_file(f"{run}/hf_model/model.safetensors")
    key = "encoder.layer.0.attention.self.{}.weight"
    assert not np.array_equal(base[key.format("query")], tuned["bert." + key.format("query")])
    np.testing.assert_array_equal(base[key.format("key")], tuned["bert." + key.format("key")])  # not a target
    # model.keras holds the merged model; the SavedModel of export_run answers as the adapted model did
    reloaded = keras.models.load_model(run / "model.keras", compile=False)
    assert not [v for v in reloaded.weights if "lora" in v.path]
    fresh = BertClassifier.from_pretrained(tiny_model_dir, num_classes=2)
    load_adapters(fresh, str(run / "adapters"))
    x = _inputs()
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), fresh.predict(x, verbose=0), atol=1e-5)
    assert os.path.isdir(export_run(str(run), str(tmp_path / "export")))
