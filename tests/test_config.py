import json

import pytest

from tfbert import BertConfig, ConfigError


def test_reads_hf_config_and_writes_it_back(tmp_path):
    from conftest import minilm_dir

    config = BertConfig.from_json_file(f"{minilm_dir()}/config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 6, 12)
    assert config.intermediate_size == 1536 and config.vocab_size == 30522 and config.hidden_act == "gelu"
    config.save_json(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "bert" and written["architectures"] == ["BertModel"]
    assert BertConfig.from_json_file(tmp_path / "config.json") == config


@pytest.mark.parametrize("field, value, message", [
    ("position_embedding_type", "relative_key", "only 'absolute'"),
    ("hidden_act", "mish", "hidden_act"),
    ("hidden_size", 31, "multiple of 'num_attention_heads'"),
    ("num_hidden_layers", 0, "num_hidden_layers"),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob"),
    ("model_type", "roberta", "model_type"),
])
def test_bad_values_name_the_file_and_field(tmp_path, field, value, message):
    data = BertConfig(hidden_size=32, num_attention_heads=2).to_hf_dict()
    data[field] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        BertConfig.from_json_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_field_missing_from_the_file_is_named_when_its_default_does_not_fit(tmp_path):
    data = BertConfig(hidden_size=64, num_attention_heads=4).to_hf_dict()
    del data["num_attention_heads"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"'hidden_size' \(64\) must be a multiple of 'num_attention_heads' "
                                          r"\(12\).*; 'num_attention_heads' is not given \(BERT-base's 12 was "
                                          r"taken\)$"):
        BertConfig.from_json_file(path)
    data["num_attention_heads"] = 5  # given, and wrong: nothing about defaults
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        BertConfig.from_json_file(path)
    assert "not given" not in str(err.value)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{\n  \"hidden_size\": 32,\n  \"oops\": ]\n}")
    with pytest.raises(ConfigError, match=r"config.json: line 3, column 11: not valid JSON"):
        BertConfig.from_json_file(path)


def test_gelu_variants_and_unknown_keys_are_accepted():
    config = BertConfig.from_dict({"hidden_act": "gelu_new", "transformers_version": "4.0", "id2label": {}})
    assert config.hidden_act == "gelu_new"
