"""Hyperparameter search over training runs of any task with KerasTuner: search space, hypermodel, tuner.

A trial is a `train_cls.py` run whose recipe values (learning rate, batch size, epochs, ...) come
from the tuner: `BertHyperModel.build` calls `runner.start_run` (seed, datasets, compiled
`BertClassifier`) and `BertHyperModel.fit` calls `runner.fit_and_evaluate` (the train_cls
callbacks, best-epoch checkpoint, exact validation metrics). The data and the tokenizer are
loaded once per search and shared by the trials.

    config = TuneRunConfig(train_file="train.csv", max_trials=10, objective="val_macro_f1")
    result = run_search(config)        # writes <output_dir>/results.csv, best_hparams.yaml, best_model/
    result["best_value"], result["best_hparams"]

Outputs of a search (`<output_dir>` defaults to `runs/<search_name>`):
    trials/               the KerasTuner project: oracle.json, trial_<id>/{trial.json, checkpoint.weights.h5,
                          metrics.json, trial_run.json}
    results.csv, results.md   one row per trial (hyperparameters, objective, steps, seconds, status, error)
    best_hparams.yaml     the best trial as a full ClassifierRunConfig: `train_cls.py --config best_hparams.yaml`
    best_model/           the best model as a train_cls run directory (saved_model/, hf_model/, ...)
    search.json           the settings the search started with; a resumed search must match them
TensorBoard: `<log_dir>/<trial_id>/` per trial (train/ and validation/ curves, and the HParams
session with the trial's values and metrics), `<log_dir>/best_model/` for the export.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import socket
import time
import traceback
import typing
from typing import Any

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
import yaml
from keras_tuner.engine.trial import TrialStatus

from tfbert import fileio
from tfbert.errors import TfbertError
from tfbert.tasks import task_for
from tfbert.training import distribution, runner
from tfbert.training.run_config import (ClassifierRunConfig, RunConfig, TokenClassifierRunConfig, read_yaml_mapping,
                                        without_placement)

TUNERS = ("random", "bayesian", "hyperband", "grid")
EXPORTS = ("best_trial", "retrain", "none")
ROLES = ("chief", "worker")

# The recipe fields a search space may set; the data, model and output fields stay as the flags say.
TUNABLE_FIELDS = ("learning_rate", "warmup_ratio", "weight_decay", "batch_size", "epochs", "dropout",
                  "layerwise_lr_decay", "max_seq_length", "gradient_accumulation_steps")
_FIELD_TYPES = {"learning_rate": float, "warmup_ratio": float, "weight_decay": float, "batch_size": int,
                "epochs": int, "dropout": float, "layerwise_lr_decay": float, "max_seq_length": int,
                "gradient_accumulation_steps": int}

DEFAULT_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "min": 2e-5, "max": 2e-4, "sampling": "log"},
    "warmup_ratio": {"type": "float", "min": 0.0, "max": 0.2},
    "weight_decay": {"type": "float", "min": 0.0, "max": 0.1},
    "batch_size": {"type": "choice", "values": [16, 32]},
    "dropout": {"type": "float", "min": 0.0, "max": 0.2},
    "epochs": {"type": "int", "min": 1, "max": 3},
    "layerwise_lr_decay": {"type": "float", "min": 0.8, "max": 1.0},
}

# With no data flags the search runs on BBC News; these keep that default search under 20 minutes
# on 2 CPU cores (8 trials of 1-3 epochs over 320 articles cut at 64 tokens).
DEFAULT_DATA_MAX_TRAIN_EXAMPLES = 320
DEFAULT_DATA_MAX_SEQ_LENGTH = 64


class SearchError(TfbertError, RuntimeError):
    """A search that cannot start or cannot go on; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass
class SearchSettings:
    """The search fields, mixed into a task's run config by `search_config_for` (`TuneRunConfig` for
    classification, `TuneNerRunConfig` for NER): the training flags (data, model, the fixed recipe
    values) plus these. Values in the search space override the recipe flags.

    With no data flags it searches on a 320-example subset of the task's default data cut at 64 tokens,
    so the default search ends within 20 minutes on 2 CPU cores; --max_train_examples 0 takes all of it.
    """

    BASE_CONFIG: typing.ClassVar[type] = RunConfig  # the run config of one trial
    TRAIN_SCRIPT: typing.ClassVar[str] = ""  # the pipeline that trains one such run
    # Training examples of the default data a default search uses (None: all of them).
    DEFAULT_DATA_EXAMPLES: typing.ClassVar[int | None] = DEFAULT_DATA_MAX_TRAIN_EXAMPLES

    # train_cls fields whose default differs for the default (BBC News) search; None = train_cls' default
    max_seq_length: int | None = None
    max_train_examples: int | None = None
    # search
    tuner: str = dataclasses.field(default="random", metadata={"choices": TUNERS, "help": "search algorithm"})
    max_trials: int = dataclasses.field(default=8, metadata={"help": "trials to run at most (hyperband and grid "
                                                                     "may need fewer)"})
    executions_per_trial: int = dataclasses.field(default=1, metadata={
        "help": "runs per trial with seeds seed, seed+1, ...; the objective is their mean"})
    objective: str | None = dataclasses.field(default=None, metadata={
        "help": "validation metric to optimise, e.g. val_macro_f1 or val_loss (losses and errors are "
                "minimised, the rest maximised); unset: train_cls' metric_for_best"})
    search_space: str | None = dataclasses.field(default=None, metadata={
        "help": "YAML file of search-space entries that replace the default ones, key by key"})
    search_name: str | None = dataclasses.field(default=None, metadata={
        "help": "names the output and TensorBoard directories; unset: tune-<data>-<model>"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "start over instead of resuming the search found in the output directory"})
    export: str = dataclasses.field(default="best_trial", metadata={
        "choices": EXPORTS, "help": "best_trial: export the best trial's weights; retrain: train again with "
                                   "the best values; none: only write best_hparams.yaml"})
    max_consecutive_failures: int = dataclasses.field(default=3, metadata={
        "help": "stop the search after this many failed trials in a row"})
    role: str | None = dataclasses.field(default=None, metadata={
        "choices": ROLES, "help": "distributed search: the chief runs the oracle, workers run trials"})
    oracle_address: str | None = dataclasses.field(default=None, metadata={
        "help": "host:port of the chief's oracle (the chief listens there)"})
    worker_index: int | None = dataclasses.field(default=None, metadata={
        "help": "this worker's number (0, 1, ...); a restarted worker with the same number resumes its trial"})

    def __post_init__(self):
        default_data = not (self.train_file or self.dataset)
        if self.max_seq_length is None:
            self.max_seq_length = DEFAULT_DATA_MAX_SEQ_LENGTH if default_data else 128
        if self.max_train_examples is None and default_data:
            self.max_train_examples = self.DEFAULT_DATA_EXAMPLES
        if self.max_train_examples == 0:
            self.max_train_examples = None
        super().__post_init__()

    def validate(self, source: str = "run config") -> None:
        super().validate(source)

        def fail(field, expected, found):
            raise ValueError(f"{source}: field '{field}' must be {expected}, found {found!r}")

        for name, choices in (("tuner", TUNERS), ("export", EXPORTS)):
            if getattr(self, name) not in choices:
                fail(name, " | ".join(choices), getattr(self, name))
        if self.role is not None and self.role not in ROLES:
            fail("role", " | ".join(ROLES), self.role)
        for name in ("max_trials", "executions_per_trial", "max_consecutive_failures"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "a positive integer", getattr(self, name))
        if self.role and not self.oracle_address:
            raise ValueError(f"{source}: --role {self.role} needs --oracle_address host:port (the chief's)")
        if self.oracle_address:
            parse_address(self.oracle_address, source)
        if self.role == "worker" and self.worker_index is None and "KERASTUNER_TUNER_ID" not in os.environ:
            raise ValueError(f"{source}: --role worker needs --worker_index (0, 1, ...: one number per worker)")
        resolved_objective(self)  # an unknown objective or a bad search-space file fails before any work
        load_search_space(self.search_space)

    def resolved_run_name(self) -> str:
        if self.search_name:
            return self.search_name
        name = super().resolved_run_name()
        return name if self.run_name else "tune-" + name[len(self.RUN_PREFIX) + 1:]

    def base_run_config(self, **overrides) -> RunConfig:
        """The training run config of this search's data, model and fixed recipe values; its best
        epoch is picked by the search's objective."""
        names = {f.name for f in dataclasses.fields(self.BASE_CONFIG)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values["metric_for_best"] = resolved_objective(self).name
        values.update(overrides)
        return self.BASE_CONFIG(**values)

    def search_settings(self, space: dict[str, "ParamSpec"]) -> dict:
        """What must not change when a search resumes (max_trials may grow; outputs may move)."""
        run = without_placement(self.base_run_config().to_dict(), "run_name", "output_dir", "log_dir",
                                "log_every_n_steps", "metric_for_best", *space)
        return {"tuner": self.tuner, "objective": resolved_objective(self).name,
                "executions_per_trial": self.executions_per_trial,
                "search_space": {name: spec.to_yaml() for name, spec in space.items()}, "run": run}


def search_config_for(run_config_cls: type, train_script: str,
                      default_data_examples: int | None = DEFAULT_DATA_MAX_TRAIN_EXAMPLES) -> type:
    """The search config of a task: its run config's flags plus the search settings; a default search
    (no data flags) trains on `default_data_examples` of the default data (None: all)."""
    return dataclasses.make_dataclass(
        f"Tune{run_config_cls.__name__}", fields=[], bases=(SearchSettings, run_config_cls),
        namespace={"BASE_CONFIG": run_config_cls, "TRAIN_SCRIPT": train_script, "__module__": __name__,
                   "DEFAULT_DATA_EXAMPLES": default_data_examples, "__doc__": SearchSettings.__doc__})


TuneRunConfig = search_config_for(ClassifierRunConfig, "train_cls.py")
# NER needs a few hundred updates before entities appear (320 sentences gave F1 0 in every trial):
# the default NER search takes all 3,394 WNUT-17 training sentences.
TuneNerRunConfig = search_config_for(TokenClassifierRunConfig, "train_ner.py", default_data_examples=None)


def parse_address(address: str, source: str = "--oracle_address") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{source}: field 'oracle_address' must be host:port (e.g. 10.0.0.2:8000), "
                         f"found {address!r}")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------------------------------------
# Search space


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One search-space entry: a float/int range, a choice among values, or a fixed value."""

    name: str
    kind: str  # float | int | choice | fixed
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    values: tuple = ()
    default: Any = None

    def declare(self, hp: keras_tuner.HyperParameters):
        """Registers the entry with KerasTuner; returns the trial's value."""
        if self.kind == "float":
            return hp.Float(self.name, self.min, self.max, step=self.step, sampling=self.sampling,
                            default=self.default)
        if self.kind == "int":
            return hp.Int(self.name, int(self.min), int(self.max), step=int(self.step) if self.step else None,
                          sampling=self.sampling, default=self.default)
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        return hp.Fixed(self.name, self.values[0])

    def to_yaml(self) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        entry = {"type": self.kind}
        if self.kind == "choice":
            entry["values"] = list(self.values)
        else:
            entry.update(min=self.min, max=self.max)
            if self.step is not None:
                entry["step"] = self.step
            if self.sampling != "linear":
                entry["sampling"] = self.sampling
        if self.default is not None:
            entry["default"] = self.default
        return entry

    @property
    def largest(self):
        return max(self.values) if self.values else self.max


def parse_search_space(entries: dict, source: str = "search space") -> dict[str, ParamSpec]:
    """Checks and converts `{field: entry}` (see the README's YAML format) to `ParamSpec`s.

    An entry is a mapping with `type` float | int | choice | fixed (float and int: `min`, `max`,
    optional `step`, `sampling` linear | log | reverse_log; choice: `values`; fixed: `value`;
    any: `default`), or a bare value, which is fixed. `null` removes the field from the search
    (the flag's value is used).

    Raises:
        ValueError: naming `source` and the key: unknown field, unknown or missing entry keys,
            values of the wrong type, an empty choice, min >= max, log sampling from <= 0.
    """
    if not isinstance(entries, dict):
        raise ValueError(f"{source}: expected a mapping of field: entry, found {type(entries).__name__}")
    space: dict[str, ParamSpec] = {}
    for name, entry in entries.items():
        where = f"{source}: {name}"
        if name not in TUNABLE_FIELDS:
            raise ValueError(f"{where}: not a tunable field; tunable: {', '.join(TUNABLE_FIELDS)}")
        if entry is None:
            continue
        kind_of_field = _FIELD_TYPES[name]
        if not isinstance(entry, dict):
            entry = {"type": "fixed", "value": entry}
        kind = entry.get("type")
        allowed = {"float": {"type", "min", "max", "step", "sampling", "default"},
                   "int": {"type", "min", "max", "step", "sampling", "default"},
                   "choice": {"type", "values", "default"}, "fixed": {"type", "value"}}
        if kind not in allowed:
            raise ValueError(f"{where}: 'type' must be float | int | choice | fixed, found {kind!r}")
        unknown = sorted(set(entry) - allowed[kind])
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} for type {kind}; "
                             f"allowed: {', '.join(sorted(allowed[kind]))}")

        def number(key, value, as_type):
            try:
                if isinstance(value, bool):
                    raise ValueError
                # YAML reads 1e-5 (no dot) as a string; float() reads it.
                converted = as_type(float(value)) if as_type is int else float(value)
                if as_type is int and converted != float(value):
                    raise ValueError
                return converted
            except (TypeError, ValueError):
                expected = "an integer" if as_type is int else "a number"
                raise ValueError(f"{where}: '{key}' must be {expected} (the field {name} is "
                                 f"{as_type.__name__}), found {value!r}") from None

        if kind == "fixed":
            if "value" not in entry:
                raise ValueError(f"{where}: a fixed entry needs 'value'")
            space[name] = ParamSpec(name, "fixed", values=(number("value", entry["value"], kind_of_field),))
            continue
        if kind == "choice":
            values = entry.get("values")
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: 'values' must be a non-empty list, found {values!r}")
            values = tuple(number("values", v, kind_of_field) for v in values)
            if len(set(values)) != len(values):
                raise ValueError(f"{where}: 'values' has duplicates: {list(values)}")
            default = number("default", entry["default"], kind_of_field) if "default" in entry else None
            if default is not None and default not in values:
                raise ValueError(f"{where}: 'default' {default!r} is not one of 'values' {list(values)}")
            space[name] = ParamSpec(name, "choice", values=values, default=default)
            continue
        as_type = int if kind == "int" else float
        if as_type is not kind_of_field:
            raise ValueError(f"{where}: the field {name} is {'an integer' if kind_of_field is int else 'a float'}; "
                             f"use type {'int' if kind_of_field is int else 'float'} or choice")
        for key in ("min", "max"):
            if key not in entry:
                raise ValueError(f"{where}: a {kind} entry needs 'min' and 'max'")
        low, high = number("min", entry["min"], as_type), number("max", entry["max"], as_type)
        if not low < high:
            raise ValueError(f"{where}: 'min' must be below 'max', found min={low!r}, max={high!r}")
        sampling = entry.get("sampling", "linear")
        if sampling not in ("linear", "log", "reverse_log"):
            raise ValueError(f"{where}: 'sampling' must be linear | log | reverse_log, found {sampling!r}")
        if sampling != "linear" and low <= 0:
            raise ValueError(f"{where}: {sampling} sampling needs 'min' > 0, found {low!r}")
        step = number("step", entry["step"], as_type) if entry.get("step") is not None else None
        if step is not None and (step <= 0 or (sampling != "linear" and step <= 1)):
            raise ValueError(f"{where}: 'step' must be > 0 (> 1, a factor, with {sampling} sampling), "
                             f"found {step!r}")
        default = number("default", entry["default"], as_type) if "default" in entry else None
        if default is not None and not low <= default <= high:
            raise ValueError(f"{where}: 'default' {default!r} is outside [{low!r}, {high!r}]")
        space[name] = ParamSpec(name, kind, low, high, step, sampling, default=default)
    return space


def load_search_space(path: str | None = None) -> dict[str, ParamSpec]:
    """The default search space, with the entries of the YAML file at `path` replacing it key by key.

    Raises:
        ValueError: the file is missing or not valid YAML, or an entry is wrong (the message
            names the file and the key).
    """
    entries = dict(DEFAULT_SEARCH_SPACE)
    if path:
        overrides = read_yaml_mapping(path, "search space", "field: entry")
        parse_search_space(overrides, path)  # errors name the file
        entries.update(overrides)
    return parse_search_space(entries, path or "default search space")


# ---------------------------------------------------------------------------------------------
# Objective


def validation_metric_names(config) -> list[str]:
    """The `val_*` metrics a run of the config's task reports each epoch, plus `val_loss`."""
    task = task_for(config)
    return sorted({f"val_{name}" for name in task.metric_names(config)} | {"val_loss"})


def resolved_objective(config: TuneRunConfig) -> keras_tuner.Objective:
    """`keras_tuner.Objective(name, direction)` of `--objective` (default: train_cls' best metric)."""
    name = config.objective or runner.best_metric_of(config)
    known = validation_metric_names(config)
    if name not in known:
        raise ValueError(f"--objective {name}: not a validation metric of a {task_for(config).name} run; "
                         f"choose one of {', '.join(known)}")
    return keras_tuner.Objective(name, direction=runner.metric_direction(name))


# ---------------------------------------------------------------------------------------------
# Oracles


class _SearchOracleMixin:
    """What tfbert adds to KerasTuner's oracles.

    * Too many consecutive failed trials stop the search for every worker (create_trial answers
      STOPPED) instead of raising inside `end_trial`, which would skip saving the oracle and, on a
      distributed chief, leave the workers waiting. Only the latest run of failures counts, so a
      resumed search may try again. `stop_reason` says why it stopped.
    * oracle.json and trial.json are written atomically, so `kill -9` cannot leave half a file.
    """

    stop_reason: str | None = None

    def _check_consecutive_failures(self):
        failed = []
        for trial_id in reversed(self.end_order):
            if self.trials[trial_id].status != TrialStatus.FAILED:
                break
            failed.append(trial_id)
        if self.max_consecutive_failed_trials and len(failed) >= self.max_consecutive_failed_trials:
            last = self.trials[failed[0]]
            detail = _last_line(last.message) if last.message else "see results.md"
            self.stop_reason = (f"{len(failed)} consecutive trials failed ({', '.join(reversed(failed))}); "
                                f"the last one: {detail}")

    def populate_space(self, trial_id):
        if self.stop_reason:
            return {"status": TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)

    def save(self):
        fileio.write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        fileio.write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())


class RandomSearchOracle(_SearchOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(_SearchOracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_SearchOracleMixin, keras_tuner.oracles.HyperbandOracle):
    pass


class GridSearchOracle(_SearchOracleMixin, keras_tuner.oracles.GridSearchOracle):
    """KerasTuner's grid search, resumable.

    KerasTuner 1.4.8 does not save the grid's bookkeeping (`_ordered_ids`, `_populate_next`;
    keras-team/keras-tuner#1055): a reloaded grid search finds nothing to populate and stops at
    once, or fails with a KeyError after the interrupted trial. They are saved here.
    """

    def get_state(self):
        state = super().get_state()
        ordered, index = [], self._ordered_ids._next_index[None]
        while index is not None:
            ordered.append(self._ordered_ids._memory[index])
            index = self._ordered_ids._next_index[index]
        state["grid_ordered_ids"] = ordered
        state["grid_populate_next"] = list(self._populate_next)
        return state

    def set_state(self, state):
        super().set_state(state)
        self._ordered_ids = type(self._ordered_ids)()
        for trial_id in state.get("grid_ordered_ids", self.start_order):
            self._ordered_ids.insert(trial_id)
        populate_next = state.get("grid_populate_next")
        if populate_next is None:  # a project saved by plain KerasTuner: continue from every ended trial
            populate_next = list(self.end_order)
        self._populate_next = list(populate_next)


def _last_line(message: str | None) -> str:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("keras_tuner.src.errors.FailedTrialError: ", "keras_tuner.errors.FailedTrialError: ",
                   "FailedTrialError: "):
        if line.startswith(prefix):
            line = line[len(prefix):]
    return line


def make_oracle(config: TuneRunConfig, space: dict[str, ParamSpec]) -> keras_tuner.Oracle:
    """The oracle of `--tuner`, with the search space declared and `--max_trials` as its limit."""
    hyperparameters = keras_tuner.HyperParameters()
    for spec in space.values():
        if not (config.tuner == "hyperband" and spec.name == "epochs"):
            spec.declare(hyperparameters)
    common = dict(objective=resolved_objective(config), hyperparameters=hyperparameters, seed=config.seed,
                  tune_new_entries=False, allow_new_entries=False,
                  max_consecutive_failed_trials=config.max_consecutive_failures)
    if config.tuner == "random":
        return RandomSearchOracle(max_trials=config.max_trials, **common)
    if config.tuner == "bayesian":
        return BayesianOptimizationOracle(max_trials=config.max_trials, **common)
    if config.tuner == "grid":
        return GridSearchOracle(max_trials=config.max_trials, **common)
    epochs = space.get("epochs")
    oracle = HyperbandOracle(max_epochs=int(epochs.largest) if epochs else config.epochs, factor=3, **common)
    oracle.max_trials = config.max_trials
    return oracle


def planned_trials(oracle: keras_tuner.Oracle) -> int | None:
    """How many trials the search will run: max_trials, or fewer for a small grid or Hyperband."""
    limit = oracle.max_trials
    if isinstance(oracle, keras_tuner.oracles.HyperbandOracle):
        per_iteration = sum(oracle._get_size(bracket, round_number)
                            for bracket in range(oracle._get_num_brackets())
                            for round_number in range(oracle._get_num_rounds(bracket)))
        total = per_iteration * oracle.hyperband_iterations
        return min(total, limit) if limit else total
    if isinstance(oracle, keras_tuner.oracles.GridSearchOracle):
        total = math.prod(len(list(hp.values)) for hp in oracle.hyperparameters.space)
        return min(total, limit) if limit else total
    return limit


# ---------------------------------------------------------------------------------------------
# Hypermodel


class FailOnNaN(keras.callbacks.Callback):
    """Fails the trial (`keras_tuner.errors.FailedTrialError`) as soon as the training loss is not finite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(np.asarray(loss))):
            raise keras_tuner.errors.FailedTrialError(
                f"the training loss is {float(np.asarray(loss))} at epoch {self.epoch + 1}, batch {batch + 1}")


class BertHyperModel(keras_tuner.HyperModel):
    """A `BertClassifier` fine-tuning run whose recipe values come from a trial's hyperparameters.

    `build(hp)` returns the compiled, built model of the train_cls run with those values (so
    KerasTuner can load a trial's weights into it); `fit(hp, model)` trains and evaluates it
    exactly as train_cls does and returns the validation metrics (`val_*`) with the run's
    `optimizer_steps`, `epochs_run` and `seconds`. Batch size and epochs are hyperparameters
    too: `fit` uses the datasets `build` made for the trial's batch size, and the trial's epochs.

    Args:
        config: the search's flags (data, model, fixed recipe values).
        search_space: `load_search_space(...)`.
        prepared: the data and tokenizer; loaded on first use (`runner.prepare`) if None.

    Example:
        space = load_search_space("space.yaml")
        hypermodel = BertHyperModel(config, space)
        tuner = BertTuner(make_oracle(config, space), hypermodel, config, log_dir="tensorboard_logs/search",
                          directory="runs/search", project_name="trials")
        tuner.search()                     # or run_search(config), which also writes results and exports
    """

    def __init__(self, config: TuneRunConfig, search_space: dict[str, ParamSpec],
                 prepared: runner.PreparedData | None = None):
        super().__init__(name="bert_classifier", tunable=True)
        self.config = config
        self.search_space = search_space
        self._prepared = prepared
        self._built: tuple | None = None
        # Per-run settings the tuner sets before `build`: output_dir, log_dir, run_name, seed.
        self.run_overrides: dict[str, Any] = {}

    @property
    def prepared(self) -> runner.PreparedData:
        if self._prepared is None:
            self._prepared = runner.prepare(self.config.base_run_config())
        return self._prepared

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        for spec in self.search_space.values():
            if not (self.config.tuner == "hyperband" and spec.name == "epochs"):  # Hyperband sets the epochs
                spec.declare(hp)  # (declaring an entry again returns the trial's value)

    def values(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """The recipe values of a trial: its search-space values (Hyperband's epochs included)."""
        values = {name: hp.values[name] for name in self.search_space if name in hp.values}
        if "tuner/epochs" in hp.values:
            # Hyperband trains a trial for `tuner/epochs` epochs. Each trial starts from the
            # pre-trained checkpoint (no warm start from an earlier round: the learning-rate
            # schedule depends on the total number of epochs), so it is exactly a train_cls run.
            values["epochs"] = int(hp.values["tuner/epochs"])
        return values

    def run_config(self, hp: keras_tuner.HyperParameters, **overrides) -> RunConfig:
        """The train_cls config of a trial; a value train_cls rejects fails the trial."""
        values = self.values(hp)
        try:
            return self.config.base_run_config(**values, **{**self.run_overrides, **overrides})
        except ValueError as e:
            raise keras_tuner.errors.FailedTrialError(f"invalid sampled value: {e}") from None

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        self.declare_hyperparameters(hp)
        config = self.run_config(hp)
        inputs = runner.start_run(config, self.prepared)
        self._built = (config, inputs)
        return inputs.model

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, callbacks=(),
            best_weights: str | None = None, **kwargs) -> dict[str, float]:
        if self._built is None or self._built[1].model is not model:
            raise ValueError("BertHyperModel.fit: pass the model that BertHyperModel.build returned")
        config, inputs = self._built
        self._built = None
        summary = runner.fit_and_evaluate(
            config, self.prepared, inputs, best_weights=best_weights,
            extra_callbacks=(FailOnNaN(), *(callbacks or ())), write_exports=False, evaluate_test=False)
        return trial_metrics(summary)


def trial_metrics(summary: dict) -> dict[str, float]:
    """What a trial reports to the oracle: `val_*` of the best epoch, optimizer steps, epochs, seconds."""
    metrics = {f"val_{k}": float(v) for k, v in summary["validation"].items() if isinstance(v, float)}
    metrics.update(optimizer_steps=float(summary["optimizer_steps"]), epochs_run=float(summary["epochs_run"]),
                   seconds=float(summary["seconds"]), replicas=float(summary.get("replicas", 1)))
    return metrics


# ---------------------------------------------------------------------------------------------
# Tuner


class BertTuner(keras_tuner.Tuner):
    """Runs trials of a `BertHyperModel`: per-trial output and TensorBoard directories, progress,
    failures recorded with their error, results written as trials end.

    Args:
        oracle: `make_oracle(...)`.
        hypermodel: a `BertHyperModel`.
        config: the search's flags.
        log_dir: the TensorBoard directory of the search; trial `t` logs to `<log_dir>/<t>/`.
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name, overwrite, executions_per_trial).
    """

    def __init__(self, oracle, hypermodel: BertHyperModel, config: TuneRunConfig, log_dir: str, **kwargs):
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.config = config
        self.log_dir = log_dir
        self.oracle.verbose = 0  # tfbert prints its own progress lines
        self.progress = Progress(self.oracle.objective, planned_trials(oracle))
        self._waiting = False
        self._best_id = None

    def _populate_initial_space(self):
        # The space is declared up front (no conditional entries), so there is no need to build a
        # model here, as KerasTuner does to discover entries; a chief never builds one.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def on_search_begin(self):
        # Saved now, so that a search killed during its first trial resumes it instead of starting over.
        self.save()
        self.progress.start()
        best = _best_completed(self.oracle)
        self._best_id = best.trial_id if best is not None else None

    def pre_create_trial(self):
        # Hyperband and grid answer IDLE while they wait for other workers' trials; ask again after a pause.
        if self._waiting:
            time.sleep(1.0)
        self._waiting = True

    def on_trial_begin(self, trial):
        self._waiting = False
        values = self.hypermodel.values(trial.hyperparameters)
        self.progress.trial_begin(trial.trial_id, self.tuner_id, values)

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        hp = trial.hyperparameters
        trial_dir = self.get_trial_dir(trial.trial_id)
        trial_log_dir = os.path.join(self.log_dir, str(trial.trial_id))
        started = time.time()
        runs, record = [], {"trial_id": trial.trial_id, "tuner_id": self.tuner_id,
                            "hyperparameters": self.hypermodel.values(hp)}
        try:
            for execution in range(self.executions_per_trial):
                several = self.executions_per_trial > 1
                run_dir = os.path.join(trial_dir, f"execution{execution}") if several else trial_dir
                run_log_dir = os.path.join(trial_log_dir, f"execution{execution}") if several else trial_log_dir
                overrides = dict(output_dir=run_dir, log_dir=run_log_dir, seed=self.config.seed + execution,
                                 run_name=f"{self.config.resolved_run_name()}-{trial.trial_id}")
                runs.append(self._run_execution(hp, overrides))
        except Exception as e:
            if isinstance(e, keras_tuner.errors.FatalError):
                raise
            record["error"] = _last_line(traceback.format_exc())
            record["seconds"] = round(time.time() - started, 1)
            fileio.write_json(os.path.join(trial_dir, "trial_run.json"), record)
            write_trial_summary(trial_log_dir, trial.trial_id, record["hyperparameters"], {}, record["error"])
            if isinstance(e, keras_tuner.errors.FailedTrialError):
                raise
            # Any error fails the trial (KerasTuner would retry it first); the search goes on.
            raise keras_tuner.errors.FailedTrialError(f"{type(e).__name__}: {e}") from e
        objective = self.oracle.objective
        metrics = {name: float(np.mean([run[name] for run in runs])) for name in runs[0]}
        metrics["optimizer_steps"] = float(sum(run["optimizer_steps"] for run in runs))
        metrics["seconds"] = round(time.time() - started, 1)
        sign = 1 if objective.direction == "max" else -1
        best = max(range(len(runs)), key=lambda i: sign * runs[i][objective.name])
        for execution in range(len(runs)):  # the best execution's weights are the trial's checkpoint
            weights = os.path.join(trial_dir, f"execution{execution}" if len(runs) > 1 else "", "best.weights.h5")
            if execution == best and os.path.exists(weights):
                os.replace(weights, self._get_checkpoint_fname(trial.trial_id))
            elif os.path.exists(weights):
                os.remove(weights)
        record.update(metrics=metrics, executions=runs, best_execution=best)
        fileio.write_json(os.path.join(trial_dir, "trial_run.json"), record)
        write_trial_summary(trial_log_dir, trial.trial_id, record["hyperparameters"], metrics)
        return metrics

    def _run_execution(self, hp, overrides: dict) -> dict[str, float]:
        run_dir = overrides["output_dir"]
        os.makedirs(run_dir, exist_ok=True)
        config = self.hypermodel.run_config(hp, **overrides)
        # A run directory holds one run: a backup or result of other values (an older search in
        # the same place) is removed, a result of these values (a trial that finished training
        # before the search was killed) is kept.
        marker, previous = os.path.join(run_dir, "run_config.json"), None
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                previous = json.load(f)
        metrics_file = os.path.join(run_dir, "metrics.json")
        if previous is None or without_placement(previous) != without_placement(config.to_dict()):
            shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
            for name in ("metrics.json", "best.weights.h5"):
                if os.path.exists(os.path.join(run_dir, name)):
                    os.remove(os.path.join(run_dir, name))
            fileio.write_json(marker, config.to_dict())
        elif os.path.exists(metrics_file) and os.path.exists(os.path.join(run_dir, "best.weights.h5")):
            with open(metrics_file, encoding="utf-8") as f:
                print(f"trial run {run_dir} had finished before the search stopped; reusing its result", flush=True)
                return trial_metrics(json.load(f))
        if not os.path.exists(os.path.join(run_dir, "backup")):
            shutil.rmtree(config.resolved_log_dir(), ignore_errors=True)  # no duplicate curves from a lost run
        self.hypermodel.run_overrides = overrides
        try:
            model = self._try_build(hp)
            return self.hypermodel.fit(hp, model, best_weights=os.path.join(run_dir, "best.weights.h5"))
        except Exception:
            # A failed run is not resumed (an interrupted one, killed or Ctrl-C'ed, is).
            shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
            raise
        finally:
            self.hypermodel.run_overrides = {}

    def on_trial_end(self, trial):
        previous_best = self._best_id  # not asked now: this trial is COMPLETED but not scored yet
        super().on_trial_end(trial)  # reports to the oracle (which scores the trial) and saves the state
        ended = self.oracle.get_trial(trial.trial_id)  # a worker's own copy has no score
        ended.message = ended.message or trial.message  # gRPC does not carry the message back
        best = _best_completed(self.oracle)
        self.progress.trial_end(ended, best, self.oracle if not self._is_worker() else None)
        # Only the best trial's weights are kept (a MiniLM checkpoint is ~270 MB with its optimizer
        # state); a completed trial that is not the best now never becomes the best later.
        stale = previous_best if best is not None and best.trial_id == ended.trial_id else ended.trial_id
        self._best_id = best.trial_id if best is not None else None
        if stale is not None and os.path.exists(self._get_checkpoint_fname(stale)):
            os.remove(self._get_checkpoint_fname(stale))
        if not self._is_worker():
            write_results(self.oracle, self.hypermodel, self.project_dir, os.path.dirname(self.project_dir))

    def load_model(self, trial) -> keras.Model:
        """The model of `trial` with the weights of its best epoch (the optimizer state is built
        first, since .weights.h5 files of compiled models hold it too)."""
        model = self._try_build(trial.hyperparameters)
        model.optimizer.build(model.trainable_variables)
        model.load_weights(self._get_checkpoint_fname(trial.trial_id))
        return model


def _best_completed(oracle):
    best = oracle.get_best_trials(1)
    return best[0] if best and best[0].status == TrialStatus.COMPLETED else None


def _done_count(oracle) -> int:
    return sum(1 for t in oracle.trials.values() if t.status in (TrialStatus.COMPLETED, TrialStatus.FAILED))


class Progress:
    """Prints "trial n of N", the current best, the elapsed time and an estimate of the time left."""

    def __init__(self, objective: keras_tuner.Objective, planned: int | None):
        self.objective = objective
        self.planned = planned
        self.started = time.time()
        self.durations: list[float] = []
        self.trial_started: dict[str, float] = {}

    def start(self) -> None:
        self.started = time.time()

    def _of(self, trial_id: str) -> str:
        number = int(trial_id) + 1 if str(trial_id).isdigit() else trial_id
        return f"trial {number} of {self.planned}" if self.planned else f"trial {number}"

    def trial_begin(self, trial_id: str, tuner_id: str, values: dict) -> None:
        self.trial_started[trial_id] = time.time()
        shown = ", ".join(f"{k}={_format(v)}" for k, v in values.items())
        print(f"\n{self._of(trial_id)} ({trial_id}) started on {tuner_id}: {shown}", flush=True)

    def trial_end(self, trial, best, oracle=None, seconds: float | None = None, parallel: int = 1) -> None:
        """`oracle`: given on a chief or a single process, for the estimate of the time left;
        `seconds`: how long the trial took (default: since `trial_begin`); `parallel`: workers."""
        started = self.trial_started.pop(trial.trial_id, None)
        if seconds is None:
            seconds = time.time() - started if started is not None else 0.0
        self.durations.append(seconds)
        if trial.status == TrialStatus.COMPLETED:
            outcome = f"{self.objective.name}={_format(trial.score)}"
        else:
            outcome = f"{trial.status}: {_last_line(trial.message) or 'objective is NaN'}"
        line = f"{self._of(trial.trial_id)} ({trial.trial_id}) {outcome} in {_duration(seconds)}"
        line += (f"; best {self.objective.name}={_format(best.score)} (trial {best.trial_id})" if best
                 else "; no completed trial yet")
        line += f"; elapsed {_duration(time.time() - self.started)}"
        if oracle is not None and self.planned:
            left = max(0, self.planned - _done_count(oracle))
            estimate = left * float(np.mean(self.durations)) / max(1, parallel)
            line += f", about {_duration(estimate)} left ({left} trials)"
        print(line, flush=True)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


# ---------------------------------------------------------------------------------------------
# Results and TensorBoard


def write_trial_summary(log_dir: str, trial_id: str, values: dict, metrics: dict, error: str | None = None) -> None:
    """The HParams session of one trial: its values, its metrics (scalars at step 0) and any error."""
    from tensorboard.plugins.hparams import api as hparams_api

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        hparams_api.hparams(dict(values), trial_id=str(trial_id))
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
        if error:
            tf.summary.text("error", error)
    writer.flush()
    writer.close()


def write_search_summary(log_dir: str, space: dict[str, ParamSpec], objective: keras_tuner.Objective,
                         config: TuneRunConfig) -> None:
    """The HParams experiment: the searched values and their domains, the metrics to compare."""
    from tensorboard.plugins.hparams import api as hparams_api

    hparams = []
    for spec in space.values():
        if config.tuner == "hyperband" and spec.name == "epochs":
            domain = hparams_api.IntInterval(1, int(spec.largest))
        elif spec.kind == "float":
            domain = hparams_api.RealInterval(float(spec.min), float(spec.max))
        elif spec.kind == "int":
            domain = hparams_api.IntInterval(int(spec.min), int(spec.max))
        else:
            domain = hparams_api.Discrete(list(spec.values))
        hparams.append(hparams_api.HParam(spec.name, domain))
    names = [objective.name] + [m for m in validation_metric_names(config)
                                if m not in (objective.name, "val_loss")]
    metrics = [hparams_api.Metric(name, display_name=name) for name in names]
    metrics += [hparams_api.Metric(name, display_name=name) for name in ("optimizer_steps", "seconds")]
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        hparams_api.hparams_config(hparams=hparams, metrics=metrics)
    writer.flush()
    writer.close()


def trial_rows(oracle, hypermodel: BertHyperModel, project_dir: str) -> list[dict]:
    """One row per trial: id, status, objective, hyperparameters, optimizer steps, seconds, worker, error."""
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (int(t), t) if str(t).isdigit() else (-1, t)):
        trial = oracle.trials[trial_id]
        record_path = os.path.join(project_dir, f"trial_{trial_id}", "trial_run.json")
        record = {}
        if os.path.exists(record_path):
            with open(record_path, encoding="utf-8") as f:
                record = json.load(f)

        def metric(name):
            return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None

        status = str(trial.status)
        error = ""
        if trial.status in (TrialStatus.FAILED, TrialStatus.INVALID):
            error = _last_line(trial.message) or record.get("error") or "the objective is NaN"
        row = {"trial_id": trial_id, "status": status,
               "objective": trial.score if trial.status == TrialStatus.COMPLETED else None}
        row.update(hypermodel.values(trial.hyperparameters))
        steps = metric("optimizer_steps")
        row.update(steps=int(steps) if steps is not None else None,
                   seconds=metric("seconds") if metric("seconds") is not None else record.get("seconds"),
                   worker=record.get("tuner_id", ""), error=error)
        rows.append(row)
    return rows


def write_results(oracle, hypermodel: BertHyperModel, project_dir: str, output_dir: str) -> list[dict]:
    """Writes `results.csv` and `results.md` (the best completed trial first in the markdown)."""
    rows = trial_rows(oracle, hypermodel, project_dir)
    objective = oracle.objective
    hyperband = hypermodel.config.tuner == "hyperband"
    hp_columns = [name for name in hypermodel.search_space if not (hyperband and name == "epochs")]
    hp_columns += ["epochs"] if hyperband else []
    columns = ["trial_id", "status", objective.name, *hp_columns, "steps", "seconds", "worker", "error"]

    def cells(row):
        return [row["objective"] if column == objective.name else row.get(column) for column in columns]

    with fileio.atomic_write(os.path.join(output_dir, "results.csv"), newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if cell is None else cell for cell in cells(row)])

    completed = [r for r in rows if r["status"] == TrialStatus.COMPLETED and r["objective"] is not None]
    ranked = sorted(completed, key=lambda r: r["objective"], reverse=objective.direction == "max")
    others = [r for r in rows if r not in ranked]
    lines = [f"# Search results: {objective.name} ({objective.direction})", "",
             f"{len(completed)} completed, {sum(r['status'] == TrialStatus.FAILED for r in rows)} failed, "
             f"{len(rows)} trials in all; best first.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in ranked + others:
        shown = ["" if c is None else _format(c) if isinstance(c, float) else str(c).replace("|", "\\|")
                 for c in cells(row)]
        lines.append("| " + " | ".join(shown) + " |")
    with fileio.atomic_write(os.path.join(output_dir, "results.md")) as f:
        f.write("\n".join(lines) + "\n")
    return rows


# ---------------------------------------------------------------------------------------------
# Runner


def configure_distribution(config: TuneRunConfig) -> tuple[str | None, str | None, str | None]:
    """Sets KerasTuner's distributed-tuning variables for `--role` and `--oracle_address`:
    KERASTUNER_TUNER_ID (`chief` or `worker<index>`), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT.
    Without `--role`, variables already set in the environment (KerasTuner's own way) are used.

    Returns:
        (role, tuner id, oracle address), or (None, None, None) for a search in one process.
    """
    if not config.role:
        if "KERASTUNER_ORACLE_IP" not in os.environ:
            return None, None, None
        tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
        if not tuner_id or "KERASTUNER_ORACLE_PORT" not in os.environ:
            raise SearchError("KERASTUNER_ORACLE_IP is set, so this is a distributed search, but "
                              "KERASTUNER_TUNER_ID or KERASTUNER_ORACLE_PORT is not; use --role and --oracle_address")
        address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        return ("chief" if "chief" in tuner_id else "worker"), tuner_id, address
    host, port = parse_address(config.oracle_address)
    if config.role == "chief":
        tuner_id = "chief"
    elif config.worker_index is not None:
        tuner_id = f"worker{config.worker_index}"
    else:
        tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    os.environ["KERASTUNER_TUNER_ID"] = tuner_id
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
    return config.role, tuner_id, config.oracle_address


def serve_oracle(tuner: BertTuner, address: str) -> None:
    """The chief: serves the oracle to the workers (KerasTuner's gRPC protocol) until every worker
    has been told to stop and no trial is running; writes the results as trials end."""
    import grpc
    from concurrent import futures
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    host, port = parse_address(address)
    oracle = tuner.oracle
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise SearchError(f"--oracle_address {address}: cannot listen there (is the port in use, or the host "
                          f"not an address of this machine?)")
    server.start()
    print(f"chief: oracle listening on {address}; start the workers with --role worker "
          f"--oracle_address <this host>:{port} --worker_index 0, 1, ...", flush=True)
    tuner.progress.start()
    reported, workers = len(oracle.end_order), 1
    try:
        while True:
            time.sleep(0.5)
            workers = max(workers, len(oracle.tuner_ids))
            if len(oracle.end_order) > reported:
                for trial_id in oracle.end_order[reported:]:
                    trial = oracle.trials[trial_id]
                    seconds = trial.metrics.get_last_value("seconds") if trial.metrics.exists("seconds") else None
                    tuner.progress.trial_end(trial, _best_completed(oracle), oracle, seconds=seconds or 0.0,
                                             parallel=workers)
                reported = len(oracle.end_order)
                write_results(oracle, tuner.hypermodel, tuner.project_dir, os.path.dirname(tuner.project_dir))
            if servicer.stop_triggered and oracle_chief.exit_chief(oracle):
                break
    finally:
        server.stop(grace=5)


def _check_settings(config: TuneRunConfig, space, output_dir: str, project_dir: str, worker: bool = False) -> None:
    """A search resumes only with the settings it started with (KerasTuner would silently keep
    the old search space and scores of another objective); a worker that sees the chief's
    settings (a shared output directory) checks that it runs the same search."""
    settings_file = os.path.join(output_dir, "search.json")
    settings = json.loads(json.dumps(config.search_settings(space), default=str))
    if (worker or os.path.exists(os.path.join(project_dir, "oracle.json"))) and os.path.exists(settings_file):
        with open(settings_file, encoding="utf-8") as f:
            previous = json.load(f)
        changed = [key for key in sorted(set(settings) | set(previous)) if settings.get(key) != previous.get(key)]
        if changed:
            details = []
            for key in changed:
                if key in ("run", "search_space") and isinstance(previous.get(key), dict):
                    old, new = previous[key], settings.get(key, {})
                    details += [f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}"
                                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
                else:
                    details.append(f"{key}: {previous.get(key)!r} -> {settings.get(key)!r}")
            if worker:
                raise SearchError(f"this worker's flags differ from the chief's ({'; '.join(details)}); "
                                  f"give the workers the chief's flags")
            raise SearchError(f"{output_dir} holds a search started with other settings ({'; '.join(details)}); "
                              f"pass --overwrite to start over, or another --search_name / --output_dir")
    if not worker:
        os.makedirs(output_dir, exist_ok=True)
        fileio.write_json(settings_file, settings)


def _remove_previous_search(output_dir: str, project_dir: str, log_dir: str) -> None:
    """--overwrite: removes what an earlier search of this name wrote (and only that)."""
    trial_ids = [entry[len("trial_"):] for entry in (os.listdir(project_dir) if os.path.isdir(project_dir) else [])
                 if entry.startswith("trial_")]
    for trial_id in trial_ids:
        shutil.rmtree(os.path.join(log_dir, trial_id), ignore_errors=True)
    shutil.rmtree(os.path.join(log_dir, "best_model"), ignore_errors=True)
    if os.path.isdir(log_dir):
        for entry in os.listdir(log_dir):
            if entry.startswith("events.out.tfevents"):
                os.remove(os.path.join(log_dir, entry))
    shutil.rmtree(os.path.join(output_dir, "best_model"), ignore_errors=True)
    for name in ("results.csv", "results.md", "best_hparams.yaml", "search.json"):
        if os.path.exists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))


def run_search(config: TuneRunConfig, prepared: runner.PreparedData | None = None) -> dict:
    """Runs (or resumes) the search `config` describes; see the module docstring for its outputs.

    In one process it runs every trial. With `role="chief"` it serves the oracle to workers and
    writes the results; with `role="worker"` it runs the trials the chief hands out.

    Returns:
        For a search in one process or on the chief: "best_trial", "best_value", "best_hparams"
        (the YAML path), "export" (the best_model directory or None), "results" (csv path),
        "completed", "failed". On a worker: "trials_run".

    Raises:
        SearchError: too many consecutive failures, no trial completed, settings that differ from
            the search being resumed, an address the chief cannot listen on.
        ValueError: a bad search space or objective.
    """
    space = load_search_space(config.search_space)
    objective = resolved_objective(config)
    role, tuner_id, address = configure_distribution(config)
    is_worker = role == "worker"
    output_dir, log_dir = config.resolved_output_dir(), config.resolved_log_dir()
    project_dir = os.path.join(output_dir, "trials")
    if config.tuner == "grid":
        continuous = [s.name for s in space.values() if s.kind == "float" and s.step is None]
        if continuous:
            print(f"grid: {', '.join(continuous)} are continuous ranges; KerasTuner's grid tries 10 evenly spaced "
                  f"values of each (give 'values' or 'step' in --search_space for a real grid)", flush=True)

    overwrite = config.overwrite and not is_worker  # a worker must never delete the chief's project
    if config.overwrite and is_worker:
        print("--overwrite is for the chief; this worker ignores it", flush=True)
    if overwrite:
        _remove_previous_search(output_dir, project_dir, log_dir)
    _check_settings(config, space, output_dir, project_dir, worker=is_worker)
    os.makedirs(log_dir, exist_ok=True)

    # Every trial runs in this strategy's scope (KerasTuner's `distribution_strategy`), made from
    # the same --strategy / --devices / --tpu flags as a train_cls run, before any TensorFlow op.
    strategy = distribution.strategy_for(config) if role != "chief" else None
    hypermodel = BertHyperModel(config, space, prepared)
    if role != "chief":
        hypermodel.prepared  # bad data or model flags fail here, once, not as failed trials
    oracle = make_oracle(config, space)
    resuming = not overwrite and os.path.exists(os.path.join(project_dir, f"{tuner_id or 'tuner0'}.json"))
    tuner = BertTuner(oracle, hypermodel, config, log_dir, directory=output_dir, project_name="trials",
                      overwrite=overwrite, executions_per_trial=config.executions_per_trial,
                      tuner_id=tuner_id, distribution_strategy=strategy)
    planned = planned_trials(oracle)
    if not is_worker:
        if not any(entry.startswith("events.out.tfevents") for entry in os.listdir(log_dir)):
            write_search_summary(log_dir, space, objective, config)
        done = _done_count(oracle)
        interrupted = len(oracle._retry_queue)
        if resuming:
            print(f"resuming the search in {output_dir}: {done} of {planned} trials done"
                  + (f", {interrupted} interrupted trial(s) run again" if interrupted else ""), flush=True)
        if planned is not None and done >= planned and not interrupted:
            print(f"all {planned} trials are done; nothing to run (raise --max_trials to run more, "
                  f"--overwrite to start over)", flush=True)
    print(f"search {config.resolved_run_name()}: {config.tuner}, {planned} trials, objective {objective.name} "
          f"({objective.direction}); trials in {project_dir}, TensorBoard: tensorboard --logdir {log_dir}", flush=True)

    if role == "chief":
        tuner.save()
        serve_oracle(tuner, address)
    else:
        tuner.search()
    if is_worker:
        print(f"{tuner_id}: the chief has no more trials; done", flush=True)
        return {"trials_run": len(tuner.progress.durations)}
    return _finish_search(tuner, config, space, output_dir, log_dir)


def _finish_search(tuner: BertTuner, config: TuneRunConfig, space, output_dir: str, log_dir: str) -> dict:
    oracle, hypermodel = tuner.oracle, tuner.hypermodel
    rows = write_results(oracle, hypermodel, tuner.project_dir, output_dir)
    completed = [r for r in rows if r["status"] == TrialStatus.COMPLETED]
    failed = [r for r in rows if r["status"] == TrialStatus.FAILED]
    print(f"results: {os.path.join(output_dir, 'results.md')} ({len(completed)} completed, {len(failed)} failed)",
          flush=True)
    if oracle.stop_reason:
        raise SearchError(f"search stopped: {oracle.stop_reason}. Fix the search space or flags, then run the "
                          f"same command to go on, or add --overwrite to start over")
    best = oracle.get_best_trials(1)
    if not best or best[0].status != TrialStatus.COMPLETED:
        raise SearchError(f"no trial completed; see {os.path.join(output_dir, 'results.md')}")
    best = best[0]
    best_config = hypermodel.run_config(best.hyperparameters, run_name=f"{config.resolved_run_name()}-best",
                                        output_dir=None, log_dir=None)
    best_hparams = os.path.join(output_dir, "best_hparams.yaml")
    with fileio.atomic_write(best_hparams) as f:
        f.write(f"# Best trial {best.trial_id} of the search {config.resolved_run_name()}: "
                f"{oracle.objective.name}={best.score:.6g}\n# python pipelines/{config.TRAIN_SCRIPT} --config {best_hparams}\n")
        yaml.safe_dump(best_config.to_dict(), f, sort_keys=False)
    print(f"best trial {best.trial_id}: {oracle.objective.name}={_format(best.score)}; "
          f"{', '.join(f'{k}={_format(v)}' for k, v in hypermodel.values(best.hyperparameters).items())}", flush=True)
    print(f"best hyperparameters: {best_hparams} (python pipelines/{config.TRAIN_SCRIPT} --config {best_hparams})",
          flush=True)
    export = _export_best(tuner, config, best, best_config, output_dir, log_dir)
    return {"best_trial": best.trial_id, "best_value": best.score, "best_hparams": best_hparams, "export": export,
            "results": os.path.join(output_dir, "results.csv"), "completed": len(completed), "failed": len(failed)}


def _export_best(tuner: BertTuner, config: TuneRunConfig, best, best_config, output_dir, log_dir) -> str | None:
    if config.export == "none":
        return None
    export_dir = os.path.join(output_dir, "best_model")
    export_config = dataclasses.replace(best_config, output_dir=export_dir,
                                        log_dir=os.path.join(log_dir, "best_model"))
    marker = os.path.join(export_dir, "metrics.json")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            exported = json.load(f)
        if exported.get("best_trial") == best.trial_id and exported.get("export") == config.export:
            print(f"best model: {export_dir} (exported before)", flush=True)
            return export_dir
    shutil.rmtree(export_dir, ignore_errors=True)
    hypermodel = tuner.hypermodel
    checkpoint = tuner._get_checkpoint_fname(best.trial_id)
    mode = config.export
    if mode == "best_trial" and not os.path.exists(checkpoint):
        print(f"best model: {checkpoint} is not on this machine (a worker elsewhere ran the trial); "
              f"retraining with the best values instead", flush=True)
        mode = "retrain"
    if mode == "retrain":
        print(f"best model: retraining with the best values into {export_dir}", flush=True)
        summary = runner.fit_and_evaluate(export_config, hypermodel.prepared, runner.start_run(
            export_config, hypermodel.prepared))
    else:
        print(f"best model: exporting the weights of trial {best.trial_id} into {export_dir}", flush=True)
        hypermodel.run_overrides = dict(output_dir=export_dir, log_dir=export_config.log_dir,
                                        run_name=export_config.run_name)
        try:
            model = tuner.load_model(best)
        finally:
            hypermodel.run_overrides = {}
        trial_dir = tuner.get_trial_dir(best.trial_id)
        with open(os.path.join(trial_dir, "trial_run.json"), encoding="utf-8") as f:
            execution = json.load(f).get("best_execution", 0)
        run_dir = os.path.join(trial_dir, f"execution{execution}") if config.executions_per_trial > 1 else trial_dir
        with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
            trial_summary = json.load(f)
        facts = {k: trial_summary[k] for k in ("best_metric", "steps_per_epoch", "resumed_from_epoch", "epochs_run",
                                                "optimizer_steps", "examples_per_second")}
        summary = runner.finish_run(model, export_config, hypermodel.prepared, facts)
    summary.update(best_trial=best.trial_id, export=config.export)
    fileio.write_json(marker, summary, default=float)
    print(f"best model: {export_dir} (SavedModel {summary.get('saved_model')})", flush=True)
    return export_dir


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` now (for tests and examples)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
