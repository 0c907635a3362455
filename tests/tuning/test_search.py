"""Small real searches on a tiny model (tfbert.tuning.search): results, TensorBoard, export, failures, resuming."""

import csv
import json
import os
import re

import numpy as np
import pytest

from conftest import write_sentiment_csv
from tfbert import tuning
from tfbert.training.run_config import ClassifierRunConfig
from tfbert.tuning import TuneRunConfig, run_search


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _tune_config(tmp_path, model_dir, train, space_text, **overrides):
    fields = dict(model=model_dir, train_file=train, max_seq_length=32, max_trials=2,
                  search_space=_write(tmp_path / "space.yaml", space_text), output_dir=str(tmp_path / "search"),
                  log_dir=str(tmp_path / "tb"), log_every_n_steps=2, seed=7)
    fields.update(overrides)
    return TuneRunConfig(**fields)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _hparams_session_folders(log_root):
    """The folders under `log_root` that hold an HParams session (a row of TensorBoard's HParams tab)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sessions = set()
    for folder, _, files in os.walk(log_root):
        if any(".tfevents." in name for name in files):
            events = EventAccumulator(folder, size_guidance={"tensors": 0})
            events.Reload()
            if "_hparams_/session_start_info" in events.Tags()["tensors"]:
                sessions.add(os.path.relpath(folder, log_root))
    return sessions


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
# fields of other kinds: names (the schedule) and the length the data is cut at
SEARCHED = SPACE + ("lr_scheduler_type: {type: choice, values: [linear, cosine]}\n"
                    "max_seq_length: {type: choice, values: [8, 32]}\n")


@pytest.mark.slow
def test_search_writes_results_tensorboard_and_a_reproducible_best(tmp_path, tiny_model_dir, capsys):
    train = write_sentiment_csv(tmp_path / "train.csv", 96, seed=1)
    config = _tune_config(tmp_path, tiny_model_dir, train, SEARCHED, tuner="bayesian", objective="val_macro_f1",
                          export="retrain")
    result = run_search(config)
    out = capsys.readouterr().out
    search = tmp_path / "search"

    rows = _rows(search / "results.csv")
    assert [r["trial_id"] for r in rows] == ["0", "1"] and all(r["status"] == "COMPLETED" for r in rows)
    assert list(rows[0]) == ["trial_id", "status", "val_macro_f1", "learning_rate", "warmup_ratio", "batch_size",
                             "epochs", "lr_scheduler_type", "max_seq_length", "steps", "seconds", "worker", "error"]
    for row in rows:  # steps follow the sampled batch size and epochs (86 training examples)
        assert int(row["steps"]) == int(row["epochs"]) * -(-86 // int(row["batch_size"]))
        assert float(row["seconds"]) > 0 and row["worker"] == "tuner0"
        assert row["lr_scheduler_type"] in ("linear", "cosine")
        # each trial says how its own length cuts the data (the search's data line gave the flag's, 32)
        assert re.search(rf"^data: \d+ of 86 training examples truncated at {row['max_seq_length']} tokens$", out,
                         re.MULTILINE)
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
    assert (best_config.lr_scheduler_type, best_config.max_seq_length) == (best["lr_scheduler_type"],
                                                                           int(best["max_seq_length"]))
    assert best_config.metric_for_best == "val_macro_f1" and best_config.train_file == train
    exported = json.loads((search / "best_model" / "metrics.json").read_text())
    assert exported["best_trial"] == best["trial_id"] and exported["export"] == "retrain"
    assert exported["validation"]["macro_f1"] == result["best_value"]
    assert exported["optimizer_steps"] == int(best["steps"])
    assert (search / "best_model" / "saved_model" / "1" / "saved_model.pb").exists()
    # the paths printed are where the files end up, not the hidden folder they are written in first
    assert f"SavedModel for TF Serving: {search / 'best_model' / 'saved_model' / '1'}\n" in out
    assert f"outputs: {search / 'best_model'} (metrics.json, " in out and ".best_model-" not in out
    assert not (search / "trials" / f"trial_{1 - int(best['trial_id'])}" / "checkpoint.weights.h5").exists()

    # TensorBoard: one HParams session per trial, with the sampled values and the final metrics
    for row in rows:
        values, scalars = _hparams_session(str(tmp_path / "tb" / row["trial_id"]))
        assert values["learning_rate"] == pytest.approx(float(row["learning_rate"]))
        assert values["batch_size"] == int(row["batch_size"]) and values["epochs"] == int(row["epochs"])
        assert values["lr_scheduler_type"] == row["lr_scheduler_type"]  # a string in the HParams tab
        assert scalars["val_macro_f1"] == pytest.approx(float(row["val_macro_f1"]), abs=1e-6)
        assert scalars["optimizer_steps"] == int(row["steps"])
        assert os.listdir(tmp_path / "tb" / row["trial_id"] / "validation")  # the per-epoch curves
    # ... and no other session: the best model (a trial's weights) added a row of all its config fields
    assert _hparams_session_folders(tmp_path / "tb") == {row["trial_id"] for row in rows}

    # the same command again: nothing left to run, nothing exported twice
    again = run_search(config)
    out = capsys.readouterr().out
    assert again["best_trial"] == result["best_trial"] and "all 2 trials are done" in out
    assert "exported before" in out and "started on" not in out
    # with --max_trials below the trials done (it printed "2 of 1 trials done" and "all 1 trials are done")
    import dataclasses

    assert run_search(dataclasses.replace(config, max_trials=1))["best_trial"] == result["best_trial"]
    out = capsys.readouterr().out
    assert ": 2 trials done, more than --max_trials 1\n" in out and "\n2 trials are done; nothing to run" in out
    # other settings are refused instead of silently mixing two searches
    with pytest.raises(tuning.SearchError, match=r"other settings \(objective: 'val_macro_f1' -> 'val_accuracy'\)"):
        run_search(_tune_config(tmp_path, tiny_model_dir, train, SEARCHED, tuner="bayesian", export="none"))
    # the same data under another path (moved, or named from another working directory) is the same search
    import shutil

    os.makedirs(tmp_path / "moved")
    moved = shutil.copy(train, tmp_path / "moved" / "train.csv")
    again = run_search(_tune_config(tmp_path, tiny_model_dir, str(moved), SEARCHED, tuner="bayesian",
                                    objective="val_macro_f1", export="retrain"))
    assert again["best_trial"] == result["best_trial"] and "all 2 trials are done" in capsys.readouterr().out
    # and the same data file with other contents is not (trials of two datasets ranked together)
    with open(train, "a", encoding="utf-8") as f:
        f.write("a new row,pos\n")
    with pytest.raises(tuning.SearchError, match=r"other settings \(data.train_file: 'sha256:[0-9a-f]{64}' -> "
                                                 r"'sha256:[0-9a-f]{64}'; data.\* is the contents of a data file\)"):
        run_search(config)


@pytest.mark.slow
def test_the_best_model_is_swapped_in_whole_and_a_killed_retrain_resumes(tmp_path, tiny_model_dir, capsys,
                                                                         monkeypatch):
    """A new export is built in a hidden folder: the previous best_model/ stays whole (a server may poll its
    saved_model/) until the new one is swapped in with the next version number, and a retrain stopped
    after an epoch resumes from that folder's backup instead of starting over."""
    import keras

    from tfbert import fileio
    from tfbert.training import runner

    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=3)
    space = ("learning_rate: 0.01\nbatch_size: 16\nepochs: 2\nwarmup_ratio: 0.0\nweight_decay: null\n"
             "dropout: null\nlayerwise_lr_decay: null\n")
    search, best = tmp_path / "search", tmp_path / "search" / "best_model"
    run_search(_tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=1, export="best_trial"))
    assert os.listdir(best / "saved_model") == ["1"]
    first_graph = tmp_path / "first_saved_model.pb"  # (a link to the file: is it the same one at the end?)
    os.link(best / "saved_model" / "1" / "saved_model.pb", first_graph)
    (best / "evaluations" / "dev.csv").mkdir(parents=True)  # what evaluate.py writes there, kept too
    (best / "evaluations" / "dev.csv" / "metrics.json").write_text("{}", encoding="utf-8")
    # the best model's metrics.json says what its trial's training did, as a run's does
    trial = json.loads((search / "trials" / "trial_0" / "metrics.json").read_text())
    exported = json.loads((best / "metrics.json").read_text())
    assert {k: exported.get(k) for k in runner.TRAINING_FACTS} == {k: trial.get(k) for k in runner.TRAINING_FACTS}
    # (TRAINING_FACTS names every fact of the runner's summary, in its order: the keys from best_metric on)
    keys = list(trial)
    facts = keys[keys.index("best_metric"):][:len(runner.TRAINING_FACTS)]
    assert facts[:-1] == list(runner.TRAINING_FACTS[:-1]) and facts[-1] not in runner.TRAINING_FACTS[:-1]
    assert exported["parameters"]["trainable"] > 0 and exported["replicas"] == 1

    class Killed(Exception):
        pass

    class KillAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Killed  # after BackupAndRestore has saved the epoch

    real_fit = runner.fit_and_evaluate
    monkeypatch.setattr(runner, "fit_and_evaluate",
                        lambda *a, **k: real_fit(*a, extra_callbacks=(KillAfterFirstEpoch(),), **k))
    retrain = _tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=1, export="retrain")
    with pytest.raises(Killed):
        run_search(retrain)
    assert json.loads((best / "metrics.json").read_text())["export"] == "best_trial"  # the old one, whole
    assert os.listdir(best / "saved_model") == ["1"]
    assert (search / ".best_model-trial0-retrain" / "backup" / "training_metadata.json").exists()

    monkeypatch.setattr(runner, "fit_and_evaluate", real_fit)
    at_swap = []
    real_replace = fileio.replace_dir

    def recording(new, final, aside):  # (hf_model/ is swapped in the same way, inside the hidden folder)
        if os.path.basename(final) == "best_model":
            at_swap.append(sorted(os.listdir(os.path.join(final, "saved_model"))))
        real_replace(new, final, aside)

    monkeypatch.setattr(fileio, "replace_dir", recording)
    capsys.readouterr()
    run_search(retrain)
    out = capsys.readouterr().out
    assert "1 epoch(s) already done" in out and "Epoch 2/2" in out and "Epoch 1/2" not in out
    assert at_swap == [["1"]]  # the old version was there until the new folder replaced it
    exported = json.loads((best / "metrics.json").read_text())
    assert exported["export"] == "retrain" and exported["epochs_run"] == 1
    # a new number, so that a polling server loads it; the earlier version is still there to serve
    assert sorted(os.listdir(best / "saved_model")) == ["1", "2"]
    assert os.path.samefile(best / "saved_model" / "1" / "saved_model.pb", first_graph)
    assert (best / "evaluations" / "dev.csv" / "metrics.json").read_text() == "{}"
    assert f"SavedModel for TF Serving: {best / 'saved_model' / '2'}\n" in out and f"outputs: {best} (" in out
    assert exported["saved_model"] == str(best / "saved_model" / "2")
    assert "best_model" not in _hparams_session_folders(tmp_path / "tb")  # retrained: still no session of its own
    assert exported["config"]["output_dir"] == str(best)  # the files name where they are, not the hidden folder
    assert ClassifierRunConfig.from_args(["--config", str(best / "config.yaml")]).output_dir == str(best)
    assert not [name for name in os.listdir(search) if name.startswith(".best_model")]


@pytest.mark.slow
def test_the_best_trial_of_a_loss_scaled_search_loads_with_its_optimizer_state(tmp_path, tiny_model_dir,
                                                                              monkeypatch):
    # mixed_float16: Keras' LossScaleOptimizer, built twice, had 2 variables more than the trial saved, so
    # Keras skipped the optimizer's state with a warning (the weights themselves loaded)
    import warnings

    train = write_sentiment_csv(tmp_path / "train.csv", 24, seed=3)
    space = ("learning_rate: 0.01\nbatch_size: 8\nepochs: 1\nwarmup_ratio: 0.0\nweight_decay: null\n"
             "dropout: null\nlayerwise_lr_decay: null\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_search(_tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=1,
                                export="best_trial", mixed_precision="mixed_float16"))
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    best = tmp_path / "search" / "best_model"
    assert os.listdir(best / "saved_model") == ["1"]

    # --overwrite starts the search over: the best model stays, served, until the new search's best replaces it
    # (it was deleted at the start), and its versions and evaluations/ (evaluate.py's) are carried over
    from tfbert.training import runner

    (best / "evaluations" / "dev.csv").mkdir(parents=True)
    (best / "evaluations" / "dev.csv" / "metrics.json").write_text("{}", encoding="utf-8")
    real_fit, during = runner.fit_and_evaluate, []
    monkeypatch.setattr(runner, "fit_and_evaluate",
                        lambda *a, **k: during.append((os.listdir(best / "saved_model"),
                                                       (best / ".previous_search").exists())) or real_fit(*a, **k))
    run_search(_tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=1, export="best_trial",
                            mixed_precision="mixed_float16", overwrite=True))
    assert during == [(["1"], True)]  # the trial's training: the old best model there, marked as the old search's
    assert not (best / ".previous_search").exists()
    assert sorted(os.listdir(best / "saved_model")) == ["1", "2"]
    assert (best / "evaluations" / "dev.csv" / "metrics.json").read_text() == "{}"


def test_failed_trials_are_recorded_and_too_many_in_a_row_stop_the_search(tmp_path, tiny_model_dir, capsys):
    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=2)
    # grid order: weight decays of 1e30 and 2e30 diverge to NaN, 0 trains (a value no run takes, such as a
    # learning rate of 5, is refused before the first trial: tests/tuning/test_settings.py)
    space = ("learning_rate: 0.01\nweight_decay: {type: choice, values: [1.0e30, 2.0e30, 0.0]}\n"
             "batch_size: 16\nepochs: 1\nwarmup_ratio: 0.0\ndropout: null\nlayerwise_lr_decay: null\n")
    config = _tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=3, export="none",
                          executions_per_trial=2)
    result = run_search(config)
    rows = _rows(tmp_path / "search" / "results.csv")
    assert [(r["weight_decay"], r["status"]) for r in rows] == [("1e+30", "FAILED"), ("2e+30", "FAILED"),
                                                                ("0.0", "COMPLETED")]
    assert "the training loss is nan at epoch 1" in rows[0]["error"]
    assert result["completed"] == 1 and result["failed"] == 2 and result["best_trial"] == "2"
    captured = capsys.readouterr()
    out = captured.out
    assert "\ntrial 1 of 3 (0) FAILED: " in out and "the training loss is nan at epoch 1" in out
    # the whole traceback in the trial's error.log, named on the trial's line; not in the search's output
    error_log = tmp_path / "search" / "trials" / "trial_0" / "error.log"
    assert f"(traceback: {error_log})" in out and "Traceback (most recent call last)" in error_log.read_text()
    assert "hypermodel.py" in error_log.read_text() and "Traceback" not in captured.err + out
    # the completed trial ran twice (seeds 7 and 8); its objective is the mean, its weights the best run's
    record = json.loads((tmp_path / "search" / "trials" / "trial_2" / "trial_run.json").read_text())
    accuracies = [run["val_accuracy"] for run in record["executions"]]
    # best_hparams.yaml reproduces the best execution: its seed, not the first execution's
    best_hparams = ClassifierRunConfig.from_args(["--config", str(tmp_path / "search" / "best_hparams.yaml")])
    assert best_hparams.seed == 7 + record["best_execution"]
    assert len(accuracies) == 2 and float(rows[2]["val_accuracy"]) == pytest.approx(np.mean(accuracies))
    seeds = [json.loads((tmp_path / "search" / "trials" / "trial_2" / f"execution{i}" / "metrics.json").read_text())
             ["config"]["seed"] for i in range(2)]
    assert seeds == [7, 8] and (tmp_path / "search" / "trials" / "trial_2" / "checkpoint.weights.h5").exists()
    assert {"execution0", "execution1"} <= set(os.listdir(tmp_path / "tb" / "2"))

    # --overwrite starts over; two failures in a row now stop the search with a clear message
    with pytest.raises(tuning.SearchError) as error:
        run_search(_tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=3, export="none",
                                overwrite=True, max_consecutive_failures=2))
    assert "search stopped: 2 consecutive trials failed (0, 1); the last one: " in str(error.value)
    assert "the training loss is nan at epoch 1" in str(error.value)
    assert str(error.value).endswith("Fix the search space or flags and run again with --overwrite (a search resumes "
                                     "only with the settings it started with); the same command again goes on with "
                                     "the next trials (for a failure that will not recur)")
    rows = _rows(tmp_path / "search" / "results.csv")
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    values, _ = _hparams_session(str(tmp_path / "tb" / "1"))  # failed trials are HParams sessions too
    assert values["weight_decay"] == 2e30
    # the same command again goes on with the next trial, as the message says
    again = run_search(_tune_config(tmp_path, tiny_model_dir, train, space, tuner="grid", max_trials=3, export="none",
                                    max_consecutive_failures=2))
    assert again["best_trial"] == "2"
    assert [r["status"] for r in _rows(tmp_path / "search" / "results.csv")] == ["FAILED", "FAILED", "COMPLETED"]


def test_a_second_search_on_the_same_folder_is_refused(tmp_path, tiny_model_dir):
    """Two searches in one folder would rank each other's trials and write the same files: refused at once."""
    from tfbert import fileio

    config = _tune_config(tmp_path, tiny_model_dir, str(tmp_path / "train.csv"), SPACE)
    with fileio.lock_dir(str(tmp_path / "search")):
        with pytest.raises(fileio.DirectoryInUse, match=r"search: in use by another process \(pid\d+@.*\); a "
                                                        "second search there would mix its files"):
            run_search(config)
    assert not (tmp_path / "search" / "trials").exists()


@pytest.mark.parametrize("flags, space_extra, expected", [
    (dict(freeze_layers=5), "", r"--freeze_layers: the model has 2 encoder layers, found 5"),
    (dict(max_seq_length=100), "", r"max_seq_length: 100 exceeds the model's max_position_embeddings \(64, .*"
                                   r"tiny-bert\); pass --max_seq_length 64 or less"),
    (dict(), "max_seq_length: {type: choice, values: [32, 100]}\n",
     r"space.yaml: max_seq_length: 100 exceeds the model's max_position_embeddings \(64, .*tiny-bert\)"),
    # a group of batches per update that no trial fills (the smallest batch size, 8, and the most epochs, 2)
    (dict(), "gradient_accumulation_steps: {type: choice, values: [1, 40]}\n",
     r"space.yaml: gradient_accumulation_steps: 40 batches per optimizer update, but a trial has at most \d batches "
     r"per epoch \(batch_size 8\) x 2 epochs: no trial with it would make an update; lower it \(any value above "
     r"\d+ fails the same\)"),
    (dict(gradient_accumulation_steps=40), "", r"^--gradient_accumulation_steps: 40 batches per optimizer update"),
])
def test_settings_the_model_cannot_take_fail_before_the_first_trial(tmp_path, tiny_model_dir, flags, space_extra,
                                                                     expected):
    """Checked from the checkpoint's config.json once, not found by three failed trials; a search-space
    value is named with its file (the flag's advice would not apply)."""
    train = write_sentiment_csv(tmp_path / "train.csv", 32, seed=1)
    config = _tune_config(tmp_path, tiny_model_dir, train, SPACE + space_extra, **flags)
    with pytest.raises(ValueError, match=expected):
        run_search(config)
    assert not os.path.exists(tmp_path / "search" / "trials")
