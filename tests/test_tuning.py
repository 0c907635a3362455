"""Hyperparameter search: the search space, objectives, resumable oracles, and small real searches."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import write_sentiment_csv
from tfbert import tuning
from tfbert.training.run_config import ClassifierRunConfig
from tfbert.tuning import TuneRunConfig, load_search_space, parse_search_space, run_search


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- search space -------------------------------------------------------------------------------


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
])
def test_bad_search_space_files_name_the_file_and_the_key(tmp_path, text, expected):
    path = _write(tmp_path / "space.yaml", text)
    with pytest.raises(ValueError) as error:
        load_search_space(path)
    assert str(error.value).startswith(path) and expected in str(error.value)
    with pytest.raises(ValueError, match="search space file not found"):
        load_search_space(str(tmp_path / "missing.yaml"))


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
    with pytest.raises(ValueError, match="must be host:port"):
        TuneRunConfig(role="chief", oracle_address="localhost")
    with pytest.raises(ValueError, match="--role worker needs --worker_index"):
        TuneRunConfig(role="worker", oracle_address="127.0.0.1:8000")


def test_distributed_flags_set_keras_tuner_variables(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores them after the test
        monkeypatch.delenv(name)
    assert tuning.configure_distribution(TuneRunConfig()) == (None, None, None)
    config = TuneRunConfig(role="worker", oracle_address="10.0.0.2:8000", worker_index=3)
    assert tuning.configure_distribution(config) == ("worker", "worker3", "10.0.0.2:8000")
    assert (os.environ["KERASTUNER_TUNER_ID"], os.environ["KERASTUNER_ORACLE_IP"],
            os.environ["KERASTUNER_ORACLE_PORT"]) == ("worker3", "10.0.0.2", "8000")
    assert tuning.configure_distribution(TuneRunConfig(role="chief", oracle_address="127.0.0.1:8001")) == \
        ("chief", "chief", "127.0.0.1:8001")
    # KerasTuner's own variables, set without --role, are honoured
    assert tuning.configure_distribution(TuneRunConfig()) == ("chief", "chief", "127.0.0.1:8001")
    monkeypatch.delenv("KERASTUNER_TUNER_ID")
    with pytest.raises(tuning.SearchError, match="KERASTUNER_TUNER_ID or KERASTUNER_ORACLE_PORT is not"):
        tuning.configure_distribution(TuneRunConfig())


# --- oracles ------------------------------------------------------------------------------------


def _grid_oracle(project, **kwargs):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [0.1, 0.01, 0.001])
    hp.Choice("batch_size", [16, 32])
    oracle = tuning.GridSearchOracle(objective=keras_tuner.Objective("val_accuracy", "max"), hyperparameters=hp,
                                     max_trials=9, **kwargs)
    oracle._set_project_dir(str(project), "trials")
    return oracle


def _finish(oracle, trial, status="COMPLETED"):
    if status == "COMPLETED":
        oracle.update_trial(trial.trial_id, {"val_accuracy": float(len(oracle.trials))})
    trial.status = status
    oracle.end_trial(trial)


def _run_to_the_end(oracle) -> list[dict]:
    """Creates and finishes trials until the oracle stops; their values, in order."""
    values = []
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            return values
        values.append(dict(trial.hyperparameters.values))
        _finish(oracle, trial)


def test_grid_search_resumes_where_it_stopped(tmp_path):
    """KerasTuner 1.4.8's grid oracle loses its place on reload (keras-team/keras-tuner#1055)."""
    expected = _run_to_the_end(_grid_oracle(tmp_path / "reference"))
    assert len(expected) == 6 and len({tuple(sorted(v.items())) for v in expected}) == 6

    oracle = _grid_oracle(tmp_path / "resumed")
    seen = []
    for _ in range(2):
        trial = oracle.create_trial("tuner0")
        seen.append(dict(trial.hyperparameters.values))
        _finish(oracle, trial)
    running = oracle.create_trial("tuner0")  # killed while this trial runs
    seen.append(dict(running.hyperparameters.values))
    oracle = _grid_oracle(tmp_path / "resumed")
    oracle.reload()
    retried = oracle.create_trial("tuner0")
    assert retried.trial_id == running.trial_id and retried.hyperparameters.values == running.hyperparameters.values
    _finish(oracle, retried)
    seen += _run_to_the_end(oracle)
    assert seen == expected


def test_consecutive_failures_stop_the_search_for_every_worker(tmp_path):
    oracle = _grid_oracle(tmp_path, max_consecutive_failed_trials=2)
    first = oracle.create_trial("worker0")
    _finish(oracle, first, "FAILED")
    ok = oracle.create_trial("worker0")
    _finish(oracle, ok)  # a completed trial resets the count
    for _ in range(2):
        trial = oracle.create_trial("worker0")
        trial.message = "Traceback ...\nValueError: boom"
        _finish(oracle, trial, "FAILED")
    assert oracle.stop_reason == "2 consecutive trials failed (2, 3); the last one: ValueError: boom"
    assert oracle.create_trial("worker1").status == "STOPPED"
    assert json.load(open(tmp_path / "trials" / "trial_3" / "trial.json"))["status"] == "FAILED"  # saved


def test_hyperband_assigns_the_epochs_and_grid_counts_its_combinations(tmp_path):
    import keras_tuner

    space = _write(tmp_path / "space.yaml", "epochs: {type: int, min: 1, max: 3}\n")
    config = TuneRunConfig(train_file="t.csv", tuner="hyperband", max_trials=30, search_space=space)
    search_space = load_search_space(space)
    oracle = tuning.make_oracle(config, search_space)
    assert "epochs" not in oracle.get_space().values and oracle.max_epochs == 3
    assert tuning.planned_trials(oracle) == 6  # brackets of 3 trials (1 epoch, then the best for 3) and 2 (3)
    hypermodel = tuning.BertHyperModel(config, search_space)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    hp.values.update({"tuner/epochs": 3, "tuner/initial_epoch": 1, "tuner/bracket": 1, "tuner/round": 1})
    assert hypermodel.run_config(hp).epochs == 3  # a trial is a whole train_cls run of tuner/epochs epochs

    grid = _write(tmp_path / "grid.yaml", "learning_rate: {type: choice, values: [1.0e-4, 5.0e-5]}\n"
                                          "epochs: {type: int, min: 2, max: 4}\nwarmup_ratio: 0.1\n"
                                          "weight_decay: null\ndropout: null\nlayerwise_lr_decay: null\n"
                                          "batch_size: {type: choice, values: [16, 32]}\n")
    config = TuneRunConfig(train_file="t.csv", tuner="grid", max_trials=50, search_space=grid)
    assert tuning.planned_trials(tuning.make_oracle(config, load_search_space(grid))) == 2 * 3 * 2
    hp.values["learning_rate"] = 5.0
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="invalid sampled value: run config: field "
                                                                  "'learning_rate' must be in \\(0, 1\\), found 5.0"):
        hypermodel.run_config(hp)


# --- real searches on a tiny model --------------------------------------------------------------


def _tune_config(tmp_path, model_dir, train, space_text, **overrides):
    fields = dict(model=model_dir, train_file=train, max_seq_length=32, max_trials=2,
                  search_space=_write(tmp_path / "space.yaml", space_text), output_dir=str(tmp_path / "search"),
                  log_dir=str(tmp_path / "tb"), log_every_n_steps=2, seed=7)
    fields.update(overrides)
    return TuneRunConfig(**fields)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _hparams_session(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = EventAccumulator(log_dir, size_guidance={"tensors": 0})
    accumulator.Reload()
    event = accumulator.Tensors("_hparams_/session_start_info")[0]
    content = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    values = {k: (v.number_value if v.HasField("number_value") else v.string_value) for k, v in info.hparams.items()}
    scalars = {tag: float(np.asarray(tf_make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto)))
               for tag in accumulator.Tags()["tensors"] if not tag.startswith("_hparams_")
               and accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}
    assert event.step == 0
    return values, scalars


def tf_make_ndarray(proto):
    import tensorflow as tf

    return tf.make_ndarray(proto)


SPACE = ("learning_rate: {type: float, min: 3e-3, max: 3e-2, sampling: log}\n"
         "batch_size: {type: choice, values: [8, 16]}\n"
         "epochs: {type: int, min: 1, max: 2}\n"
         "warmup_ratio: 0.0\n"
         "weight_decay: null\n"
         "dropout: null\n"
         "layerwise_lr_decay: null\n")


@pytest.mark.slow
def test_search_writes_results_tensorboard_and_a_reproducible_best(tmp_path, tiny_model_dir, capsys):
    train = write_sentiment_csv(tmp_path / "train.csv", 96, seed=1)
    config = _tune_config(tmp_path, tiny_model_dir, train, SPACE, tuner="bayesian", objective="val_macro_f1",
                          export="retrain")
    result = run_search(config)
    out = capsys.readouterr().out
    search = tmp_path / "search"

    rows = _rows(search / "results.csv")
    assert [r["trial_id"] for r in rows] == ["0", "1"] and all(r["status"] == "COMPLETED" for r in rows)
    assert list(rows[0]) == ["trial_id", "status", "val_macro_f1", "learning_rate", "warmup_ratio", "batch_size",
                             "epochs", "steps", "seconds", "worker", "error"]
    for row in rows:  # steps follow the sampled batch size and epochs (86 training examples)
        assert int(row["steps"]) == int(row["epochs"]) * -(-86 // int(row["batch_size"]))
        assert float(row["seconds"]) > 0 and row["worker"] == "tuner0"
    best = max(rows, key=lambda r: float(r["val_macro_f1"]))
    assert result["best_trial"] == best["trial_id"]
    assert result["best_value"] == pytest.approx(float(best["val_macro_f1"]))
    assert "| trial_id | status | val_macro_f1 |" in (search / "results.md").read_text()
    assert "trial 1 of 2 (0) started on tuner0: learning_rate=" in out
    assert "trial 2 of 2 (1) val_macro_f1=" in out and "best val_macro_f1=" in out and "left (0 trials)" in out

    # best_hparams.yaml is a train_cls config; retraining with it reproduces the best trial exactly
    best_config = ClassifierRunConfig.from_args(["--config", str(search / "best_hparams.yaml")])
    assert best_config.learning_rate == pytest.approx(float(best["learning_rate"]))
    assert (best_config.batch_size, best_config.epochs) == (int(best["batch_size"]), int(best["epochs"]))
    assert best_config.metric_for_best == "val_macro_f1" and best_config.train_file == train
    exported = json.loads((search / "best_model" / "metrics.json").read_text())
    assert exported["best_trial"] == best["trial_id"] and exported["export"] == "retrain"
    assert exported["validation"]["macro_f1"] == result["best_value"]
    assert exported["optimizer_steps"] == int(best["steps"])
    assert (search / "best_model" / "saved_model" / "1" / "saved_model.pb").exists()
    assert not (search / "trials" / f"trial_{1 - int(best['trial_id'])}" / "checkpoint.weights.h5").exists()

    # TensorBoard: one HParams session per trial, with the sampled values and the final metrics
    for row in rows:
        values, scalars = _hparams_session(str(tmp_path / "tb" / row["trial_id"]))
        assert values["learning_rate"] == pytest.approx(float(row["learning_rate"]))
        assert values["batch_size"] == int(row["batch_size"]) and values["epochs"] == int(row["epochs"])
        assert scalars["val_macro_f1"] == pytest.approx(float(row["val_macro_f1"]), abs=1e-6)
        assert scalars["optimizer_steps"] == int(row["steps"])
        assert os.listdir(tmp_path / "tb" / row["trial_id"] / "validation")  # the per-epoch curves

    # the same command again: nothing left to run, nothing exported twice
    again = run_search(config)
    out = capsys.readouterr().out
    assert again["best_trial"] == result["best_trial"] and "all 2 trials are done" in out
    assert "exported before" in out and "started on" not in out
    # other settings are refused instead of silently mixing two searches
    with pytest.raises(tuning.SearchError, match=r"other settings \(objective: 'val_macro_f1' -> 'val_accuracy'\)"):
        run_search(_tune_config(tmp_path, tiny_model_dir, train, SPACE, tuner="bayesian", export="none"))


@pytest.mark.slow
def test_failed_trials_are_recorded_and_too_many_in_a_row_stop_the_search(tmp_path, tiny_model_dir, capsys):
    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=2)
    # grid order: (5.0, 0) and (5.0, 1e30) are invalid, (0.01, 0) trains, (0.01, 1e30) diverges to NaN
    space = ("learning_rate: {type: choice, values: [5.0, 0.01]}\n"
             "weight_decay: {type: choice, values: [0.0, 1.0e30]}\n"
             "batch_size: 16\nepochs: 1\nwarmup_ratio: 0.0\ndropout: null\nlayerwise_lr_decay: null\n")
    config = _tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=4, export="none",
                          executions_per_trial=2)
    result = run_search(config)
    rows = _rows(tmp_path / "search" / "results.csv")
    assert [(r["learning_rate"], r["weight_decay"], r["status"]) for r in rows] == [
        ("5.0", "0.0", "FAILED"), ("5.0", "1e+30", "FAILED"), ("0.01", "0.0", "COMPLETED"),
        ("0.01", "1e+30", "FAILED")]
    assert "invalid sampled value: run config: field 'learning_rate' must be in (0, 1), found 5.0" in rows[0]["error"]
    assert "the training loss is nan at epoch 1" in rows[3]["error"]
    assert result["completed"] == 1 and result["failed"] == 3 and result["best_trial"] == "2"
    out = capsys.readouterr().out
    assert "trial 1 of 4 (0) FAILED: invalid sampled value" in out
    # the completed trial ran twice (seeds 7 and 8); its objective is the mean, its weights the best run's
    record = json.loads((tmp_path / "search" / "trials" / "trial_2" / "trial_run.json").read_text())
    accuracies = [run["val_accuracy"] for run in record["executions"]]
    assert len(accuracies) == 2 and float(rows[2]["val_accuracy"]) == pytest.approx(np.mean(accuracies))
    seeds = [json.loads((tmp_path / "search" / "trials" / "trial_2" / f"execution{i}" / "metrics.json").read_text())
             ["config"]["seed"] for i in range(2)]
    assert seeds == [7, 8] and (tmp_path / "search" / "trials" / "trial_2" / "checkpoint.weights.h5").exists()
    assert {"execution0", "execution1"} <= set(os.listdir(tmp_path / "tb" / "2"))

    # --overwrite starts over; two failures in a row now stop the search with a clear message
    with pytest.raises(tuning.SearchError) as error:
        run_search(_tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=4, export="none",
                                overwrite=True, max_consecutive_failures=2))
    assert "search stopped: 2 consecutive trials failed (0, 1); the last one: invalid sampled value" in str(error.value)
    assert "--overwrite to start over" in str(error.value)
    rows = _rows(tmp_path / "search" / "results.csv")
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    values, _ = _hparams_session(str(tmp_path / "tb" / "1"))  # failed trials are HParams sessions too
    assert values["weight_decay"] == 1e30
