"""Keras callbacks for fine-tuning runs: exact validation metrics, TensorBoard extras."""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf


class ValidationMetrics(keras.callbacks.Callback):
    """Computes exact metrics on the whole validation split after each epoch.

    Keras' streaming metrics cannot give macro-F1, MCC or entity-level F1; this calls the task's
    evaluation once per epoch and adds `val_<name>` entries to the epoch logs, so `EarlyStopping`,
    `ModelCheckpoint` and `TensorBoard` (placed after this callback) all see them.

    Args:
        evaluate: `fn(model) -> dict` of the split's metrics; entries that are not numbers (reports) are
            not logged.
        prefix: key prefix in the logs.
    """

    def __init__(self, evaluate: Callable[[keras.Model], dict], prefix: str = "val_"):
        super().__init__()
        self.evaluate = evaluate
        self.prefix = prefix
        self.last: dict[str, float] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.last = {f"{self.prefix}{k}": float(v) for k, v in self.evaluate(self.model).items()
                     if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
        if logs is not None:
            logs.update(self.last)
        shown = "  ".join(f"{k}={v:.4f}" for k, v in self.last.items())
        print(f"\nepoch {epoch + 1} validation: {shown}", flush=True)


class TrainingLogger(keras.callbacks.Callback):
    """Writes train loss, learning rate and examples/s to TensorBoard every `every_n_steps`
    optimizer updates (with gradient accumulation, an update spans several batches).

    Examples/s counts `batch_size` per batch, so the few partial batches (one per length
    bucket) are counted as full; the clock restarts each epoch, so validation time is not in it.
    `examples_per_second` holds each logged rate; a run too short to log one (fewer updates than
    `every_n_steps`) gets one rate over all its batches at the end, which, like each epoch's first
    logged rate, includes the first call's tracing.
    """

    def __init__(self, log_dir: str, batch_size: int, every_n_steps: int = 10):
        super().__init__()
        self.writer = tf.summary.create_file_writer(f"{log_dir}/train")
        self.batch_size = batch_size
        self.every_n_steps = max(1, int(every_n_steps))
        self._start = None
        self._examples = 0
        self._last_logged_step = 0
        self._first_batch = 0
        self._seconds = 0.0  # of the current window, up to its last batch's end
        self._total_examples, self._total_seconds = 0, 0.0  # of the windows closed so far
        self.examples_per_second: list[float] = []

    def on_train_begin(self, logs=None):
        self._last_logged_step = int(self.model.optimizer.iterations.numpy())  # > 0 when resumed

    def on_epoch_begin(self, epoch, logs=None):
        self._close_window()
        self._start = None

    def _close_window(self):
        self._total_examples += self._examples
        self._total_seconds += self._seconds
        self._start, self._examples, self._seconds = time.perf_counter(), 0, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            self._start = time.perf_counter()
        self._first_batch = batch

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution k, Keras calls the pair once per k batches (begin: the first, end: the last,
        # which on the last call of an epoch may lie past the epoch's end).
        last = min(batch, (self.params.get("steps") or batch + 1) - 1)
        self._examples += self.batch_size * (last - self._first_batch + 1)
        self._seconds = time.perf_counter() - self._start
        step = int(self.model.optimizer.iterations.numpy())
        if step // self.every_n_steps == self._last_logged_step // self.every_n_steps:
            return
        self._last_logged_step = step
        rate = self._examples / self._seconds if self._seconds > 0 else 0.0
        self.examples_per_second.append(rate)
        lr = self.model.optimizer.learning_rate
        with self.writer.as_default(step=step):
            if logs and "loss" in logs:
                tf.summary.scalar("batch_loss", float(logs["loss"]))
            tf.summary.scalar("learning_rate", float(np.asarray(lr)))
            tf.summary.scalar("examples_per_second", rate)
        self.writer.flush()
        self._close_window()

    def on_train_end(self, logs=None):
        self._close_window()
        if not self.examples_per_second and self._total_seconds > 0:
            self.examples_per_second.append(self._total_examples / self._total_seconds)
        self.writer.close()


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` whose file appears whole: Keras writes it beside its place
    (`fileio.temporary_path`), then it is renamed over the last one. Keras writes in place, so a run
    killed during the write left a truncated best.weights.h5, which the end of training (loading the
    best epoch's weights) could not read."""

    _writing_to = None

    def _get_file_path(self, epoch, batch, logs):
        return self._writing_to or super()._get_file_path(epoch, batch, logs)

    def _save_model(self, epoch, batch, logs):
        from tfbert import fileio

        final = super()._get_file_path(epoch, batch, logs)
        self._writing_to = fileio.temporary_path(final)
        try:
            super()._save_model(epoch, batch, logs)
            if os.path.exists(self._writing_to):
                os.replace(self._writing_to, final)
        finally:
            if os.path.exists(self._writing_to):
                os.remove(self._writing_to)
            self._writing_to = None


class RecordBestValue(keras.callbacks.Callback):
    """Keeps a `ModelCheckpoint`'s best value in a file at every epoch end, so that a resumed run
    starts its checkpoint from it (`initial_value_threshold`) instead of from -inf/+inf, and an
    epoch after the resume replaces the best weights only if it is better than every epoch so far.

    Place it after the checkpoint and before `BackupAndRestore`: a run killed between the two
    redoes the epoch, whose value then equals the recorded best and does not overwrite its weights.
    """

    def __init__(self, checkpoint: keras.callbacks.ModelCheckpoint, path: str):
        super().__init__()
        self.checkpoint = checkpoint
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        best = float(self.checkpoint.best)
        if np.isfinite(best):
            from tfbert.fileio import write_json

            write_json(self.path, {"monitor": self.checkpoint.monitor, "best": best, "epoch": epoch + 1})

    @staticmethod
    def read(path: str, monitor: str) -> float | None:
        """The recorded best value of `monitor`, or None (no record, or one of another metric)."""
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return float(record["best"]) if record.get("monitor") == monitor and "best" in record else None


def write_run_summary(log_dir: str, run_config: dict, hparams: dict | None, metrics: dict | None = None) -> None:
    """Writes the run config as text, the final metrics and (`hparams` given) the run's HParams session."""
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        tf.summary.text("run_config", "```\n" + json.dumps(run_config, indent=2, sort_keys=True, default=str) + "\n```")
        if hparams is not None:
            hp.hparams({k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))})
        for key, value in (metrics or {}).items():
            tf.summary.scalar(key, value)
    writer.close()
