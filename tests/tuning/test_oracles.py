"""The oracles (tfbert.tuning.oracles): a resumable grid, consecutive failures, Hyperband's epochs, planned trials."""

import dataclasses
import json

import pytest

from tfbert import tuning
from tfbert.tuning import TuneRunConfig, load_search_space


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


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


def test_equal_scores_name_the_earlier_trial_best_after_any_reload(tmp_path):
    """A finished search run again reloads its trials in the order their files are listed: a tie must not
    name another best trial (and export it again)."""
    oracle = _grid_oracle(tmp_path)
    for score in (0.5, 0.5, 0.25):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    running = oracle.create_trial("tuner1")  # not completed: ranked after every completed trial
    for order in (["0", "1", "2", "3"], ["3", "2", "1", "0"], ["1", "3", "2", "0"]):  # as a reload may list them
        oracle.trials = {trial_id: oracle.trials[trial_id] for trial_id in order}
        assert [t.trial_id for t in oracle.get_best_trials(4)] == ["0", "1", "2", running.trial_id]
        assert tuning.oracles.best_completed(oracle).trial_id == "0"
    reloaded = _grid_oracle(tmp_path)
    reloaded.reload()
    assert tuning.oracles.best_completed(reloaded).trial_id == "0"


def test_hyperband_assigns_the_epochs_and_grid_counts_its_combinations(tmp_path):
    import keras_tuner

    space = _write(tmp_path / "space.yaml", "epochs: {type: int, min: 1, max: 3}\n")
    config = TuneRunConfig(train_file="t.csv", tuner="hyperband", max_trials=30, search_space=space)
    search_space = load_search_space(space)
    oracle = tuning.make_oracle(config, search_space)
    assert "epochs" not in oracle.get_space().values and oracle.max_epochs == 3
    # one pass of the brackets is 6 trials (3 of 1 epoch, then the best for 3; and 2 of 3 epochs); passes
    # follow one another up to --max_trials (with one pass, --max_trials 20 ran 6 trials, and 2 of 8 with
    # epochs fixed at 2)
    assert tuning.planned_trials(oracle) == 30
    for max_trials in (8, 3):
        short = tuning.make_oracle(dataclasses.replace(config, max_trials=max_trials), search_space)
        short._set_project_dir(str(tmp_path / f"passes{max_trials}"), "trials")
        trials = _run_to_the_end(short)
        assert tuning.planned_trials(short) == max_trials == len(trials)
        assert len({v["learning_rate"] for v in trials if v["tuner/round"] == 0}) == len(
            [v for v in trials if v["tuner/round"] == 0])  # every first round draws new values
    fixed = _write(tmp_path / "fixed_epochs.yaml", "epochs: 2\n")
    two_epochs = tuning.make_oracle(TuneRunConfig(train_file="t.csv", tuner="hyperband", max_trials=5,
                                                  search_space=fixed), load_search_space(fixed))
    two_epochs._set_project_dir(str(tmp_path / "two_epochs"), "trials")
    assert tuning.planned_trials(two_epochs) == 5 == len(_run_to_the_end(two_epochs))
    # a search saved with one pass (before tfbert ran more) goes on to --max_trials when resumed
    old = tuning.make_oracle(dataclasses.replace(config, max_trials=20), search_space)
    old.hyperband_iterations = 1
    old._set_project_dir(str(tmp_path / "one_pass"), "trials")
    assert len(_run_to_the_end(old)) == 6
    old.save()
    resumed = tuning.make_oracle(dataclasses.replace(config, max_trials=20), search_space)
    resumed._set_project_dir(str(tmp_path / "one_pass"), "trials")
    resumed.reload()
    assert tuning.planned_trials(resumed) == 20 and len(_run_to_the_end(resumed)) == 14
    assert json.loads((tmp_path / "one_pass" / "trials" / "oracle.json").read_text())["hyperband_iterations"] == 20
    # over discrete values Hyperband stops when a first round cannot draw new ones: announced as it runs
    for choices, trials in (("[1.0e-4, 5.0e-5]", 2), ("[1.0e-4, 5.0e-5, 3.0e-5]", 4)):
        discrete = _write(tmp_path / "discrete.yaml", f"epochs: {{type: int, min: 1, max: 3}}\nbatch_size: 16\n"
                                                      f"learning_rate: {{type: choice, values: {choices}}}\n"
                          + "".join(f"{name}: null\n" for name in ("warmup_ratio", "weight_decay", "dropout",
                                                                   "layerwise_lr_decay")))
        discrete_oracle = tuning.make_oracle(TuneRunConfig(train_file="t.csv", tuner="hyperband", max_trials=30,
                                                           search_space=discrete), load_search_space(discrete))
        discrete_oracle._set_project_dir(str(tmp_path / f"hyperband{trials}"), "trials")
        assert tuning.planned_trials(discrete_oracle) == trials == len(_run_to_the_end(discrete_oracle))
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
    # a random search over discrete values alone stops when it has tried each combination: announced so
    config = TuneRunConfig(train_file="t.csv", tuner="random", max_trials=50, search_space=grid)
    assert tuning.planned_trials(tuning.make_oracle(config, load_search_space(grid))) == 2 * 3 * 2
    nothing = _write(tmp_path / "nothing.yaml", "".join(f"{name}: null\n" for name in load_search_space()))
    config = TuneRunConfig(train_file="t.csv", tuner="random", max_trials=3, search_space=nothing)
    assert tuning.planned_trials(tuning.make_oracle(config, load_search_space(nothing))) == 1  # ran 1 of "3"
    config = TuneRunConfig(train_file="t.csv", tuner="random", max_trials=3)  # continuous ranges: max_trials
    assert tuning.planned_trials(tuning.make_oracle(config, load_search_space())) == 3
    hp.values["learning_rate"] = 5.0
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="invalid sampled value: run config: field "
                                                                  "'learning_rate' must be in \\(0, 1\\), found 5.0"):
        hypermodel.run_config(hp)
