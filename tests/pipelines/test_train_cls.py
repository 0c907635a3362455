"""`python pipelines/train_cls.py` as a user runs it: a subprocess, killed and resumed."""

import json
import os
import subprocess
import sys

import pytest

from conftest import kill_after_first_epoch, write_sentiment_csv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(model_dir, train_file, out, tb, epochs=3):
    return [sys.executable, os.path.join(ROOT, "pipelines", "train_cls.py"), "--model", model_dir,
            "--train_file", train_file, "--epochs", str(epochs), "--batch_size", "4", "--max_seq_length", "24",
            "--learning_rate", "0.001", "--output_dir", str(out), "--log_dir", str(tb), "--seed", "3"]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_kill_9_then_same_command_resumes_with_the_same_step_count(tmp_path, tiny_model_dir):
    train = write_sentiment_csv(tmp_path / "train.csv", 160, seed=5)
    out = tmp_path / "interrupted"
    command = _command(tiny_model_dir, train, out, tmp_path / "tb")
    kill_after_first_epoch(command, out)
    assert not (out / "metrics.json").exists()

    other = command[:]
    other[other.index("--learning_rate") + 1] = "0.002"
    refused = subprocess.run(other, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and "learning_rate: 0.001 -> 0.002" in refused.stderr

    result = _run(command)
    assert "resuming from the backup" in result.stdout
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] >= 1
    assert resumed["epochs_run"] == 3 - resumed["resumed_from_epoch"]
    # every epoch's updates, once: the optimizer state came back with the weights
    assert resumed["optimizer_steps"] == 3 * resumed["steps_per_epoch"]
    assert not (out / "backup").exists()


def test_bad_flags_and_files_fail_with_a_clear_message(tmp_path):
    script = os.path.join(ROOT, "pipelines", "train_cls.py")
    result = subprocess.run([sys.executable, script, "--epochs", "zero"], capture_output=True, text=True)
    assert result.returncode == 2 and "--epochs: invalid int value: 'zero'" in result.stderr
    missing = tmp_path / "nope.csv"
    result = subprocess.run([sys.executable, script, "--train_file", str(missing), "--model", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0 and f"{missing}" in result.stderr and "not found" in result.stderr
    assert not (tmp_path / "runs").exists()  # a run refused before it started leaves no empty run folder
    # a metric the run does not report: refused before training (it failed after the first epoch, leaving
    # that epoch's best.weights.h5 and backup/ in the run folder)
    train = write_sentiment_csv(tmp_path / "train.csv", 40, seed=1)
    result = subprocess.run([sys.executable, script, "--train_file", train, "--model", str(tmp_path),
                             "--metric_for_best", "val_f1"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1 and ("train_cls.py: error: metric_for_best: val_f1 is not a metric of a "
                                       "classification run; choose one of val_accuracy, ") in result.stderr
    assert "val_macro_f1" in result.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_trains_and_serves_like_one_device(tmp_path, tiny_model_dir):
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the SavedModel's tokenizer ops)
    from safetensors.numpy import load_file

    train = write_sentiment_csv(tmp_path / "train.csv", 96, seed=5)
    runs = {}
    for name, flags in (("one", ["--strategy", "default"]),
                        ("two", ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"])):
        command = _command(tiny_model_dir, train, tmp_path / name, tmp_path / f"tb_{name}", epochs=2)
        command[command.index("--learning_rate") + 1] = "0.01"
        result = _run(command + flags)  # (clipping, accumulation, LLRD: tests/training/test_distribution.py)
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        runs[name]["stdout"] = result.stdout
    assert "strategy: MirroredStrategy, 2 replicas on CPU:0, CPU:1; global batch 4 = 2 per replica" in runs["two"]["stdout"]
    assert (runs["one"]["replicas"], runs["two"]["replicas"]) == (1, 2)
    assert runs["one"]["optimizer_steps"] == runs["two"]["optimizer_steps"] > 0
    assert runs["one"]["validation"]["accuracy"] == runs["two"]["validation"]["accuracy"] > 0.8

    one, two = (load_file(str(tmp_path / name / "hf_model" / "model.safetensors")) for name in ("one", "two"))
    assert max(float(np.abs(one[k] - two[k]).max()) for k in one) < 1e-5

    texts = tf.constant(["a good film", "this was awful", "bad"])
    probabilities = [tf.saved_model.load(str(tmp_path / name / "saved_model" / "1")).signatures["serving_default"](
        text=texts)["probabilities"].numpy() for name in ("one", "two")]
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-5)
    assert probabilities[1][:, 1].round().tolist() == [1, 0, 0]  # positive, negative, negative
