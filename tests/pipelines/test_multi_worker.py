"""`--strategy multi_worker`: two train_cls.py processes on 127.0.0.1, the same command each (but
`--task_index`), against one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import write_sentiment_csv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _command(model_dir, files, out, tb):
    return [sys.executable, os.path.join(ROOT, "pipelines", "train_cls.py"), "--model", model_dir,
            "--train_file", files[0], "--validation_file", files[1], "--test_file", files[2],
            "--epochs", "2", "--batch_size", "4", "--max_seq_length", "24", "--padding", "batch",
            "--learning_rate", "0.01", "--dropout", "0", "--seed", "3", "--output_dir", str(out), "--log_dir", str(tb)]


def _start_workers(command, hosts, stdout=subprocess.PIPE):
    """The same command on two workers, `--task_index` 0 and 1."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    return [subprocess.Popen(command + ["--strategy", "multi_worker", "--worker_hosts", hosts, "--task_index", str(i)],
                             stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
            for i in range(2)]


def _run_workers(command, hosts, timeout=600):
    workers = _start_workers(command, hosts)
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=timeout))
    finally:
        for worker in workers:  # TensorFlow catches SIGTERM: kill
            if worker.poll() is None:
                worker.kill()
    return [(worker.returncode, out, err) for worker, (out, err) in zip(workers, outputs)]


def _kill_one_when(command, hosts, killed, ready, not_ready, timeout=300):
    """Starts the two workers, kills worker `killed` (SIGKILL) once `ready()` holds, and waits for the other
    to end; returns the workers and the other's stderr."""
    import signal
    import time

    workers = _start_workers(command, hosts, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not ready():
            assert time.time() < deadline and workers[killed].poll() is None, not_ready
            time.sleep(0.02)
        os.kill(workers[killed].pid, signal.SIGKILL)
        _, err = workers[1 - killed].communicate(timeout=timeout)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    return workers, err


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path, tiny_model_dir):
    import numpy as np
    from safetensors.numpy import load_file

    files = [str(write_sentiment_csv(tmp_path / f"{split}.csv", n, seed=seed))
             for split, n, seed in (("train", 64, 5), ("dev", 16, 6), ("test", 16, 7))]
    one = subprocess.run(_command(tiny_model_dir, files, tmp_path / "one", tmp_path / "tb_one") +
                         ["--strategy", "default"], capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    hosts = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    results = _run_workers(_command(tiny_model_dir, files, tmp_path / "two", tmp_path / "tb_two"), hosts)
    for code, out, err in results:
        assert code == 0, out[-2000:] + err[-3000:]
    (_, chief_out, _), (_, worker_out, _) = results
    assert "over 2 workers (this is worker 0, the chief); global batch 4 = 2 per replica" in chief_out
    assert "worker 1: training done; the chief (worker 0) writes the outputs" in worker_out

    runs = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two")}
    assert (runs["one"]["replicas"], runs["two"]["replicas"]) == (1, 2)
    assert runs["one"]["steps_per_epoch"] == runs["two"]["steps_per_epoch"] == 16
    assert runs["one"]["optimizer_steps"] == runs["two"]["optimizer_steps"] == 32
    weights = {name: load_file(str(tmp_path / name / "hf_model" / "model.safetensors")) for name in ("one", "two")}
    moved = max(float(np.abs(weights["one"][k]).max()) for k in weights["one"])
    assert moved > 0.01
    assert max(float(np.abs(weights["one"][k] - weights["two"][k]).max()) for k in weights["one"]) < 1e-5
    assert runs["one"]["validation"]["accuracy"] == runs["two"]["validation"]["accuracy"]

    # The second worker wrote nothing that stays: the same files as a one-process run, one event
    # file per TensorBoard folder, and its backup folder gone with the finished training.
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    assert [len(fs) for _, _, fs in os.walk(tmp_path / "tb_two") if fs] == \
        [len(fs) for _, _, fs in os.walk(tmp_path / "tb_one") if fs]


@pytest.mark.slow
def test_a_killed_worker_fails_the_cluster_cleanly_and_the_same_commands_resume(tmp_path, tiny_model_dir):
    """Killed within epoch 2, after a backup within it: the cluster resumes there (every worker from
    its own backup), not from the epoch's start."""
    import shutil

    import h5py

    files = [str(write_sentiment_csv(tmp_path / f"{split}.csv", n, seed=seed))
             for split, n, seed in (("train", 64, 5), ("dev", 16, 6), ("test", 16, 7))]
    out = tmp_path / "run"
    command = _command(tiny_model_dir, files, out, tmp_path / "tb") + ["--backup_every_n_steps", "4"]
    command[command.index("--epochs") + 1] = "3"
    hosts = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))

    def step_backup(name):  # (epoch, batch) of a worker's backup within an epoch, or None
        try:
            with h5py.File(out / name / "step.weights.h5", "r") as f:
                return int(f["tfbert_step_backup"].attrs["epoch"]), int(f["tfbert_step_backup"].attrs["batch"])
        except (OSError, KeyError):
            return None

    workers, chief_err = _kill_one_when(command, hosts, 1, lambda: (step_backup("backup-worker-1") or (0, 0))[0] >= 1,
                                        "no backup within epoch 2 in time")
    # The chief reports the lost worker in one line (no traceback) and keeps its backup.
    assert workers[0].returncode == 1, chief_err[-3000:]
    assert "train_cls.py: error: --strategy multi_worker: lost contact with another worker" in chief_err
    assert "run the same command on every worker again to resume" in chief_err
    assert "Traceback" not in chief_err
    assert not (out / "metrics.json").exists()
    # the workers step together, so each wrote its backup at the step the other did
    point = step_backup("backup-worker-1")
    assert step_backup("backup") == point and point[0] == 1 and point[1] in (4, 8, 12)

    # Backups of different epochs (a worker stopped while writing its own) are refused by every worker.
    metadata = {name: out / name / "training_metadata.json" for name in ("backup", "backup-worker-1")}
    saved = {name: path.read_text() for name, path in metadata.items()}
    epochs = {name: json.loads(text)["epoch"] for name, text in saved.items()}
    kept = shutil.copy(out / "backup-worker-1" / "step.weights.h5", tmp_path / "step.weights.h5")
    metadata["backup-worker-1"].write_text(json.dumps({**json.loads(saved["backup-worker-1"]),
                                                       "epoch": epochs["backup"] + 1}))
    for code, _, err in _run_workers(command, hosts):
        assert code == 1, err[-3000:]
        assert "the workers' backups hold different epochs" in err and "Traceback" not in err
        assert "delete every worker's <output_dir>/backup* folder" in err
    for name, text in saved.items():
        metadata[name].write_text(text)
    shutil.copy(kept, out / "backup-worker-1" / "step.weights.h5")  # (older than the edited epoch: removed)

    results = _run_workers(command, hosts)
    for (code, stdout, err), backup in zip(results, ("backup", "backup-worker-1")):
        assert code == 0, stdout[-2000:] + err[-3000:]
        assert (f"resuming from the backup in {out / backup}: 1 epoch(s) and {point[1]} of the 16 batches of "
                "epoch 2 already done") in stdout
    resumed = json.loads((out / "metrics.json").read_text())
    assert (resumed["resumed_from_epoch"], resumed["resumed_from_batch"]) == point
    assert resumed["epochs_run"] == 2  # the rest of epoch 2, and epoch 3
    assert resumed["optimizer_steps"] == 3 * resumed["steps_per_epoch"] == 48
    assert not any(name.startswith("backup") for name in os.listdir(out))


@pytest.mark.slow
def test_a_chief_killed_after_training_writes_the_outputs_when_resumed_without_training(tmp_path, tiny_model_dir):
    """The chief killed while it evaluates the test split or exports, after every worker finished
    training (Keras removes the other workers' backups when their training ends): the same commands
    write the outputs from the chief's backup and train nothing, where the backups of different epochs
    were refused and the run had to start over."""

    files = [str(write_sentiment_csv(tmp_path / f"{split}.csv", n, seed=seed))
             for split, n, seed in (("train", 64, 5), ("dev", 16, 6), ("test", 16, 7))]
    out = tmp_path / "run"
    command = _command(tiny_model_dir, files, out, tmp_path / "tb")
    hosts = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    workers, worker_err = _kill_one_when(command, hosts, 0, (out / "backup" / "training_done.json").exists,
                                         "the chief did not finish training in time")
    assert workers[1].returncode == 0, worker_err[-3000:]
    assert not (out / "metrics.json").exists() and not (out / "backup-worker-1").exists()
    # the other worker may also hold a backup of the epoch before (stopped before its last epoch's backup):
    # it must not train that epoch again, alone (Keras' BackupAndRestore would start it there)
    import shutil

    shutil.copytree(out / "backup", out / "backup-worker-1")
    os.remove(out / "backup-worker-1" / "training_done.json")
    metadata = out / "backup-worker-1" / "training_metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "epoch": 1}))  # of the 2

    results = _run_workers(command, hosts)
    for code, stdout, err in results:
        assert code == 0, stdout[-2000:] + err[-3000:]
    (_, chief_out, _), (_, worker_out, _) = results
    assert "training had finished (2 epoch(s)); evaluating and writing the outputs" in chief_out
    assert "worker 1: training had finished (2 epoch(s)) on the chief; nothing to train" in worker_out
    resumed = json.loads((out / "metrics.json").read_text())
    assert (resumed["resumed_from_epoch"], resumed["epochs_run"], resumed["optimizer_steps"]) == (2, 0, 32)
    assert os.path.isdir(out / "saved_model" / "1")
    assert not any(name.startswith("backup") for name in os.listdir(out))
