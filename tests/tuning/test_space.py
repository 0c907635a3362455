"""The search space (tfbert.tuning.space): the default space, YAML overrides, and errors naming the file and key."""

import pytest

from tfbert.tuning import load_search_space, parse_search_space


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_default_space_covers_the_recipe_and_yaml_overrides_it_key_by_key(tmp_path):
    space = load_search_space()
    assert set(space) == {"learning_rate", "warmup_ratio", "weight_decay", "batch_size", "dropout", "epochs",
                          "layerwise_lr_decay"}
    assert space["learning_rate"].sampling == "log" and space["batch_size"].kind == "choice"
    path = _write(tmp_path / "space.yaml", "learning_rate: {type: float, min: 1e-5, max: 1e-4, sampling: log}\n"
                                           "batch_size: {type: choice, values: [16, 32]}\n"
                                           "epochs: {type: int, min: 1, max: 3}\n"
                                           "dropout: 0.1\n"
                                           "layerwise_lr_decay: null\n"
                                           "max_seq_length: {type: choice, values: [64, 128], default: 128}\n")
    space = load_search_space(path)
    assert space["learning_rate"].min == 1e-5 and space["learning_rate"].max == 1e-4  # YAML reads 1e-5 as a string
    assert space["batch_size"].values == (16, 32) and space["epochs"].kind == "int"
    assert space["dropout"].kind == "fixed" and space["dropout"].values == (0.1,)
    assert "layerwise_lr_decay" not in space and "warmup_ratio" in space  # null removes, the rest stays
    assert space["max_seq_length"].default == 128
    # every entry round-trips through its YAML form
    assert parse_search_space({k: v.to_yaml() for k, v in space.items()}) == space
    # the schedule is searched by name, the clipping norm as a number
    path = _write(tmp_path / "schedules.yaml", "lr_scheduler_type: {type: choice, values: [linear, cosine]}\n"
                                               "max_grad_norm: {type: float, min: 0.5, max: 5.0}\n")
    space = load_search_space(path)
    assert space["lr_scheduler_type"].values == ("linear", "cosine") and space["max_grad_norm"].max == 5.0
    assert parse_search_space({k: v.to_yaml() for k, v in space.items()}) == space
    assert load_search_space(_write(tmp_path / "fixed.yaml", "lr_scheduler_type: cosine\n"))[
        "lr_scheduler_type"].values == ("cosine",)


@pytest.mark.parametrize("text, expected", [
    ("learning_rte: 0.1\n", "learning_rte: not a tunable field"),
    ("learning_rate: {type: float, min: 1e-3}\n", "learning_rate: a float entry needs 'min' and 'max'"),
    ("learning_rate: {type: float, min: 0.1, max: 0.01}\n", "learning_rate: 'min' must be below 'max'"),
    ("learning_rate: {type: float, min: 0, max: 0.1, sampling: log}\n", "log sampling needs 'min' > 0"),
    ("learning_rate: {type: float, min: 0.01, max: 0.1, sampling: cubic}\n", "'sampling' must be linear"),
    ("learning_rate: {type: uniform, min: 0.01, max: 0.1}\n", "'type' must be float | int | choice | fixed"),
    ("learning_rate: {type: float, min: 0.01, max: 0.1, stepp: 2}\n", "unknown key(s) stepp"),
    ("batch_size: {type: choice, values: [16, 32.5]}\n", "batch_size: 'values' must be an integer"),
    ("batch_size: {type: choice, values: []}\n", "'values' must be a non-empty list"),
    ("batch_size: {type: float, min: 8, max: 64}\n", "the field batch_size is an integer"),
    ("epochs: {type: int, min: one, max: 3}\n", "epochs: 'min' must be an integer"),
    ("dropout: {type: choice, values: [0.1, 0.2], default: 0.3}\n", "'default' 0.3 is not one of 'values'"),
    ("- learning_rate\n", "expected a mapping of field: entry"),
    ("learning_rate: [unclosed\n", ":2: not valid YAML"),
    ("learning_rate: {type: [float], min: 1e-5, max: 1e-4}\n", "'type' must be float | int | choice | fixed, "
                                                              "found ['float']"),
    ("learning_rate: 0.01\ndropout: 0.1\nlearning_rate: 0.02\n", ":3: not valid YAML ('learning_rate' given twice "
                                                                 "(first on line 1))"),
    ("learning_rate: {type: float, min: 0.01, max: 0.1, max: 0.2}\n", ":1: not valid YAML ('max' given twice "
                                                                    "(first on line 1))"),
    ("lr_scheduler_type: {type: choice, values: [linear, cosin]}\n", "lr_scheduler_type: 'values' must be one of "
                                                                     "linear, cosine, constant_with_warmup, found "
                                                                     "'cosin'"),
    ("lr_scheduler_type: {type: float, min: 0, max: 1}\n", "lr_scheduler_type: the field lr_scheduler_type takes "
                                                           "names (linear, cosine, constant_with_warmup); use type "
                                                           "choice or fixed"),
    ("max_grad_norm: {type: choice, values: [1.0, none]}\n", "max_grad_norm: 'values' must be a number"),
    ("dropout: {type: float, min: 0.0, max: 0.2, step: 0}\n", "dropout: 'step' must be > 0, found 0.0"),
    ("learning_rate: {type: float, min: 1e-5, max: 1e-4, sampling: log, step: 0.5}\n",
     "learning_rate: 'step' must be > 1 with log sampling (a factor between values), found 0.5"),
])
def test_bad_search_space_files_name_the_file_and_the_key(tmp_path, text, expected):
    path = _write(tmp_path / "space.yaml", text)
    with pytest.raises(ValueError) as error:
        load_search_space(path)
    assert str(error.value).startswith(path) and expected in str(error.value)
    with pytest.raises(ValueError, match="search space file not found"):
        load_search_space(str(tmp_path / "missing.yaml"))


def test_a_search_space_that_is_no_text_file_is_named(tmp_path):
    (tmp_path / "space.yaml").write_bytes(b"\xff\xfelearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"space.yaml: not UTF-8 text \(byte 0xff at offset 0\); save the search "
                                         "space file as UTF-8"):
        load_search_space(str(tmp_path / "space.yaml"))
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ValueError, match=r"folder.yaml: is a folder; expected a YAML search space file"):
        load_search_space(str(tmp_path / "folder.yaml"))
