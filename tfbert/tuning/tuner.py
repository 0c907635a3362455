"""The tuner that runs the trials of a `BertHyperModel`: run directories, executions, checkpoints of
the best trial only, failures recorded with their error."""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback

import keras
import keras_tuner
import numpy as np

from tfbert import fileio
from tfbert.training.run_config import with_new_fields, without_placement
from tfbert.tuning.hypermodel import BertHyperModel, trial_metrics
from tfbert.tuning.oracles import best_completed, last_line, planned_trials
from tfbert.tuning.progress import Progress
from tfbert.tuning.reporting import write_results, write_trial_summary
from tfbert.tuning.settings import TuneRunConfig


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
        best = best_completed(self.oracle)
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

    def _try_run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        # KerasTuner prints a failed trial's traceback to stderr while its DEBUG flag is on (the default);
        # `run_trial` has printed the one line and written the whole traceback to error.log.
        from keras_tuner.src import config as keras_tuner_config

        debug, keras_tuner_config.DEBUG = keras_tuner_config.DEBUG, False
        try:
            return super()._try_run_and_update_trial(trial, *fit_args, **fit_kwargs)
        finally:
            keras_tuner_config.DEBUG = debug

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
            # The whole traceback goes to the trial's error.log; the search's output gets one line.
            error_log, trace = os.path.join(trial_dir, "error.log"), traceback.format_exc()
            with fileio.atomic_write(error_log) as f:
                f.write(trace)
            record["error"] = last_line(trace)
            record["traceback"] = error_log
            record["seconds"] = round(time.time() - started, 1)
            fileio.write_json(os.path.join(trial_dir, "trial_run.json"), record)
            write_trial_summary(trial_log_dir, trial.trial_id, record["hyperparameters"], {}, record["error"])
            message = str(e) if isinstance(e, keras_tuner.errors.FailedTrialError) else f"{type(e).__name__}: {e}"
            # Any error fails the trial (KerasTuner would retry it first); the search goes on. Raised anew,
            # without its cause: the trial's message in KerasTuner's files is this frame's traceback, not
            # the error's path through Keras' fit (which error.log keeps).
            raise keras_tuner.errors.FailedTrialError(f"{message} (traceback: {error_log})") from None
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
        current = without_placement(config.to_dict())
        if previous is None or without_placement(with_new_fields(type(config), previous, current)) != current:
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
        best = best_completed(self.oracle)
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
        if not model.optimizer.built:  # (Keras' LossScaleOptimizer adds its variables again when built twice)
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self._get_checkpoint_fname(trial.trial_id))
        return model
