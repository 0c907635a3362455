"""Where a killed run goes on from: backups within an epoch, and the `fit` calls that resume from one.

Keras' `BackupAndRestore` backs a run up at every epoch end and restores whole epochs only (with a
step-level `save_freq` it would train the saved part of the epoch again), so a kill lost the epoch
in progress: hours on a large corpus. `StepBackup` also backs the run up every N batches within an
epoch; `fit_from` resumes from such a backup: the rest of the interrupted epoch, then the epochs
after it, on the batches the uninterrupted run trained on, one training run for the callbacks.

A run's training batches are one repeated dataset (`batches_from`): epoch k is its k-th pass, so the
batches from any point on are the same in a resumed run as in the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import h5py
import keras
import numpy as np
import tensorflow as tf

from tfbert import fileio
from tfbert.training import distribution

STEP_BACKUP = "step.weights.h5"
_GROUP = "tfbert_step_backup"  # in the weights file: where it was taken, and the epoch's metric totals


@dataclasses.dataclass(frozen=True)
class Position:
    """A point of a training run: `epoch` epochs done and `batch` batches of the next one."""

    epoch: int
    batch: int = 0

    def describe(self, steps: int) -> str:
        done = f"{self.epoch} epoch(s)"
        return done + (f" and {self.batch} of the {steps} batches of epoch {self.epoch + 1}" if self.batch else "")


def read_position(backup_dir: str, epochs_done: int) -> Position:
    """The latest point a run's backups hold: its step backup's, unless the backup at an epoch end
    (`epochs_done` epochs, Keras' `BackupAndRestore`) is newer; a step backup older than it (a run
    killed between the two at an epoch end) is removed. An unreadable step backup (the file is
    written whole, so damaged on disk) is set aside with a warning and the epoch backup used."""
    path = os.path.join(backup_dir, STEP_BACKUP)
    if not os.path.exists(path):
        return Position(epochs_done)
    try:
        with h5py.File(path, "r") as f:
            where = Position(int(f[_GROUP].attrs["epoch"]), int(f[_GROUP].attrs["batch"]))
    except (OSError, KeyError, ValueError) as e:
        aside = path + ".unreadable"
        os.replace(path, aside)
        print(f"WARNING: {path}: not a readable backup ({e}); moved to {aside}, resuming from the last "
              "epoch's backup", flush=True)
        return Position(epochs_done)
    if where.epoch < epochs_done:
        os.remove(path)
        return Position(epochs_done)
    return where


def batches_from(train: tf.data.Dataset, start: Position, steps: int, steps_per_execution: int = 1
                 ) -> tf.data.Dataset:
    """The training batches from `start` on, for `fit` with ``steps_per_epoch=steps``: a resumed run
    trains on the batches the uninterrupted run trained on.

    The training dataset shuffles again each time it is iterated, in an order fixed by its seed and
    by how many times it has been iterated. Fitting it epoch by epoch without `steps_per_epoch`,
    Keras iterated it twice per epoch (an iterator made at each epoch's end was dropped), and a run
    resumed after epoch k shuffled its epochs as the first ones: results close to the uninterrupted
    run's, not the same. Repeated, it is iterated once and epoch k is its k-th pass; a resumed run
    passes over the batches already trained (the input pipeline alone, no model: about 1.7 s per epoch
    of SST-2's 67k sentences).

    Keras' calls of several steps (`steps_per_execution`) would run past an epoch's end in a
    repeated dataset; when they do not divide the epoch, the dataset is given as it is (`fit` then
    makes one iterator per epoch: the same batches, epoch by epoch, as the repeated dataset), and a
    resumed run shuffles its epochs as the first ones (and is backed up at epoch ends only).
    """
    if not divides(steps, steps_per_execution):
        return train
    return train.repeat().skip(start.epoch * steps + start.batch)


def divides(steps: int, steps_per_execution: int) -> bool:
    """Whether an epoch is a whole number of Keras' calls: what exact and mid-epoch resumes need."""
    return steps % steps_per_execution == 0


class StepBackup(keras.callbacks.Callback):
    """Backs a run up every `every_n_steps` batches within an epoch, beside `BackupAndRestore`'s epoch
    backup in `backup_dir`, and restores the backup a run resumes from (`start`).

    The backup is one file, `step.weights.h5`, written whole (beside its place, then renamed over the
    last one): the weights, the optimizer state and the dropout layers' seeds (all that
    `save_weights` keeps), where it was taken, and the epoch's metric totals so far, so the resumed
    epoch logs the loss of the whole epoch (not on a multi-worker cluster: `_metrics_variables`). It is
    removed at the epoch's end, when the epoch backup (written before, by `BackupAndRestore`, placed
    before this callback) holds more.

    Args:
        backup_dir: the run's backup folder.
        every_n_steps: batches between two backups (at multiples of it within each epoch); with
            `steps_per_execution` k, at the first call that reaches a multiple; 0: none (the callback
            then only restores `start`'s backup).
        steps: batches per epoch.
        start: where the run resumes (`read_position`); a backup is loaded if it lies within an epoch.
    """

    def __init__(self, backup_dir: str, every_n_steps: int, steps: int, start: Position = Position(0)):
        super().__init__()
        self.path = os.path.join(backup_dir, STEP_BACKUP)
        self.every_n_steps, self.steps, self.start = int(every_n_steps), int(steps), start
        self._epoch = self._offset = self._done = 0
        self._totals: dict[str, np.ndarray] = {}

    def on_train_begin(self, logs=None):
        if not self.start.batch:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.path)
        with h5py.File(self.path, "r") as f:
            group = f[_GROUP].get("metrics")
            self._totals = {} if group is None else {
                path: np.asarray(group[path]) for path in _dataset_paths(group)}
        # Keras reads it after on_train_begin ("can be set by callbacks", as BackupAndRestore does): the
        # epoch backup may be older (a fallback to its previous copy)
        self.model._initial_epoch = self.start.epoch

    def on_epoch_begin(self, epoch, logs=None):
        resumed = epoch == self.start.epoch and self.start.batch
        self._epoch = epoch
        self._offset = self._done = self.start.batch if resumed else 0
        if resumed:  # after fit reset them: the totals of the batches trained before the kill (on several
            # replicas, a sum variable read back as the value assigned, so that totals go on adding up)
            for variable in self._metrics_variables():
                if variable.path in self._totals:
                    variable.assign(self._totals[variable.path])
        self._totals = {}

    def on_train_batch_end(self, batch, logs=None):
        position = self._offset + batch + 1  # batches of this epoch done
        n = self.every_n_steps
        if n and position // n > self._done // n and position < self.steps:
            self._save(position)
        self._done = position

    def on_epoch_end(self, epoch, logs=None):
        if os.path.exists(self.path):
            os.remove(self.path)

    def _save(self, position: int) -> None:
        with fileio.atomic_path(self.path) as tmp:
            self.model.save_weights(tmp)
            with h5py.File(tmp, "a") as f:
                group = f.create_group(_GROUP)
                group.attrs["epoch"] = self._epoch
                group.attrs["batch"] = position
                for variable in self._metrics_variables():
                    group.create_dataset(f"metrics/{variable.path}", data=np.asarray(variable))

    def _metrics_variables(self) -> list:
        # On the workers of a cluster, reading a metric's total sums it over the workers (a collective
        # that every worker would have to reach at once): their resumed epoch logs the batches after it.
        return [] if distribution.is_multi_worker(self.model.distribute_strategy) else self.model.metrics_variables


def _dataset_paths(group: h5py.Group) -> list[str]:
    paths = []
    group.visititems(lambda name, item: paths.append(name) if isinstance(item, h5py.Dataset) else None)
    return paths


class OneRun(keras.callbacks.CallbackList):
    """The callbacks of a training run for which `fit` is called twice (the rest of a resumed epoch,
    then the epochs after it): they see one run, begun by the first call and ended by `end()`, with one
    History. Keras makes a list of its own for each call otherwise: early stopping and the best
    checkpoint would start over at the second call."""

    def __init__(self, callbacks: list, model: keras.Model, epochs: int, steps: int):
        super().__init__(callbacks, add_history=True, add_progbar=True, model=model, verbose=1, epochs=epochs,
                         steps=steps)
        self._begun, self._logs = False, None

    def on_train_begin(self, logs=None):
        if self._begun:  # a later call: where to start is fit's initial_epoch, not the first call's backup's
            self.model._initial_epoch = None
            return
        self._begun = True
        super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        self._logs = logs

    def end(self) -> None:
        super().on_train_end(self._logs)


def fit_from(model: keras.Model, train: tf.data.Dataset, start: Position, *, epochs: int, steps: int,
             callbacks: list, steps_per_execution: int = 1,
             rebuild_train: Callable[[], tf.data.Dataset] | None = None) -> keras.callbacks.History:
    """`model.fit` over the epochs from `start` to `epochs`, `steps` batches each, on the batches the
    uninterrupted run trains on (`batches_from`). (The dataset shuffles itself; `shuffle=False` only
    silences Keras' warning that it ignores the flag.)

    From within an epoch, two calls: the epoch's remaining batches, then the later epochs (unless early
    stopping ended the run). The second call needs the training dataset built again (`rebuild_train`):
    a shuffled dataset draws each iteration's order from a state it keeps, which the first call's
    iterator advanced by an unknown number of passes (prefetching), so the same dataset iterated again
    would not shuffle its k-th pass as the uninterrupted run did. (Measured on SST-2's 60.6k training
    sentences: 6.9 s to build it again, tokenization included, and 1.9 s to skip to the next epoch.)
    """
    def fit(dataset, first: int, last: int, batches: int, callbacks):
        return model.fit(dataset, initial_epoch=first, epochs=last, steps_per_epoch=batches, callbacks=callbacks,
                         verbose=1, shuffle=False)

    if not start.batch:
        return fit(batches_from(train, start, steps, steps_per_execution), start.epoch, epochs, steps, callbacks)
    if start.epoch + 1 < epochs and rebuild_train is None:
        raise ValueError("fit_from: resuming within an epoch before the last needs rebuild_train")
    # (a backup within an epoch is taken only when steps_per_execution divides it: batches_from repeats)
    run = OneRun(callbacks, model, epochs, steps - start.batch)
    history = fit(batches_from(train, start, steps), start.epoch, start.epoch + 1, steps - start.batch, run)
    if start.epoch + 1 < epochs and not model.stop_training:
        run.set_params({**run.params, "steps": steps})
        history = fit(batches_from(rebuild_train(), Position(start.epoch + 1), steps), start.epoch + 1, epochs,
                      steps, run)
    run.end()
    return history
