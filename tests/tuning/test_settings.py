"""The search config and its objective (tfbert.tuning.settings): flags, defaults, objective names and directions."""

import os

import pytest

from tfbert import tuning
from tfbert.training.run_config import ClassifierRunConfig
from tfbert.tuning import TuneRunConfig


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_objective_direction_and_names(tmp_path):
    config = TuneRunConfig(train_file="x.csv", objective="val_macro_f1")
    assert (tuning.resolved_objective(config).name, tuning.resolved_objective(config).direction) == \
        ("val_macro_f1", "max")
    assert tuning.resolved_objective(TuneRunConfig(train_file="x.csv", objective="val_loss")).direction == "min"
    regression = TuneRunConfig(train_file="x.csv", problem_type="regression", objective="val_mse")
    assert tuning.resolved_objective(regression).direction == "min"
    assert tuning.resolved_objective(TuneRunConfig(train_file="x.csv")).name == "val_accuracy"  # train_cls' default
    assert tuning.resolved_objective(TuneRunConfig(train_file="x.csv", problem_type="multi_label_classification",
                                                   objective="val_hamming_loss")).direction == "min"
    with pytest.raises(ValueError, match="--objective val_f1: not a validation metric of a classification run; "
                                         "choose one of .*val_macro_f1"):
        TuneRunConfig(train_file="x.csv", objective="val_f1")


def test_flags_and_defaults(tmp_path):
    space = _write(tmp_path / "space.yaml", "epochs: 2\n")
    config = TuneRunConfig.from_args(["--tuner", "grid", "--objective", "val_mcc", "--max_trials", "5",
                                      "--search_space", space, "--train_file", "t.csv", "--overwrite"])
    assert (config.tuner, config.objective, config.max_trials, config.overwrite) == ("grid", "val_mcc", 5, True)
    assert config.max_seq_length == 128 and config.max_train_examples is None  # train_cls' defaults for user data
    assert config.resolved_output_dir() == os.path.join("runs", "tune-t-minilm-l6")
    assert config.resolved_log_dir() == os.path.join("tensorboard_logs", "tune-t-minilm-l6")
    # the default (BBC News) search is cut down to fit in 20 minutes
    default = TuneRunConfig.from_args([])
    assert (default.max_seq_length, default.max_train_examples, default.max_trials) == (64, 320, 8)
    assert TuneRunConfig.from_args(["--max_train_examples", "0"]).max_train_examples is None
    trial = default.base_run_config(learning_rate=3e-5)
    assert type(trial) is ClassifierRunConfig and trial.learning_rate == 3e-5
    assert trial.metric_for_best == "val_accuracy"  # the trial's best epoch is picked by the objective
    with pytest.raises(SystemExit):
        TuneRunConfig.from_args(["--tuner", "annealing"])
    with pytest.raises(ValueError, match="--role worker needs --oracle_address"):
        TuneRunConfig(role="worker")
    with pytest.raises(ValueError, match="field 'strategy' must be one process's strategy .* a search spreads over "
                                         "machines by its trials"):
        TuneRunConfig(strategy="multi_worker")
    with pytest.raises(ValueError, match="must be host:port"):
        TuneRunConfig(role="chief", oracle_address="localhost")
    with pytest.raises(ValueError, match="--role worker needs --worker_index"):
        TuneRunConfig(role="worker", oracle_address="127.0.0.1:8000")
    # given where nothing reads them: the search would run in this process, or as the chief; a test file
    # without the best model that alone is scored on it
    with pytest.raises(ValueError, match=r"field 'test_file' must be unset with --export none: the trials are scored "
                                         r"on the validation data, and the test data only by the exported best model"):
        TuneRunConfig(train_file="x.csv", test_file="t.csv", export="none")
    with pytest.raises(ValueError, match=r"field 'oracle_address' must be given with --role chief or worker \(without "
                                         r"it the search runs in this process\), found '127.0.0.1:8000'"):
        TuneRunConfig(oracle_address="127.0.0.1:8000")
    with pytest.raises(ValueError, match=r"field 'worker_index' must be given with --role worker \(role is chief\)"):
        TuneRunConfig(role="chief", oracle_address="127.0.0.1:8000", worker_index=1)


@pytest.mark.parametrize("text, expected", [
    ("epochs: 0\n", "epochs: the value 0 is not one a training run takes: field 'epochs' must be a positive integer"),
    ("dropout: {type: float, min: 0.0, max: 1.0}\n", "dropout: max 1.0 is not one a training run takes: field "
                                                   "'dropout' must be in [0, 1)"),
    ("batch_size: {type: choice, values: [16, -4]}\n", "batch_size: the choice -4 is not one a training run takes"),
    ("learning_rate: {type: float, min: 1e-5, max: 2.0, sampling: log}\n", "learning_rate: max 2.0 is not one"),
    ("weight_decay: {type: float, min: -0.1, max: 0.1}\n", "weight_decay: min -0.1 is not one a training run takes: "
                                                         "field 'weight_decay' must be >= 0"),
])
def test_a_search_space_value_no_run_takes_is_refused_before_the_first_trial(tmp_path, text, expected):
    """A fixed value, a choice or an end of a range that train_cls would refuse fails the search's config,
    naming the file and the entry (it used to fail trial after trial until the search stopped)."""
    path = _write(tmp_path / "space.yaml", text)
    with pytest.raises(ValueError) as error:
        TuneRunConfig(train_file="x.csv", search_space=path)
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value)
    TuneRunConfig(train_file="x.csv", search_space=_write(tmp_path / "fine.yaml", "epochs: 1\ndropout: 0.0\n"))


def test_a_search_without_validation_data_is_refused():
    """Trials are ranked on validation data; without it every trial failed on its metric_for_best."""
    with pytest.raises(ValueError, match="field 'validation_fraction' must be above 0, or a validation_file given: "
                                         "a search ranks its trials on validation data"):
        TuneRunConfig(train_file="x.csv", validation_fraction=0)
    assert TuneRunConfig(train_file="x.csv", validation_file="dev.csv", validation_fraction=0).validation_file


def test_metric_for_best_is_the_objective_or_refused():
    """--metric_for_best alone is the objective; beside another --objective it was overridden silently."""
    assert tuning.resolved_objective(TuneRunConfig(train_file="x.csv", metric_for_best="val_loss")).name == "val_loss"
    with pytest.raises(ValueError, match=r"field 'metric_for_best' must be unset or the search's objective "
                                         r"\(val_accuracy\): each trial's best epoch is picked by --objective, "
                                         "found 'val_loss'"):
        TuneRunConfig(train_file="x.csv", metric_for_best="val_loss", objective="val_accuracy")


def test_flags_for_searched_fields_are_said_to_be_overridden(tmp_path, capsys):
    """`--epochs 1` to keep a search short trained 1-3 epochs with nothing said."""
    from tfbert.tuning.search import _say_overridden_flags
    from tfbert.tuning.space import load_search_space

    # a run's config.yaml holds `dropout: null` (unset, not a value) and every other field
    (tmp_path / "run.yaml").write_text("weight_decay: 0.05\nseed: 3\ndropout: null\n", encoding="utf-8")
    config = TuneRunConfig.from_args(["--train_file", "t.csv", "--epochs", "1", "--batch_size", "32",
                                      "--config", str(tmp_path / "run.yaml")])
    assert config.given_fields == {"train_file", "epochs", "batch_size", "weight_decay", "seed", "dropout"}
    _say_overridden_flags(config, load_search_space())
    assert capsys.readouterr().out == (
        "searched, so not taken from the flags: --weight_decay 0.05 (the space: 0 to 0.1); --batch_size 32 (the "
        "space: one of 16, 32); --epochs 1 (the space: 1 to 3). To use a flag's value, give it in --search_space "
        "as a bare value (`weight_decay: 0.05`) or take the field out of the search (`weight_decay: null`)\n")
    # a space that fixes the flag's own value overrides nothing
    (tmp_path / "space.yaml").write_text("weight_decay: 0.05\nbatch_size: 32\nepochs: 2\n", encoding="utf-8")
    _say_overridden_flags(config, load_search_space(str(tmp_path / "space.yaml")))
    assert capsys.readouterr().out.startswith("searched, so not taken from the flags: --epochs 1 (the space: 2). ")
    _say_overridden_flags(TuneRunConfig.from_args(["--train_file", "t.csv", "--seed", "1"]), load_search_space())
    assert capsys.readouterr().out == ""  # the default search's own values (max_seq_length 64 ...) are not said
