"""The progress lines of a search: trial n of N, its outcome, the best so far, the time left."""

from __future__ import annotations

import time

import keras_tuner
import numpy as np
from keras_tuner.engine.trial import TrialStatus

from tfbert.tuning.oracles import done_count, last_line


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
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in values.items())
        print(f"\n{self._of(trial_id)} ({trial_id}) started on {tuner_id}: {shown}", flush=True)

    def trial_end(self, trial, best, oracle=None, seconds: float | None = None, parallel: int = 1) -> None:
        """`oracle`: given on a chief or a single process, for the estimate of the time left;
        `seconds`: how long the trial took (default: since `trial_begin`); `parallel`: workers."""
        started = self.trial_started.pop(trial.trial_id, None)
        if seconds is None:
            seconds = time.time() - started if started is not None else 0.0
        self.durations.append(seconds)
        if trial.status == TrialStatus.COMPLETED:
            outcome = f"{self.objective.name}={format_value(trial.score)}"
        else:
            outcome = f"{trial.status}: {last_line(trial.message) or 'objective is NaN'}"
        line = f"{self._of(trial.trial_id)} ({trial.trial_id}) {outcome} in {format_duration(seconds)}"
        line += (f"; best {self.objective.name}={format_value(best.score)} (trial {best.trial_id})" if best
                 else "; no completed trial yet")
        line += f"; elapsed {format_duration(time.time() - self.started)}"
        if oracle is not None and self.planned:
            left = max(0, self.planned - done_count(oracle))
            estimate = left * float(np.mean(self.durations)) / max(1, parallel)
            line += f", about {format_duration(estimate)} left ({left} trials)"
        # a trial that failed in training stopped Keras' progress bar within its line: start a line of its own
        print(("" if trial.status == TrialStatus.COMPLETED else "\n") + line, flush=True)


def format_value(value) -> str:
    """A value as the progress lines and results.md show it (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
