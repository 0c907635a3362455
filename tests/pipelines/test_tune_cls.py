"""`python pipelines/tune_cls.py` as a user runs it: killed and resumed, and spread over workers."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import write_sentiment_csv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "pipelines", "tune_cls.py")
STARTED = re.compile(r"^trial \d+ of \d+ \((\w+)\) started on (\w+):", re.M)


def _command(tmp_path, model_dir, train, space, *extra):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(space, encoding="utf-8")
    return [sys.executable, SCRIPT, "--model", model_dir, "--train_file", train, "--max_seq_length", "24",
            "--search_space", str(space_file), "--output_dir", str(tmp_path / "search"),
            "--log_dir", str(tmp_path / "tb"), "--seed", "3", *extra]


def _rows(tmp_path):
    with open(tmp_path / "search" / "results.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _status(tmp_path, trial_id):
    path = tmp_path / "search" / "trials" / f"trial_{trial_id}" / "trial.json"
    try:
        return json.loads(path.read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def _kill(processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues_the_grid(tmp_path, tiny_model_dir):
    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=5)
    space = ("learning_rate: {type: choice, values: [0.01, 0.003, 0.001]}\n"
             "batch_size: 8\nepochs: 3\nwarmup_ratio: null\nweight_decay: null\ndropout: null\n"
             "layerwise_lr_decay: null\n")  # 3 epochs of 8 batches: time to see trial 1 mid-way
    # grid: KerasTuner 1.4.8 alone would stop at once on resume (keras-team/keras-tuner#1055)
    command = _command(tmp_path, tiny_model_dir, train, space, "--tuner", "grid", "--max_trials", "3",
                       "--export", "none")
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        backup = tmp_path / "search" / "trials" / "trial_1" / "backup" / "training_metadata.json"
        # killed in trial 1, after its first epoch
        while not (_status(tmp_path, 0) == "COMPLETED" and _status(tmp_path, 1) == "RUNNING" and backup.exists()):
            assert process.poll() is None, "the search ended before it could be killed"
            assert time.time() < deadline, "trial 1 never finished an epoch"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        _kill([process])
        log.close()
    assert [r["status"] for r in _rows(tmp_path)] == ["COMPLETED"]  # written as trial 0 ended
    # started by a tfbert without the has_header field (added since): the search, the interrupted trial's run
    # and its backup resume as they are, the field at its default (a fresh trial run would lose trial 1's epoch)
    trial_1 = tmp_path / "search" / "trials" / "trial_1"
    for path in (tmp_path / "search" / "search.json", trial_1 / "run_config.json",
                 trial_1 / "backup" / "run_config.yaml"):
        text = path.read_text(encoding="utf-8")
        saved = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        fields = saved["run"] if path.name == "search.json" else saved
        assert fields.pop("has_header") is None
        path.write_text(json.dumps(saved) if path.suffix == ".json" else yaml.safe_dump(saved), encoding="utf-8")

    # resumed on other devices: the trials go on under the --strategy of the new command
    mirrored = ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"]
    result = subprocess.run(command + mirrored, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "strategy: MirroredStrategy, 2 replicas on CPU:0, CPU:1; global batch 8 = 4 per replica" in result.stdout
    replicas = [json.loads((tmp_path / "search" / "trials" / f"trial_{t}" / "trial_run.json").read_text())
                ["metrics"]["replicas"] for t in range(3)]
    assert replicas == [1, 2, 2]
    assert "resuming the search" in result.stdout and "1 of 3 trials done, 1 interrupted trial(s) run again" \
        in result.stdout
    assert [trial_id for trial_id, _ in STARTED.findall(result.stdout)] == ["1", "2"]  # trial 0 is not repeated
    # trial 1 goes on from the epoch it had finished
    assert re.search(r"trials/trial_1/backup: [12] epoch\(s\) already done", result.stdout)
    rows = _rows(tmp_path)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    assert sorted(float(r["learning_rate"]) for r in rows) == [0.001, 0.003, 0.01]  # the whole grid, once
    assert (tmp_path / "search" / "best_hparams.yaml").exists()


@pytest.mark.slow
def test_a_chief_and_two_workers_run_every_trial_once(tmp_path, tiny_model_dir):
    from tfbert.tuning import free_port

    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=6)
    space = ("learning_rate: {type: float, min: 1e-3, max: 1e-2, sampling: log}\n"
             "batch_size: 16\nepochs: 1\nwarmup_ratio: null\nweight_decay: null\ndropout: null\n"
             "layerwise_lr_decay: null\n")
    address = f"127.0.0.1:{free_port()}"
    command = _command(tmp_path, tiny_model_dir, train, space, "--max_trials", "3", "--oracle_address", address)
    roles = {"chief": ["--role", "chief"], "worker0": ["--role", "worker", "--worker_index", "0"],
             "worker1": ["--role", "worker", "--worker_index", "1",  # workers may run on other devices
                         "--strategy", "mirrored", "--devices", "CPU:0,CPU:1"]}
    logs = {name: open(tmp_path / f"{name}.log", "w+") for name in roles}
    processes = {name: subprocess.Popen(command + flags, stdout=logs[name], stderr=subprocess.STDOUT)
                 for name, flags in roles.items()}
    try:
        deadline = time.time() + 420
        for name, process in processes.items():
            process.wait(timeout=max(1.0, deadline - time.time()))
        outputs = {}
        for name, log in logs.items():
            log.seek(0)
            outputs[name] = log.read()
        for name, process in processes.items():
            assert process.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
    finally:
        _kill(list(processes.values()))
        for log in logs.values():
            log.close()

    runs = [run for name in ("worker0", "worker1") for run in STARTED.findall(outputs[name])]
    assert sorted(trial_id for trial_id, _ in runs) == ["0", "1", "2"]  # every trial once
    assert {worker for _, worker in runs} == {"worker0", "worker1"}  # on both workers
    rows = _rows(tmp_path)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    assert {r["trial_id"]: r["worker"] for r in rows} == dict(runs)
    assert "chief: oracle listening on " + address in outputs["chief"]
    assert "MirroredStrategy, 2 replicas" in outputs["worker1"] and "MirroredStrategy" not in outputs["worker0"]
    assert "best model: exporting the weights of trial" in outputs["chief"]
    assert (tmp_path / "search" / "best_model" / "saved_model" / "1").exists()
