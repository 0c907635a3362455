"""`tf.distribute` strategies from the `--strategy`, `--devices` and `--tpu` flags.

`strategy_for(config)` is what train_cls and every trial of a search use; the model and its
optimizer are built in `strategy.scope()` and Keras distributes `fit`, `predict` and the datasets.
`batch_size` is the global batch: each of the N replicas gets `batch_size / N` examples per step.

With several replicas, `BertAdamW` sums the replicas' gradients before clipping and accumulation,
so a mirrored run takes the same steps as a one-device run with the same global batch (Keras
alone clips each replica's part of the gradient and cannot accumulate under `MirroredStrategy`).

Strategies:
    auto: `mirrored` over all GPUs when there are several, else the default (one device).
    default: TensorFlow's default strategy: one device, no distribution.
    one_device: `OneDeviceStrategy` on `--devices` (one device) or the first GPU, else the CPU.
    mirrored: `MirroredStrategy` over `--devices` (e.g. `GPU:0,GPU:1`) or all GPUs. Naming more
        CPUs than the machine has (`--devices CPU:0,CPU:1`) splits the CPU into that many
        logical devices, which is how the distributed path is tested without GPUs.
    tpu: `TPUStrategy` on the TPU named by `--tpu` (a name or `grpc://` address; `local` on a
        TPU VM, the default). Its runs always have static shapes (`RunConfig.batching`): XLA
        compiles one program per input shape.
    multi_worker: `MultiWorkerMirroredStrategy` over several machines (processes), each running
        the same command: the cluster comes from `TF_CONFIG`, or from `--worker_hosts
        host:port,host:port,...` with `--task_index i` (this process's place in that list), which
        write it. Worker 0 is the chief. Every worker trains on its share of each global batch
        (`tf.data` shards the batches by data), keeps its own backup for resuming, and evaluates;
        only the chief writes checkpoints, metrics, TensorBoard logs and exports (see
        `tfbert.training.runner`). The strategy must exist before any TensorFlow op runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import json
import os

import keras
import tensorflow as tf

from tfbert.config import ConfigError
from tfbert.errors import TfbertError
from tfbert.training.run_config import STRATEGIES

_strategies: dict[tuple, tf.distribute.Strategy] = {}

# What a worker sees when another worker of its cluster dies or stops answering mid-step.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)


class ClusterError(TfbertError):
    """A multi-worker run lost one of its workers."""


def lost_worker(error: Exception, backup_dir: str) -> ClusterError:
    """The error a worker reports when its cluster broke: what happened and how to resume."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return ClusterError(f"--strategy multi_worker: lost contact with another worker ({first_line}); the finished "
                        f"epochs are backed up (this worker's in {backup_dir}): run the same command on every worker "
                        "again to resume")


def parse_devices(devices: str | Sequence[str] | None, source: str = "--devices") -> list[tf.DeviceSpec]:
    """`"GPU:0,GPU:1"` (or a list, or full names like `/job:localhost/device:GPU:0`) as device specs."""
    if devices is None:
        return []
    names = [d.strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if d.strip()]
    specs = []
    for name in names:
        try:
            spec = tf.DeviceSpec.from_string(name if name.startswith("/") else f"/device:{name}")
        except ValueError:
            spec = None
        if spec is None or spec.device_type is None or spec.device_index is None:
            raise ConfigError(f"{source}: {name!r} is not a device name; expected TYPE:INDEX, e.g. GPU:0 or CPU:1")
        specs.append(tf.DeviceSpec(device_type=spec.device_type.upper(), device_index=spec.device_index))
    if len({(s.device_type, s.device_index) for s in specs}) != len(specs):
        raise ConfigError(f"{source}: a device is named twice in {devices!r}")
    return specs


def _split_cpu(count: int) -> None:
    """Makes the first physical CPU `count` logical devices (before TensorFlow starts its runtime)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu) or []
    if len(current) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise ConfigError(f"--devices names {count} CPU devices, but TensorFlow has already started with "
                          f"{max(len(current), 1)}; create the strategy before running any TensorFlow op "
                          "(train_cls and tune_cls do)") from None


def _check_present(specs: list[tf.DeviceSpec]) -> list[str]:
    highest_cpu = max((s.device_index for s in specs if s.device_type == "CPU"), default=0)
    if highest_cpu >= 1:
        _split_cpu(highest_cpu + 1)
    available = {(spec.device_type, spec.device_index)
                 for spec in (tf.DeviceSpec.from_string(d.name) for d in tf.config.list_logical_devices())}
    for spec in specs:
        if (spec.device_type, spec.device_index) not in available:
            listed = ", ".join(f"{t}:{i}" for t, i in sorted(available))
            raise ConfigError(f"--devices: this machine has no {spec.device_type}:{spec.device_index} "
                              f"(it has {listed})")
    return [f"/{s.device_type.lower()}:{s.device_index}" for s in specs]


def _connect_tpu(tpu: str | None) -> tf.distribute.Strategy:
    address = tpu or "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--strategy tpu: no TPU found at --tpu {address!r} ({first_line}); on a TPU VM use "
                          "--tpu local, else the TPU's name or grpc:// address") from None
    return tf.distribute.TPUStrategy(resolver)


def cluster_spec(worker_hosts: str, task_index: int, source: str = "--worker_hosts") -> dict:
    """The `TF_CONFIG` of worker `task_index` in `"host:port,host:port,..."`.

    Raises:
        ConfigError: an address without a port, a repeated address, or an index outside the list.
    """
    hosts = [h.strip() for h in worker_hosts.split(",") if h.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigError(f"{source}: {host!r} is not host:port (e.g. 10.0.0.2:12345)")
    if len(set(hosts)) != len(hosts):
        raise ConfigError(f"{source}: an address is named twice in {worker_hosts!r}")
    if not 0 <= task_index < len(hosts):
        raise ConfigError(f"--task_index: {task_index} is not a worker of --worker_hosts (0 to {len(hosts) - 1})")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": task_index}}


def _multi_worker(worker_hosts: str | None, task_index: int | None) -> tf.distribute.Strategy:
    if worker_hosts is not None:
        os.environ["TF_CONFIG"] = json.dumps(cluster_spec(worker_hosts, task_index or 0))
    elif not os.environ.get("TF_CONFIG"):
        raise ConfigError("--strategy multi_worker: no cluster; set TF_CONFIG or give --worker_hosts "
                          "host:port,host:port and --task_index on every worker")
    else:
        try:
            task = json.loads(os.environ["TF_CONFIG"])["task"]
            task["type"], int(task["index"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError("TF_CONFIG: not a cluster spec; expected JSON like {\"cluster\": {\"worker\": "
                              "[\"host:port\", ...]}, \"task\": {\"type\": \"worker\", \"index\": 0}}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def same_position(strategy: tf.distribute.Strategy, position: tuple[int, int], epochs_done: int,
                  backup_dir: str, training_done: bool = False) -> tuple[int, int, bool]:
    """Where the workers of a multi-worker run resume, together, and whether training had finished: each
    compares the point its own backup holds, (epochs done, batches of the next epoch done), with the
    others' (one collective) before training starts (`agreed_position`). `training_done`: this worker's
    backup says the run finished training (the chief's, kept until the outputs are written)."""
    if not is_multi_worker(strategy):
        return position[0], position[1], training_done
    mine = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant([[position[0], position[1], epochs_done, int(training_done)]], tf.int64))
    points = [tuple(int(x) for x in row) for row in strategy.gather(mine, axis=0).numpy()]
    return agreed_position(points, epochs_done, backup_dir)


def agreed_position(points: list[tuple[int, int, int, int]], epochs_done: int,
                    backup_dir: str) -> tuple[int, int, bool]:
    """The point every worker resumes from, given each worker's (epoch, batch, epochs done, training
    done), and whether training had finished: the point of a backup that says training finished (the
    chief's: the other workers' backups are removed when their training ends, so a chief stopped while
    writing the outputs finds them gone), where every worker trains nothing; else the one they all hold;
    else, when their backups within an epoch differ (a worker was stopped while writing its own) and
    their epoch backups agree, the start of that epoch.

    Raises:
        ClusterError: on every worker, when the epoch backups differ too, naming the epochs and how to
            start over.
    """
    finished = [p for p in points if p[3]]
    if finished:
        return finished[0][0], finished[0][1], True
    if len({p[:2] for p in points}) == 1:
        return points[0][0], points[0][1], False
    epochs = sorted({p[2] for p in points})
    if len(epochs) == 1:
        print(f"--strategy multi_worker: the workers' backups within epoch {epochs[0] + 1} differ (a worker was "
              "stopped while writing its own); every worker resumes from the start of the epoch", flush=True)
        return epochs[0], 0, False
    raise ClusterError(f"--strategy multi_worker: the workers' backups hold different epochs "
                       f"({', '.join(map(str, epochs))} done; this worker's, {backup_dir}, holds {epochs_done}), so "
                       "they cannot resume in step: a worker was stopped while writing its backup; delete every "
                       "worker's <output_dir>/backup* folder to start the run again")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This process's worker number (0 outside a multi-worker cluster)."""
    if not is_multi_worker(strategy):
        return 0
    resolver = strategy.cluster_resolver
    return int(resolver.task_id or 0) + (1 if resolver.task_type == "worker" and
                                         "chief" in resolver.cluster_spec().as_dict() else 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: always, except on the workers of a multi-worker
    cluster other than the chief (worker 0, or the `chief` task when TF_CONFIG names one)."""
    return worker_index(strategy) == 0


def make_strategy(name: str = "auto", devices: str | Sequence[str] | None = None,
                  tpu: str | None = None, worker_hosts: str | None = None,
                  task_index: int | None = None) -> tf.distribute.Strategy:
    """A `tf.distribute.Strategy` for `--strategy NAME` (see the module docstring); created once per process.

    Raises:
        ConfigError: an unknown strategy, a device this machine does not have, flags that do not
            go together, or no TPU where `--tpu` points.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy: expected one of {', '.join(STRATEGIES)}, found {name!r}")
    specs = parse_devices(devices)
    if specs and name not in ("mirrored", "one_device"):
        raise ConfigError(f"--devices goes with --strategy mirrored or one_device, not {name!r}")
    if tpu is not None and name != "tpu":
        raise ConfigError(f"--tpu goes with --strategy tpu, not {name!r}")
    if name == "one_device" and len(specs) > 1:
        raise ConfigError(f"--strategy one_device takes one device, --devices names {len(specs)}")
    if (worker_hosts is not None or task_index is not None) and name != "multi_worker":
        raise ConfigError(f"--worker_hosts and --task_index go with --strategy multi_worker, not {name!r}")
    if (worker_hosts is None) != (task_index is None):
        raise ConfigError("--worker_hosts and --task_index go together (the cluster, and this worker's place in it)")
    key = (name, tuple((s.device_type, s.device_index) for s in specs), tpu, worker_hosts, task_index)
    if key in _strategies:
        return _strategies[key]
    gpus = tf.config.list_physical_devices("GPU")
    if name == "tpu":
        strategy = _connect_tpu(tpu)
    elif name == "multi_worker":
        strategy = _multi_worker(worker_hosts, task_index)
    elif name == "mirrored" or (name == "auto" and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy(_check_present(specs) if specs else None)
    elif name == "one_device":
        strategy = tf.distribute.OneDeviceStrategy(
            _check_present(specs)[0] if specs else ("/gpu:0" if gpus else "/cpu:0"))
    else:
        strategy = tf.distribute.get_strategy()
    _strategies[key] = strategy
    return strategy


def strategy_for(config) -> tf.distribute.Strategy:
    """The strategy of a run config (`strategy`, `devices`, `tpu`, `worker_hosts`, `task_index` fields)."""
    return make_strategy(config.strategy, config.devices, config.tpu, config.worker_hosts, config.task_index)


def describe(strategy: tf.distribute.Strategy, batch_size: int) -> str:
    """One line for the log: the strategy, its replicas and the per-replica batch."""
    replicas = strategy.num_replicas_in_sync
    try:
        devices = strategy.extended.worker_devices if replicas > 1 else ()
    except (RuntimeError, NotImplementedError):  # the default strategy has no device list
        devices = ()
    where = f" on {', '.join(d.split('device:')[-1] for d in devices)}" if devices else ""
    if is_multi_worker(strategy):
        workers = sum(len(tasks) for job, tasks in strategy.cluster_resolver.cluster_spec().as_dict().items()
                      if job in ("chief", "worker"))
        index = worker_index(strategy)
        where = f" over {workers} workers (this is worker {index}{', the chief' if index == 0 else ''})"
    name = type(strategy).__name__
    if name == "_DefaultDistributionStrategy":  # (not `is get_strategy()`: that is the strategy in scope)
        name = "default (one device)"
    return (f"strategy: {name}, {replicas} replica{'s' if replicas > 1 else ''}{where}; "
            f"global batch {batch_size}" + (f" = {batch_size // replicas} per replica" if replicas > 1 else ""))


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int, source: str = "batch_size") -> None:
    """The global batch must split evenly over the replicas.

    Each replica averages the loss over its own examples and the replicas' gradients are summed
    with weight 1/N, which is the mean over the global batch only when the replicas hold equally
    many examples.

    Raises:
        ConfigError: `batch_size` is not a multiple of the number of replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"{source}: {batch_size} does not split over {replicas} replicas; use a multiple "
                          f"of {replicas} (it is the global batch)")


def check_run_fits(strategy: tf.distribute.Strategy, batch_size: int, steps_per_execution: int) -> None:
    """`check_batch_size` and `check_steps_per_execution`: what a run's config asks of the strategy."""
    check_batch_size(strategy, batch_size)
    check_steps_per_execution(strategy, steps_per_execution)


def check_steps_per_execution(strategy: tf.distribute.Strategy, steps_per_execution: int) -> None:
    """Several steps per call work on one device and on TPUs, but not yet under Keras 3's mirrored
    strategies: their step loop fails inside TensorFlow ("You must feed a value for placeholder
    tensor ..."; keras-team/keras#19246, open in Keras 3.15).

    Raises:
        ConfigError: `steps_per_execution` > 1 with several replicas of a (multi-worker) mirrored strategy.
    """
    if steps_per_execution > 1 and strategy.num_replicas_in_sync > 1 and not isinstance(
            strategy, tf.distribute.TPUStrategy):
        raise ConfigError(f"steps_per_execution: {steps_per_execution} steps per call fail under "
                          f"{type(strategy).__name__} in Keras {keras.__version__} (keras-team/keras#19246); "
                          "use 1 there (it is for one device and TPUs)")
