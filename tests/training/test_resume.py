"""Where a killed run resumes from: the step backup's position, stale and damaged backups, and the
point the workers of a cluster agree on. (Resumed runs themselves: tests/training/test_classification.py,
`test_a_resumed_run_trains_exactly_as_the_uninterrupted_run`.)"""

import h5py
import pytest

from tfbert.training import distribution, resume
from tfbert.training.run_config import ClassifierRunConfig, without_placement


def _step_backup(backup_dir, epoch, batch):
    backup_dir.mkdir(exist_ok=True)
    with h5py.File(backup_dir / resume.STEP_BACKUP, "w") as f:
        group = f.create_group("tfbert_step_backup")
        group.attrs["epoch"], group.attrs["batch"] = epoch, batch
    return backup_dir / resume.STEP_BACKUP


def test_a_run_resumes_from_its_latest_backup(tmp_path):
    backup = tmp_path / "backup"
    assert resume.read_position(str(backup), 0) == resume.Position(0, 0)  # nothing backed up: from the start
    assert resume.read_position(str(backup), 2) == resume.Position(2, 0)  # at an epoch end
    _step_backup(backup, 2, 30)
    assert resume.read_position(str(backup), 2) == resume.Position(2, 30)  # within the epoch after it
    assert resume.Position(2, 30).describe(100) == "2 epoch(s) and 30 of the 100 batches of epoch 3"
    assert resume.Position(2).describe(100) == "2 epoch(s)"


def test_a_step_backup_older_than_the_epoch_backup_is_removed(tmp_path):
    # a run killed at an epoch end, after the epoch's backup and before its step backup was removed
    path = _step_backup(tmp_path / "backup", 1, 30)
    assert resume.read_position(str(tmp_path / "backup"), 2) == resume.Position(2, 0)
    assert not path.exists()


def test_a_damaged_step_backup_is_set_aside_and_the_epoch_backup_used(tmp_path, capsys):
    (tmp_path / "backup").mkdir()
    path = tmp_path / "backup" / resume.STEP_BACKUP
    path.write_bytes(b"\x89HDF\r\n not really")
    assert resume.read_position(str(tmp_path / "backup"), 1) == resume.Position(1, 0)
    assert not path.exists() and (tmp_path / "backup" / "step.weights.h5.unreadable").exists()
    out = capsys.readouterr().out
    assert f"WARNING: {path}: not a readable backup" in out and "resuming from the last epoch's backup" in out


def test_a_step_backup_cut_short_is_set_aside_before_training(tmp_path):
    import numpy as np

    path = _step_backup(tmp_path / "backup", 1, 30)
    with h5py.File(path, "a") as f:
        f["layers/dense/vars/0"] = np.arange(100_000, dtype=np.float32)
    path.write_bytes(path.read_bytes()[:200_000])  # (a write the machine lost power during: HDF5 checks the
    # file's recorded end when it opens one)
    assert resume.read_position(str(tmp_path / "backup"), 1) == resume.Position(1, 0)
    assert (tmp_path / "backup" / "step.weights.h5.unreadable").exists()


def test_the_batches_from_a_point_are_the_uninterrupted_runs():
    import tensorflow as tf

    epochs = tf.data.Dataset.range(5)  # an epoch of 5 batches, the same order each pass here
    assert list(resume.batches_from(epochs, resume.Position(1, 2), 5).take(4).as_numpy_iterator()) == [2, 3, 4, 0]
    # calls of 2 batches do not divide the epoch: each fit epoch iterates the dataset anew
    assert resume.batches_from(epochs, resume.Position(1, 0), 5, steps_per_execution=2) is epochs


def test_the_workers_resume_from_the_point_they_all_hold(capsys):
    assert distribution.agreed_position([(1, 30, 1, 0), (1, 30, 1, 0)], 1, "backup") == (1, 30, False)
    # one worker was killed while writing its step backup: both go back to the epoch's start
    assert distribution.agreed_position([(1, 30, 1, 0), (1, 20, 1, 0)], 1, "backup") == (1, 0, False)
    assert "the workers' backups within epoch 2 differ" in capsys.readouterr().out
    with pytest.raises(distribution.ClusterError, match=r"backups hold different epochs \(1, 2 done; this worker's, "
                                                        r"backup-worker-1, holds 2\)"):
        distribution.agreed_position([(1, 0, 1, 0), (2, 0, 2, 0)], 2, "backup-worker-1")
    # the chief's backup says training finished (the other workers' backups went with their training):
    # every worker goes to its point and trains nothing
    assert distribution.agreed_position([(3, 0, 3, 1), (0, 0, 0, 0)], 0, "backup-worker-1") == (3, 0, True)
    assert distribution.agreed_position([(3, 0, 3, 1), (2, 0, 2, 0)], 2, "backup-worker-1") == (3, 0, True)
    assert not capsys.readouterr().out


def test_the_backup_frequency_is_checked_and_may_change_on_resume():
    with pytest.raises(ValueError, match="field 'backup_every_n_steps' must be a non-negative integer "
                                         r"\(0: at epoch ends only\), found -1"):
        ClassifierRunConfig(backup_every_n_steps=-1)
    assert ClassifierRunConfig().backup_every_n_steps == 500
    # what must match for a run to resume: not how often it is backed up
    assert without_placement(ClassifierRunConfig(backup_every_n_steps=0).to_dict()) == \
        without_placement(ClassifierRunConfig().to_dict())
