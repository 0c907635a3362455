"""Original Google BERT checkpoints (bert_config.json + bert_model.ckpt), built tiny by the test."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tfbert import BertBackbone
from tfbert.checkpoints.google import google_to_hf_name
from tfbert.checkpoints.mapping import backbone_state

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _hf_to_google(key):
    name = "bert/" + key.replace(".", "/")
    name = name.replace("/layer/", "/layer_")
    if "LayerNorm" in name:
        name = name.replace("/weight", "/gamma").replace("/bias", "/beta")
    elif name.endswith("_embeddings/weight"):
        name = name[: -len("/weight")]
    else:
        name = name.replace("/weight", "/kernel")
    return name


CONFIG = dict(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
              max_position_embeddings=32, type_vocab_size=2, hidden_act="gelu")


def _perturbed(model_class, seed):
    """A tiny transformers model of `CONFIG` whose weights are moved off their initial values."""
    torch.manual_seed(seed)
    model = model_class(transformers.BertConfig(**CONFIG)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _add_google_variable(variables, key, value, prefix="bert/"):
    """Adds a transformers weight under its Google name (kernels [in, out], as TF's Dense held them)."""
    name = prefix + _hf_to_google(key)[len("bert/"):]
    variables[name] = value.numpy().T if name.endswith("/kernel") else value.numpy()


def test_name_mapping():
    assert google_to_hf_name("bert/encoder/layer_3/attention/self/query/kernel") == \
        "encoder.layer.3.attention.self.query.weight"
    assert google_to_hf_name("bert/embeddings/word_embeddings") == "embeddings.word_embeddings.weight"
    assert google_to_hf_name("bert/embeddings/LayerNorm/gamma") == "embeddings.LayerNorm.weight"


def test_google_checkpoint_matches_transformers(tmp_path):
    model = _perturbed(transformers.BertModel, seed=0)
    # Write the weights the way Google's BERT did: TF variables, [in, out] kernels, plus the
    # MLM/NSP heads and Adam slots that pre-training checkpoints carry.
    variables = {}
    for key, value in model.state_dict().items():
        if key != "embeddings.position_ids":
            _add_google_variable(variables, key, value)
    variables["cls/predictions/output_bias"] = np.zeros(50, "float32")
    variables["bert/embeddings/word_embeddings/adam_m"] = np.zeros((50, 24), "float32")
    directory = tmp_path / "uncased_L-2_H-24_A-3"
    directory.mkdir()
    _save_tf1(variables, str(directory / "bert_model.ckpt"))
    (directory / "bert_config.json").write_text(json.dumps(CONFIG))
    backbone, report = BertBackbone.from_pretrained(str(directory), return_report=True)
    assert report.unexpected == ["cls.predictions.bias"]
    state = backbone_state(backbone)
    np.testing.assert_array_equal(state["encoder.layer.1.attention.self.query.weight"],
                                  model.state_dict()["encoder.layer.1.attention.self.query.weight"].numpy())
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(1, 50, (2, 9)).astype("int32"),
             "token_type_ids": np.zeros((2, 9), "int32"), "attention_mask": np.ones((2, 9), "int32")}
    with torch.no_grad():
        ref = model(**{k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}).last_hidden_state.numpy()
    assert np.abs(backbone(batch)["sequence_output"].numpy() - ref).max() < 1e-4


def test_google_pretraining_checkpoint_keeps_its_masked_lm_head(tmp_path, caplog):
    # Google's pre-training checkpoints hold the MLM head as cls/predictions/{transform/..., output_bias}
    # (the bias was read as an unknown 'output_bias', and the whole head started fresh) and the
    # next-sentence head as cls/seq_relationship/output_{weights,bias}
    from tfbert.tasks.masked_lm import BertMaskedLM

    model = _perturbed(transformers.BertForPreTraining, seed=1)
    variables = {}
    for key, value in model.state_dict().items():
        if key.startswith("bert.") and not key.endswith("position_ids"):
            _add_google_variable(variables, key[len("bert."):], value)
        elif key.startswith("cls.predictions.transform."):
            _add_google_variable(variables, key, value, prefix="")
    head = model.state_dict()
    variables["cls/predictions/output_bias"] = head["cls.predictions.bias"].numpy()
    variables["cls/seq_relationship/output_weights"] = head["cls.seq_relationship.weight"].numpy()  # [2, hidden]
    variables["cls/seq_relationship/output_bias"] = head["cls.seq_relationship.bias"].numpy()
    assert sorted(google_to_hf_name(name) for name in variables if name.startswith("cls/")) == sorted(
        key for key in head if key.startswith("cls.") and key != "cls.predictions.decoder.weight"
        and key != "cls.predictions.decoder.bias")
    directory = tmp_path / "uncased_L-2_H-24_A-3"
    directory.mkdir()
    _save_tf1(variables, str(directory / "bert_model.ckpt"))
    (directory / "bert_config.json").write_text(json.dumps(CONFIG))
    with caplog.at_level("WARNING"):
        mlm = BertMaskedLM.from_pretrained(str(directory))
    assert "head starts fresh" not in caplog.text and "lacks" not in caplog.text
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (2, 9))
    positions = np.tile(np.arange(9), (2, 1))
    logits = mlm({"input_ids": ids.astype("int32"), "token_type_ids": np.zeros((2, 9), "int32"),
                  "attention_mask": np.ones((2, 9), "int32"), "masked_positions": positions.astype("int32")})
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids)).prediction_logits.numpy()
    assert np.abs(np.asarray(logits) - ref).max() < 1e-4


def _save_tf1(variables, prefix):
    """Writes a name-based checkpoint like TF1's Saver (names are the variable names)."""
    with tf.Graph().as_default():
        tf_vars = [tf.compat.v1.Variable(value, name=name) for name, value in variables.items()]
        saver = tf.compat.v1.train.Saver(var_list={name: var for name, var in zip(variables, tf_vars)})
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix)
