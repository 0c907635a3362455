"""--strategy / --devices / --tpu: strategies, their errors, and mirrored training that takes the
same steps as one device."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tfbert.config import ConfigError
from tfbert.training import distribution
from tfbert.training.run_config import ClassifierRunConfig

HERE = os.path.dirname(os.path.abspath(__file__))


def _check(kind, *args):
    result = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_check.py"), kind, *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_mirrored_over_two_devices_takes_the_steps_of_one_device():
    # Keras alone clips each replica's part of the gradient (so a clip norm that always clips
    # gives other steps) and fails under MirroredStrategy with gradient accumulation.
    cases = _check("optimizer")
    assert [case["case"]["head"] for case in cases] == ["classifier", "classifier", "tagger", "tagger"]
    for case in cases:
        assert case["replicas"] == 2
        assert case["updates"][0] == case["updates"][1] > 0
        assert case["moved"] > 1e-3  # the runs trained
        tolerance = 1e-4 if case["case"]["dtype"] == "mixed_float16" else 1e-6
        assert case["weight_diff"] < tolerance, case
        assert case["loss"][0] == pytest.approx(case["loss"][1], abs=tolerance)


@pytest.mark.slow
def test_static_shapes_on_two_replicas_train_on_whole_batches_and_evaluate_every_example(tmp_path):
    # What a TPU needs, checked on two logical CPUs: batch_size x one of a few lengths, always.
    cases = {case["task"]: case for case in _check("static", tmp_path)}
    assert set(cases) == {"classification", "token_classification", "question_answering", "masked_lm",
                          "steps_per_execution", "steps_per_execution_run"}
    assert cases.pop("steps_per_execution")["error"].startswith(
        "steps_per_execution: 2 steps per call fail under MirroredStrategy in Keras 3.")
    run = cases.pop("steps_per_execution_run")
    assert run["error"].startswith("steps_per_execution: 2 steps per call fail") and run["output_dir"] is False
    for case in cases.values():
        assert case["replicas"] == 2 and case["distributed_fn"]
        # Training: whole batches of 4 only (45 examples: at most 11 per epoch), of fixed lengths.
        assert {shape[0] for shape in case["shapes"]["train"]} == {4}
        assert {shape[1] for shape in case["shapes"]["train"]} <= {16, 24}
        assert case["steps_per_epoch"] <= case["train_examples"] // 4
        assert case["optimizer_steps"] == 2 * case["steps_per_epoch"]
        # Evaluation: the partial batches were filled up with rows weighted 0, and nothing else
        assert {shape[0] for shape in case["shapes"]["validation"]} == {4}
        assert {shape[1] for shape in case["shapes"]["validation"]} <= {16, 24}
        assert case["validation_rows"] == case["examples"]
        # and gives the figures of a plain evaluation on the host.
        assert case["batches"][0] == case["batches"][1]
        assert case["output_diff"] is None or case["output_diff"] < 1e-5
        for name, value in case["host_validation"].items():
            assert case["validation"][name] == pytest.approx(value, abs=1e-6), name
    assert cases["classification"]["support"] == 19  # every validation example counted once
    assert {shape[1] for shape in cases["token_classification"]["shapes"]["validation"]} == {16, 24}
    assert cases["question_answering"]["validation_rows"] > 19  # the 19 questions' windows, every one


@pytest.mark.slow
def test_tpu_without_a_tpu_is_a_clear_error():
    (case,) = _check("tpu")
    assert case["error"].startswith("--strategy tpu: no TPU found at --tpu 'local'")
    assert "on a TPU VM use --tpu local" in case["error"]


def test_auto_and_default_run_on_one_device_here():
    assert tf.config.list_physical_devices("GPU") == []  # this machine; auto picks mirrored with 2+ GPUs
    for name in ("auto", "default"):
        strategy = distribution.make_strategy(name)
        assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    one = distribution.make_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and one.num_replicas_in_sync == 1
    assert distribution.make_strategy("one_device") is one  # created once per process
    assert distribution.describe(one, 32) == "strategy: OneDeviceStrategy, 1 replica; global batch 32"
    assert distribution.describe(tf.distribute.get_strategy(), 8) == ("strategy: default (one device), 1 replica; "
                                                                      "global batch 8")


@pytest.mark.parametrize("name, devices, tpu, message", [
    ("mirrorred", None, None, "--strategy: expected one of auto, default, one_device, mirrored, tpu, multi_worker, found "
                                  "'mirrorred'"),
    ("auto", "GPU:0", None, "--devices goes with --strategy mirrored or one_device, not 'auto'"),
    ("mirrored", None, "my-tpu", "--tpu goes with --strategy tpu, not 'mirrored'"),
    ("one_device", "CPU:0,CPU:1", None, "--strategy one_device takes one device, --devices names 2"),
    ("mirrored", "GPU", None, "--devices: 'GPU' is not a device name; expected TYPE:INDEX"),
    ("mirrored", "CPU:0,cpu:0", None, "--devices: a device is named twice"),
    ("mirrored", "GPU:0,GPU:1", None, "--devices: this machine has no GPU:0 (it has CPU:0)"),
    # the pytest process has started TensorFlow, so the CPU cannot be split any more
    ("mirrored", "CPU:0,CPU:1", None, "--devices names 2 CPU devices, but TensorFlow has already started with 1"),
])
def test_strategy_errors_name_the_flag(name, devices, tpu, message):
    tf.constant(1)  # TensorFlow has started
    with pytest.raises(ConfigError) as error:
        distribution.make_strategy(name, devices, tpu)
    assert message in str(error.value)


def test_worker_hosts_give_each_worker_its_tf_config():
    hosts = "10.0.0.1:2222, 10.0.0.2:2222"
    assert distribution.cluster_spec(hosts, 1) == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                                                   "task": {"type": "worker", "index": 1}}
    for hosts, index, message in [("10.0.0.1,10.0.0.2:2222", 0, "--worker_hosts: '10.0.0.1' is not host:port"),
                                  ("a:1,a:1", 0, "--worker_hosts: an address is named twice"),
                                  ("a:1,b:1", 2, "--task_index: 2 is not a worker of --worker_hosts (0 to 1)")]:
        with pytest.raises(ConfigError) as error:
            distribution.cluster_spec(hosts, index)
        assert message in str(error.value)


@pytest.mark.parametrize("name, hosts, index, tf_config, message", [
    ("mirrored", "a:1,b:1", 0, None, "--worker_hosts and --task_index go with --strategy multi_worker, not 'mirrored'"),
    ("multi_worker", "a:1,b:1", None, None, "--worker_hosts and --task_index go together"),
    ("multi_worker", None, None, None, "--strategy multi_worker: no cluster; set TF_CONFIG or give --worker_hosts"),
    ("multi_worker", None, None, '{"cluster": {}}', "TF_CONFIG: not a cluster spec"),
])
def test_multi_worker_errors_name_the_flag(monkeypatch, name, hosts, index, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError) as error:
        distribution.make_strategy(name, worker_hosts=hosts, task_index=index)
    assert message in str(error.value)


def test_only_worker_zero_of_a_cluster_is_the_chief():
    class Resolver:
        def __init__(self, task_type, task_id, jobs):
            self.task_type, self.task_id, self.jobs = task_type, task_id, jobs

        def cluster_spec(self):
            return tf.train.ClusterSpec(self.jobs)

    class Cluster(tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self, resolver):  # (no collective runtime: only the cluster's description)
            self.resolver = resolver

        @property
        def cluster_resolver(self):
            return self.resolver

    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert [distribution.worker_index(Cluster(Resolver("worker", i, workers))) for i in range(3)] == [0, 1, 2]
    assert [distribution.is_chief(Cluster(Resolver("worker", i, workers))) for i in range(3)] == [True, False, False]
    # A TF_CONFIG with a "chief" job: the chief is worker 0, the "worker" tasks come after it.
    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert distribution.is_chief(Cluster(Resolver("chief", 0, with_chief)))
    assert distribution.worker_index(Cluster(Resolver("worker", 0, with_chief))) == 1
    assert distribution.is_chief(tf.distribute.get_strategy())  # one process: it writes everything


def test_batch_size_must_split_over_the_replicas():
    class TwoReplicas:
        num_replicas_in_sync = 2

    distribution.check_batch_size(TwoReplicas(), 32)
    with pytest.raises(ConfigError, match="batch_size: 31 does not split over 2 replicas; use a multiple of 2"):
        distribution.check_batch_size(TwoReplicas(), 31)


def test_run_config_flags_and_their_errors(tmp_path, capsys):
    config = ClassifierRunConfig.from_args(["--strategy", "mirrored", "--devices", "GPU:0,GPU:1"])
    assert (config.strategy, config.devices, config.tpu) == ("mirrored", "GPU:0,GPU:1", None)
    assert ClassifierRunConfig().strategy == "auto"
    with pytest.raises(ValueError, match="field 'devices' must be given only with strategy mirrored or one_device "
                                         r"\(strategy is 'auto'\)"):
        ClassifierRunConfig(devices="GPU:0")
    with pytest.raises(ValueError, match="field 'tpu' must be given only with strategy tpu"):
        ClassifierRunConfig(strategy="mirrored", tpu="local")
    config = ClassifierRunConfig.from_args(["--strategy", "multi_worker", "--worker_hosts", "a:1,b:1",
                                            "--task_index", "1"])
    assert (config.worker_hosts, config.task_index) == ("a:1,b:1", 1)
    with pytest.raises(ValueError, match="field 'worker_hosts' must be given only with strategy multi_worker "
                                         r"\(strategy is 'mirrored'\)"):
        ClassifierRunConfig(strategy="mirrored", worker_hosts="a:1,b:1", task_index=0)
    with pytest.raises(ValueError, match="field 'task_index' must be given together with worker_hosts"):
        ClassifierRunConfig(strategy="multi_worker", worker_hosts="a:1,b:1")
    with pytest.raises(ValueError, match="field 'task_index' must be a non-negative integer, found -1"):
        ClassifierRunConfig(strategy="multi_worker", worker_hosts="a:1,b:1", task_index=-1)
    (tmp_path / "run.yaml").write_text("strategy: tpus\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        ClassifierRunConfig.from_args(["--config", str(tmp_path / "run.yaml")])
    assert ("field 'strategy' must be auto | default | one_device | mirrored | tpu | multi_worker, "
            "found 'tpus'") in capsys.readouterr().err


def test_an_interrupted_run_resumes_on_other_devices(tmp_path):
    from tfbert.training.runner import check_backup_matches

    backup = str(tmp_path / "backup")
    check_backup_matches(backup, ClassifierRunConfig(strategy="default"))
    check_backup_matches(backup, ClassifierRunConfig(strategy="mirrored", devices="GPU:0,GPU:1"))  # accepted
    with pytest.raises(ConfigError, match="batch_size: 32 -> 64"):
        check_backup_matches(backup, ClassifierRunConfig(strategy="mirrored", batch_size=64))
    # but not onto a TPU, whose static shapes give other batches (and the other way round)
    with pytest.raises(ConfigError, match="static_shapes: False -> True"):
        check_backup_matches(backup, ClassifierRunConfig(strategy="tpu"))
    tpu_backup = str(tmp_path / "tpu_backup")
    check_backup_matches(tpu_backup, ClassifierRunConfig(strategy="tpu"))
    check_backup_matches(tpu_backup, ClassifierRunConfig(strategy="mirrored", static_shapes=True))  # accepted
    with pytest.raises(ConfigError, match="static_shapes: True -> False"):
        check_backup_matches(tpu_backup, ClassifierRunConfig(strategy="default"))


def test_a_run_interrupted_before_a_field_was_added_resumes_at_its_default(tmp_path):
    import yaml

    from tfbert.training.runner import check_backup_matches

    backup = tmp_path / "backup"
    check_backup_matches(str(backup), ClassifierRunConfig())
    saved = yaml.safe_load((backup / "run_config.yaml").read_text())
    del saved["lora_rank"], saved["lora_targets"]  # as written by a tfbert without LoRA
    (backup / "run_config.yaml").write_text(yaml.safe_dump(saved))
    check_backup_matches(str(backup), ClassifierRunConfig())  # accepted
    with pytest.raises(ConfigError, match="lora_rank: None -> 8"):
        check_backup_matches(str(backup), ClassifierRunConfig(lora_rank=8))


def test_an_interrupted_run_does_not_resume_on_other_contents_of_its_data_file(tmp_path):
    from tfbert.training.runner import check_backup_matches

    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    backup = str(tmp_path / "backup")
    check_backup_matches(backup, ClassifierRunConfig(train_file=str(train)))
    check_backup_matches(backup, ClassifierRunConfig(train_file=str(train)))  # the same contents: resumes
    # the same contents under another path (the file moved, or named from another working directory): resumes
    (tmp_path / "moved").mkdir()
    moved = tmp_path / "moved" / "train.csv"
    moved.write_bytes(train.read_bytes())
    check_backup_matches(backup, ClassifierRunConfig(train_file=str(moved)))
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "moved")
        check_backup_matches(backup, ClassifierRunConfig(train_file="train.csv"))
    finally:
        os.chdir(cwd)
    train.write_text("text,label\ngood,pos\nbad,neg\nfine,pos\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"contents of train_file: 'sha256:[0-9a-f]{64}' -> 'sha256:[0-9a-f]{64}'"):
        check_backup_matches(backup, ClassifierRunConfig(train_file=str(train)))
    # other contents under another path: both named
    with pytest.raises(ConfigError, match=r"contents of train_file: .*train_file: '.*/train.csv' -> '.*/other.csv'"):
        check_backup_matches(backup, ClassifierRunConfig(train_file=str(train.rename(tmp_path / "other.csv"))))
