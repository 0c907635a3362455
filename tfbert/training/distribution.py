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
        TPU VM, the default). Use `--padding max_length` there: XLA compiles one program per
        input shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfbert.config import ConfigError
from tfbert.training.run_config import STRATEGIES

_strategies: dict[tuple, tf.distribute.Strategy] = {}


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


def make_strategy(name: str = "auto", devices: str | Sequence[str] | None = None,
                  tpu: str | None = None) -> tf.distribute.Strategy:
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
    key = (name, tuple((s.device_type, s.device_index) for s in specs), tpu)
    if key in _strategies:
        return _strategies[key]
    gpus = tf.config.list_physical_devices("GPU")
    if name == "tpu":
        strategy = _connect_tpu(tpu)
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
    """The strategy of a run config (`strategy`, `devices`, `tpu` fields)."""
    return make_strategy(config.strategy, config.devices, config.tpu)


def describe(strategy: tf.distribute.Strategy, batch_size: int) -> str:
    """One line for the log: the strategy, its replicas and the per-replica batch."""
    replicas = strategy.num_replicas_in_sync
    try:
        devices = strategy.extended.worker_devices if replicas > 1 else ()
    except (RuntimeError, NotImplementedError):  # the default strategy has no device list
        devices = ()
    where = f" on {', '.join(d.split('device:')[-1] for d in devices)}" if devices else ""
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
