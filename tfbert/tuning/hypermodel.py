"""A trial as a training run of the task (e.g. a `train_cls.py` run) whose recipe values (learning rate,
batch size, epochs, ...) come from the tuner.

`BertHyperModel.build` calls `runner.start_run` (seed, datasets, compiled model) and
`BertHyperModel.fit` calls `runner.fit_and_evaluate` (the pipeline's callbacks, best-epoch checkpoint,
exact validation metrics). The data and the tokenizer are loaded once per search and shared by the trials."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner
import numpy as np

from tfbert.training import runner
from tfbert.training.run_config import RunConfig
from tfbert.tuning.settings import TuneRunConfig
from tfbert.tuning.space import ParamSpec


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
            base = self.config.base_run_config()
            given = base.to_dict()
            self._prepared = runner.prepare(base)
            # What reading the data decided for the run (QA's version_2_with_negative, detected when unset)
            # goes to the search's config, so that trials, best_hparams.yaml and best_model/config.yaml
            # record it as a train_qa run's config.yaml does.
            for name, value in base.to_dict().items():
                if value != given[name] and hasattr(self.config, name):
                    setattr(self.config, name, value)
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
        if "max_seq_length" in self.search_space:  # the search's data line gave the flag's length
            print(f"data: {runner.describe_truncation(self.prepared, config.max_seq_length)}", flush=True)
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
