"""A resumed run's TensorBoard folder: the points the killed run logged after the backup it resumes from.

A run killed after its last backup has logged the batches (loss, learning rate, examples/s) and maybe
epochs past it; resumed, it trains them again and logs them again, so each such step held two points
(overlapping curves, and twice the rows in TensorBoard's CSV download). `drop_points_after` takes them
out of the earlier processes' event files before the resumed run writes its own.
"""

from __future__ import annotations

import glob
import json
import os

import tensorflow as tf

from tfbert import fileio

EPOCH_TAG_PREFIX = "epoch_"  # Keras' TensorBoard callback: step = the epoch's index, from 0
OWNER_FILE = "tfbert_run.json"  # in a run's TensorBoard folder: the run (its output folder) that writes it


def claim(log_dir: str, output_dir: str) -> None:
    """Records that the run in `output_dir` writes `log_dir`: two runs of one name (other --output_dir)
    share the default TensorBoard folder, and a resumed run must not cut the other's points (`owner`)."""
    os.makedirs(log_dir, exist_ok=True)
    fileio.write_json(os.path.join(log_dir, OWNER_FILE), {"output_dir": os.path.abspath(output_dir)})


def owner(log_dir: str) -> str | None:
    """The output folder of the run that `claim`ed `log_dir`; None when no run did (an empty folder, or logs
    of a tfbert from before the record, taken as the resumed run's own)."""
    try:
        with open(os.path.join(log_dir, OWNER_FILE), encoding="utf-8") as f:
            return json.load(f).get("output_dir")
    except (OSError, ValueError, AttributeError):
        return None


def drop_points_after(log_dir: str, epochs_done: int, updates_done: int) -> int:
    """Removes from `<log_dir>/train` and `<log_dir>/validation` the scalars of epochs from `epochs_done`
    on (`epoch_*` tags, stepped by epoch index) and of optimizer updates after `updates_done` (every
    other tag, stepped by update); returns how many points went. Each rewritten file is replaced whole."""
    from tensorflow.core.util import event_pb2

    dropped = 0
    for path in sorted(glob.glob(os.path.join(log_dir, "*", "events.out.tfevents.*"))):
        if os.path.basename(os.path.dirname(path)) not in ("train", "validation"):
            continue
        kept, removed = [], 0
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            tags = [value.tag for value in event.summary.value]
            if tags and any(event.step >= epochs_done if tag.startswith(EPOCH_TAG_PREFIX)
                            else event.step > updates_done for tag in tags):
                removed += 1
            else:
                kept.append(record)
        if removed:
            with fileio.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                for record in kept:
                    writer.write(record)
            dropped += removed
    return dropped


def _records(path: str) -> list[bytes]:
    """The whole records of an event file; a last one cut short (the run was killed while writing it,
    which TensorBoard skips too) is left out."""
    records = []
    iterator = tf.data.TFRecordDataset(path).as_numpy_iterator()
    while True:
        try:
            records.append(next(iterator))
        except StopIteration:
            return records
        except tf.errors.DataLossError:
            return records
