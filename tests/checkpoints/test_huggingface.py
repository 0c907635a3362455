"""Parity and round trips against transformers' PyTorch BertModel."""

import json
import os
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tfbert import BertBackbone  # noqa: E402
from tfbert.checkpoints import CheckpointError, resolve  # noqa: E402

RANDOM_CONFIGS = [
    dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
         type_vocab_size=2, max_position_embeddings=40, hidden_act="gelu"),
    dict(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
         type_vocab_size=3, max_position_embeddings=64, hidden_act="gelu_new", layer_norm_eps=1e-6),
    dict(vocab_size=77, hidden_size=60, num_hidden_layers=1, num_attention_heads=5, intermediate_size=128,
         type_vocab_size=1, max_position_embeddings=33, hidden_act="gelu"),
    dict(vocab_size=64, hidden_size=16, num_hidden_layers=4, num_attention_heads=1, intermediate_size=20,
         type_vocab_size=2, max_position_embeddings=24, hidden_act="relu"),
]


def _random_torch_model(cls, seed, **config):
    torch.manual_seed(seed)
    model = cls(transformers.BertConfig(**config)).eval()
    with torch.no_grad():  # move LayerNorm weights and biases away from 1/0 so every weight matters
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def _batch(vocab_size, type_vocab_size, max_len, seed=0):
    rng = np.random.default_rng(seed)
    lengths = [max_len, max_len // 2, 3, 1]
    ids = rng.integers(1, vocab_size, (len(lengths), max_len)).astype("int32")
    mask = (np.arange(max_len)[None, :] < np.array(lengths)[:, None]).astype("int32")
    types = rng.integers(0, type_vocab_size, (len(lengths), max_len)).astype("int32")
    ids, types = ids * mask, types * mask
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def _torch_outputs(model, batch):
    with torch.no_grad():
        out = model(**{k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()})
    pooled = None if out.pooler_output is None else out.pooler_output.numpy()
    return out.last_hidden_state.numpy(), pooled


def assert_parity(backbone, torch_model, batch, atol=1e-4):
    seq_ref, pooled_ref = _torch_outputs(torch_model, batch)
    out = backbone(batch)
    real = batch["attention_mask"].astype(bool)
    seq_diff = np.abs(out["sequence_output"].numpy()[real] - seq_ref[real]).max()
    pooled_diff = np.abs(out["pooled_output"].numpy() - pooled_ref).max()
    assert seq_diff < atol and pooled_diff < atol, (seq_diff, pooled_diff)


@pytest.mark.parametrize("index", range(len(RANDOM_CONFIGS)))
def test_random_bert_models_match_transformers(tmp_path, index):
    config = RANDOM_CONFIGS[index]
    model = _random_torch_model(transformers.BertModel, seed=index, **config)
    model.save_pretrained(tmp_path, safe_serialization=True)
    backbone, report = BertBackbone.from_pretrained(str(tmp_path), return_report=True)
    assert not report.missing and not report.unexpected
    max_len = min(config["max_position_embeddings"], 24)
    assert_parity(backbone, model, _batch(config["vocab_size"], config["type_vocab_size"], max_len, seed=index))


@pytest.mark.slow
def test_minilm_checkpoint_matches_transformers():
    directory = resolve("minilm-l6")
    backbone = BertBackbone.from_pretrained("minilm-l6")
    model = transformers.BertModel.from_pretrained(directory).eval()
    assert_parity(backbone, model, _batch(30522, 2, 40))


def test_round_trip_hf_tfbert_hf_is_exact(tmp_path):
    from safetensors.numpy import load_file

    source = _random_torch_model(transformers.BertModel, seed=7, **RANDOM_CONFIGS[1])
    source.save_pretrained(tmp_path / "src", safe_serialization=True)
    backbone = BertBackbone.from_pretrained(str(tmp_path / "src"))
    backbone.save_pretrained(tmp_path / "out")
    original = load_file(str(tmp_path / "src" / "model.safetensors"))
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(written) == set(original) - {"embeddings.position_ids"}
    for key, value in written.items():
        np.testing.assert_array_equal(value, original[key], err_msg=key)
    reloaded = transformers.BertModel.from_pretrained(tmp_path / "out").eval()
    batch = _batch(120, 3, 20)
    np.testing.assert_array_equal(_torch_outputs(reloaded, batch)[0], _torch_outputs(source, batch)[0])


def test_task_checkpoints_with_bert_prefix_list_unused_heads(tmp_path, caplog):
    config = dict(RANDOM_CONFIGS[0], num_labels=3)
    model = _random_torch_model(transformers.BertForSequenceClassification, seed=3, **config)
    model.save_pretrained(tmp_path, safe_serialization=True)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        backbone, report = BertBackbone.from_pretrained(str(tmp_path), return_report=True)
    assert report.unexpected == ["classifier.bias", "classifier.weight"]
    assert "classifier.weight" in caplog.text
    assert_parity(backbone, model.bert, _batch(99, 2, 16))


def test_mlm_checkpoint_without_pooler_loads_and_lists_it(tmp_path):
    model = _random_torch_model(transformers.BertForMaskedLM, seed=4, **RANDOM_CONFIGS[0])
    model.save_pretrained(tmp_path, safe_serialization=True)
    backbone, report = BertBackbone.from_pretrained(str(tmp_path), return_report=True)
    assert report.missing == ["pooler.dense.weight", "pooler.dense.bias"]
    assert any(k.startswith("cls.predictions") for k in report.unexpected)
    # the weights a checkpoint lacks are drawn as a new model's (a truncated normal), not left at zero
    kernel, bias = (w.numpy() for w in backbone.pooler.weights)
    stddev = backbone.config.initializer_range
    assert 0.7 * stddev < kernel.std() < 1.1 * stddev and np.abs(kernel).max() <= 2 * stddev
    np.testing.assert_array_equal(bias, 0.0)
    batch = _batch(99, 2, 16)
    real_seq, _ = _torch_outputs(model.bert, batch)
    mask = batch["attention_mask"].astype(bool)
    assert np.abs(backbone(batch)["sequence_output"].numpy()[mask] - real_seq[mask]).max() < 1e-4


def test_missing_encoder_weight_and_wrong_shape_are_errors_by_name(tmp_path):
    from safetensors.numpy import load_file, save_file

    model = _random_torch_model(transformers.BertModel, seed=5, **RANDOM_CONFIGS[0])
    model.save_pretrained(tmp_path, safe_serialization=True)
    path = tmp_path / "model.safetensors"
    state = load_file(str(path))
    del state["encoder.layer.1.output.dense.weight"]
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.1\.output\.dense\.weight"):
        BertBackbone.from_pretrained(str(tmp_path))
    state["encoder.layer.1.output.dense.weight"] = np.zeros((5, 5), "float32")
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weight 'encoder\.layer\.1\.output\.dense\.weight' "
                                              r"has shape \(5, 5\)"):
        BertBackbone.from_pretrained(str(tmp_path))


def test_pytorch_bin_is_loaded_only_with_weights_only(tmp_path):
    model = _random_torch_model(transformers.BertModel, seed=6, **RANDOM_CONFIGS[0])
    # transformers 5 writes safetensors only; older releases wrote this pickle.
    model.config.to_json_file(tmp_path / "config.json")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert_parity(BertBackbone.from_pretrained(str(tmp_path)), model, _batch(99, 2, 12))
    # A pickle that carries code is refused, not executed.
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        BertBackbone.from_pretrained(str(tmp_path))
    assert not marker.exists()


def test_truncated_safetensors_names_the_file(tmp_path):
    model = _random_torch_model(transformers.BertModel, seed=8, **RANDOM_CONFIGS[0])
    model.save_pretrained(tmp_path, safe_serialization=True)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read"):
        BertBackbone.from_pretrained(str(tmp_path))


def test_presets_paths_and_hub_ids_resolve_or_fail_clearly(tmp_path, monkeypatch):
    assert os.path.isfile(os.path.join(resolve("minilm-l6"), "model.safetensors"))
    with pytest.raises(CheckpointError, match="no such directory"):
        resolve(str(tmp_path / "missing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="pass a local directory"):
        resolve("google-bert/bert-base-uncased")
    with pytest.raises(CheckpointError, match="not a BERT checkpoint directory") as error:
        BertBackbone.from_pretrained(str(tmp_path))
    assert "tf_model.h5" not in str(error.value)
    # transformers' TensorFlow weights alone (transformers 5 reads them no more either): how to convert them
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tf_model.h5").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"tf_model.h5 \(transformers' TensorFlow weights\) is not read: "
                                              r"convert it once where transformers 4, torch and tf-keras"):
        BertBackbone.from_pretrained(str(tmp_path))


def test_saved_config_is_what_transformers_reads(tmp_path, tiny_backbone):
    tiny_backbone.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["model_type"] == "bert"
    model = transformers.BertModel.from_pretrained(tmp_path).eval()
    batch = _batch(tiny_backbone.config.vocab_size, 2, 10)
    assert_parity(tiny_backbone, model, batch)
