"""A resumed run's TensorBoard folder (`tfbert.training.tensorboard_logs`); the whole resume is checked
against an uninterrupted run in test_classification.py."""

import os

import tensorflow as tf

from tfbert.training.tensorboard_logs import drop_points_after


def _points(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [e.step for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}


def test_points_past_the_backup_go_and_a_record_cut_short_is_left_out(tmp_path):
    for run in ("train", "validation", "other"):
        with tf.summary.create_file_writer(str(tmp_path / run)).as_default():
            for step in range(1, 9):
                tf.summary.scalar("batch_loss", 1.0 / step, step=step)
            for epoch in range(3):
                tf.summary.scalar("epoch_loss", float(epoch), step=epoch)
    (train_file,) = os.listdir(tmp_path / "train")
    path = tmp_path / "train" / train_file
    path.write_bytes(path.read_bytes()[:-6])  # killed while writing its last record (epoch 2's)

    # resumed after 1 epoch and 5 updates: epoch 0's points and updates 1-5 were logged before the backup
    # (train's epoch 2 point is the record cut short: not read, so not counted)
    assert drop_points_after(str(tmp_path), epochs_done=1, updates_done=5) == (3 + 1) + (3 + 2)
    for run in ("train", "validation"):
        assert _points(tmp_path / run) == {"batch_loss": [1, 2, 3, 4, 5], "epoch_loss": [0]}
    assert _points(tmp_path / "other") == {"batch_loss": list(range(1, 9)), "epoch_loss": [0, 1, 2]}  # not a run's
    assert sorted(os.listdir(tmp_path / "train")) == [train_file]  # replaced in place, no temporary left
    assert drop_points_after(str(tmp_path / "missing"), 0, 0) == 0


def test_a_resumed_run_leaves_the_logs_of_a_run_that_took_its_folder_since(tmp_path, tiny_model_dir, capsys):
    # Two runs of one name (only --output_dir differs) share the default TensorBoard folder: A is killed,
    # B runs whole (moving A's logs aside), then A resumes. A used to cut B's points after A's backup and
    # log on into B's folder; now B's folder is moved aside whole and A writes a folder of its own.
    import pytest
    from conftest import write_sentiment_csv
    from test_classification import Interrupt, _config, stop_before_epoch

    from tfbert.training import runner

    train = write_sentiment_csv(tmp_path / "train.csv", 48, seed=3)
    first = _config(tmp_path, tiny_model_dir, train_file=train, output_dir=str(tmp_path / "a"), epochs=3)
    second = _config(tmp_path, tiny_model_dir, train_file=train, output_dir=str(tmp_path / "b"), epochs=3)
    with pytest.raises(Interrupt):
        runner.fit_and_evaluate(first, runner.prepare(first), extra_callbacks=(stop_before_epoch(2),),
                                write_exports=False)
    runner.fit_and_evaluate(second, runner.prepare(second), write_exports=False)
    second_points = _points(tmp_path / "tb" / "train")
    assert second_points["epoch_loss"] == [0, 1, 2]
    capsys.readouterr()
    runner.fit_and_evaluate(first, runner.prepare(first), write_exports=False)
    out = capsys.readouterr().out
    assert f"held the logs of the run in {tmp_path / 'b'}, started there since this one was stopped" in out
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("tb.old-")]
    assert second_points in [_points(p / "train") for p in moved]  # B's curves, whole
    assert _points(tmp_path / "tb" / "train")["epoch_loss"] == [1, 2]  # A's resumed epochs
