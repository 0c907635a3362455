"""KerasTuner's oracles as a search uses them: made from the config (`make_oracle`), stopped after too
many failed trials in a row, saved atomically, and a grid search that resumes."""

from __future__ import annotations

import math
import os

import keras_tuner
from keras_tuner.engine.hyperparameters import Float
from keras_tuner.engine.trial import TrialStatus

from tfbert import fileio
from tfbert.tuning.settings import TuneRunConfig, resolved_objective
from tfbert.tuning.space import ParamSpec


class _SearchOracleMixin:
    """What tfbert adds to KerasTuner's oracles.

    * Too many consecutive failed trials stop the search for every worker (create_trial answers
      STOPPED) instead of raising inside `end_trial`, which would skip saving the oracle and, on a
      distributed chief, leave the workers waiting. Only the latest run of failures counts, so a
      resumed search may try again. `stop_reason` says why it stopped.
    * oracle.json and trial.json are written atomically, so `kill -9` cannot leave half a file.
    * Trials with equal scores rank by the order they were created in: the earlier one is the best.
      KerasTuner's ranking keeps them in the order of `oracle.trials`, which on a resumed search is the
      order its trial files were listed in, so the same finished search could name another best trial
      (and export it again) each time its command ran.
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
            detail = last_line(last.message) if last.message else "see results.md"
            self.stop_reason = (f"{len(failed)} consecutive trials failed ({', '.join(reversed(failed))}); "
                                f"the last one: {detail}")

    def populate_space(self, trial_id):
        if self.stop_reason:
            return {"status": TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)

    def get_best_trials(self, num_trials=1):
        trials = sorted(self.trials.values(), key=_creation_order)
        # completed trials by score; `sorted` is stable, so equal scores keep the creation order
        best = sorted((t for t in trials if t.status == TrialStatus.COMPLETED), key=lambda t: t.score,
                      reverse=self.objective.direction == "max")
        if len(best) < num_trials:  # as KerasTuner's: the other trials after the completed ones
            best += [t for t in trials if t.status != TrialStatus.COMPLETED]
        return best[:num_trials]

    def save(self):
        fileio.write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        fileio.write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())


def _creation_order(trial):
    """KerasTuner numbers trials as they are created ("0", "1", ... or zero-padded); other ids after them."""
    return (0, int(trial.trial_id), "") if trial.trial_id.isdigit() else (1, 0, trial.trial_id)


class RandomSearchOracle(_SearchOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(_SearchOracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_SearchOracleMixin, keras_tuner.oracles.HyperbandOracle):
    """KerasTuner's Hyperband whose passes of brackets (`hyperband_iterations`) follow one another up to
    `max_trials`: one pass per trial at most, set from `max_trials` (given after construction, as for the
    other oracles) rather than restored from a saved state, so that a search saved with fewer passes (one,
    before tfbert ran more) goes on to `max_trials` when resumed."""

    def set_state(self, state):
        super().set_state(state)
        self.hyperband_iterations = max(self.max_trials or 1, self.hyperband_iterations)


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


def last_line(message: str | None) -> str:
    """The last line of a trial's error message, without KerasTuner's FailedTrialError prefix."""
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
    # One pass of Hyperband's brackets runs as many trials as its epoch budget and factor make (6 for
    # epochs up to 3, 2 for a fixed 2): passes follow one another (KerasTuner's hyperband_iterations;
    # each has a trial at least) until --max_trials trials, as for the other tuners.
    oracle = HyperbandOracle(max_epochs=int(epochs.largest) if epochs else config.epochs, factor=3,
                             hyperband_iterations=config.max_trials, **common)
    oracle.max_trials = config.max_trials
    return oracle


def planned_trials(oracle: keras_tuner.Oracle) -> int | None:
    """How many trials the search will run (at most): max_trials, or fewer for Hyperband or a small space."""
    limit = oracle.max_trials
    space = oracle.hyperparameters.space
    # A search over discrete values alone (fixed, choices, int ranges, stepped floats) stops when it has
    # tried each combination once (a space of fixed values: one trial); a grid tries each combination (a
    # float range without a step as 10 values).
    discrete = not any(isinstance(hp, Float) and hp.step is None for hp in space)
    combinations = math.prod(len(list(hp.values)) for hp in space)
    if isinstance(oracle, keras_tuner.oracles.HyperbandOracle):
        total = _hyperband_trials(oracle, combinations if discrete else None)
    elif isinstance(oracle, keras_tuner.oracles.GridSearchOracle) or discrete:
        total = combinations
    else:
        return limit
    return min(total, limit) if limit else total


def _hyperband_trials(oracle, new_values: int | None) -> int:
    """Hyperband's trials: brackets from the most rounds down, each drawing new values for its first
    round and promoting the best of each round to the next; it stops when it cannot draw new values
    (`new_values`, None: unbounded) for a first round."""
    total, iteration = 0, 0
    while iteration < oracle.hyperband_iterations and not (oracle.max_trials and total >= oracle.max_trials):
        for bracket in reversed(range(oracle._get_num_brackets())):
            sizes = [oracle._get_size(bracket, round_number) for round_number in range(oracle._get_num_rounds(bracket))]
            if new_values is not None and new_values < sizes[0]:
                return total + new_values
            total += sum(sizes)
            new_values = None if new_values is None else new_values - sizes[0]
        iteration += 1
    return total


def best_completed(oracle):
    """The best trial if it completed, else None."""
    best = oracle.get_best_trials(1)
    return best[0] if best and best[0].status == TrialStatus.COMPLETED else None


def done_count(oracle) -> int:
    """How many trials have ended, completed or failed."""
    return sum(1 for t in oracle.trials.values() if t.status in (TrialStatus.COMPLETED, TrialStatus.FAILED))
