"""Parameter-efficient fine-tuning of any task model: LoRA adapters (Keras' `enable_lora`) on the backbone's
dense layers, frozen embeddings and frozen lower encoder layers; the adapter checkpoint (the trained
variables alone, with a pointer to the base model) and its reload.

The runner applies `apply_to_model` between building a task's model and compiling it, so every task
pipeline takes `--lora_rank`, `--lora_alpha`, `--lora_targets`, `--freeze_layers` and `--freeze_embeddings`.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np

from tfbert import fileio
from tfbert.errors import TfbertError
from tfbert.training.run_config import parse_targets

# `BertEncoderBlock` attributes of the targets whose layer name is not the attribute (`output` is Keras').
_ATTRIBUTES = {"output": "output_dense"}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class AdapterError(TfbertError):
    """An adapter directory that cannot be read or does not fit the model it is loaded onto."""


class ParameterEfficientError(TfbertError):
    """LoRA or freezing settings that do not fit the model (named by their flag)."""


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Trainable and total parameters (scalars) of `model`."""
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    return {"trainable": trainable, "total": total}


def apply_to_model(model: keras.Model, *, lora_rank: int | None = None, lora_alpha: float | None = None,
                   lora_targets: str | list[str] = "query,value", freeze_layers: int = 0,
                   freeze_embeddings: bool = False) -> dict:
    """Adds LoRA adapters and/or freezes parts of a tfbert task model's backbone, in place (before compile).

    With `lora_rank`, the target dense layers of every encoder layer that `freeze_layers` leaves
    trainable get rank-`lora_rank` adapters (`kernel + A @ B * lora_alpha / lora_rank`, B starting at
    zero so the model is unchanged) and the whole backbone is frozen except the adapters; the head
    stays trainable. `freeze_embeddings` freezes the embedding layer; `freeze_layers N` the first N
    encoder layers, adapters included: with LoRA, those layers get none (both also without LoRA).

    Returns:
        What was done, for the run's metrics.json: the settings and `parameter_counts` after them.

    Raises:
        ParameterEfficientError: a rank below 1, an unknown target, or more layers to freeze than the
            model has (a `ValueError`).
    """
    backbone = model.backbone
    layers = backbone.encoder_layers
    check_settings(len(layers), lora_rank=lora_rank, freeze_layers=freeze_layers)
    if freeze_embeddings:
        backbone.embeddings.trainable = False
    for layer in layers[:freeze_layers]:
        layer.trainable = False
    done = {"freeze_layers": freeze_layers, "freeze_embeddings": bool(freeze_embeddings)}
    if lora_rank is not None:
        try:
            targets = parse_targets(lora_targets)
        except ValueError as e:
            raise ParameterEfficientError(f"--{e}") from None
        for layer in layers[freeze_layers:]:
            for name in targets:
                getattr(layer, _ATTRIBUTES.get(name, name)).enable_lora(lora_rank, lora_alpha=lora_alpha)
        for variable in backbone.weights:  # frozen but for the adapters (the head is not in the backbone)
            variable.trainable = "lora_kernel" in variable.path
        done.update(lora_rank=lora_rank, lora_alpha=float(lora_alpha or lora_rank), lora_targets=targets)
    done["parameters"] = parameter_counts(model)
    return done


def check_settings(num_layers: int, *, lora_rank: int | None, freeze_layers: int) -> None:
    """`apply_to_model`'s checks against a model of `num_layers` encoder layers, also run before a search's
    first trial (from the checkpoint's config).

    Raises:
        ParameterEfficientError: naming the flag.
    """
    if not isinstance(freeze_layers, int) or not 0 <= freeze_layers <= num_layers:
        raise ParameterEfficientError(f"--freeze_layers: the model has {num_layers} encoder layers, found "
                                      f"{freeze_layers!r}")
    if lora_rank is not None and (not isinstance(lora_rank, int) or lora_rank < 1):
        raise ParameterEfficientError(f"--lora_rank: must be a positive integer, found {lora_rank!r}")
    if lora_rank is not None and freeze_layers == num_layers:
        raise ParameterEfficientError(f"--freeze_layers {freeze_layers} freezes every encoder layer: LoRA "
                                      "(--lora_rank) would have no layer to adapt")


def lora_layers(model: keras.Model) -> list:
    return [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]


def base_fingerprint(model: keras.Model, saved: set[str]) -> str:
    """SHA-256 of the backbone's base weights: every backbone variable but the adapters and those in
    `saved` (the variables an adapter directory holds), by path, in path order. Two models built from
    the same checkpoint have the same; a different base of the same shapes does not."""
    digest = hashlib.sha256()
    for variable in sorted(model.backbone.weights, key=lambda v: v.path):
        if "lora_kernel" in variable.path or variable.path in saved:
            continue
        digest.update(variable.path.encode() + b"\0")
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable), dtype=np.float32).tobytes())
    return digest.hexdigest()


def save_adapters(model: keras.Model, directory: str, base_model: str, settings: dict) -> None:
    """Writes the trainable variables alone (adapters and head) as `adapter_model.safetensors` and
    `adapter_config.json` (the base model and its weights' `base_fingerprint`, the LoRA settings, the
    variables' paths), atomically."""
    from safetensors.numpy import save_file

    tensors = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_weights}
    base = os.path.abspath(base_model) if os.path.isdir(base_model) else base_model
    config = {"base_model": base, "base_fingerprint": base_fingerprint(model, set(tensors)),
              "model_class": type(model).__name__,
              **{k: settings[k] for k in ("lora_rank", "lora_alpha", "lora_targets", "freeze_layers",
                                          "freeze_embeddings") if k in settings},
              "variables": sorted(tensors)}
    if "lora_targets" in config:  # a run config's "query,value" as apply_to_model's ["query", "value"]
        config["lora_targets"] = parse_targets(config["lora_targets"])
    tmp = fileio.scratch_path(directory)
    os.makedirs(tmp)
    with fileio.atomic_path(os.path.join(tmp, ADAPTER_WEIGHTS)) as weights:  # (readable as other files are)
        save_file(tensors, weights)
    fileio.write_json(os.path.join(tmp, ADAPTER_CONFIG), config)
    fileio.replace_dir(tmp, directory, aside=fileio.scratch_path(directory, "old"))


def read_adapter_config(directory: str) -> dict:
    path = os.path.join(directory, ADAPTER_CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise AdapterError(f"{directory}: not an adapter directory (no {ADAPTER_CONFIG})") from None
    except json.JSONDecodeError as e:
        raise AdapterError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "base_model" not in config:
        raise AdapterError(f"{path}: field 'base_model' is missing")
    return config


def load_adapters(model: keras.Model, directory: str) -> dict:
    """Puts an adapter directory onto `model`, a task model built from the adapter's base model with the
    same head: enables LoRA as it was trained, then assigns the saved variables by path.

    Returns:
        The adapter config.

    Raises:
        AdapterError: no or unreadable adapter files, a saved variable the model lacks or holds in
            another shape (named), or a model whose base weights are not those the adapters were
            trained on (`base_fingerprint`).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    config = read_adapter_config(directory)
    if config.get("lora_rank") and not lora_layers(model):
        apply_to_model(model, lora_rank=config["lora_rank"], lora_alpha=config.get("lora_alpha"),
                       lora_targets=config.get("lora_targets", "query,value"),
                       freeze_layers=config.get("freeze_layers", 0))
    path = os.path.join(directory, ADAPTER_WEIGHTS)
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as e:
        raise AdapterError(f"{path}: cannot be read ({e})") from None
    variables = {v.path: v for v in model.weights}
    for name, value in tensors.items():
        if name not in variables:
            raise AdapterError(f"{path}: variable '{name}' is not in the model ({type(model).__name__}); "
                               f"was it trained with another head or base model ({config['base_model']})?")
        if tuple(variables[name].shape) != value.shape:
            raise AdapterError(f"{path}: variable '{name}' has shape {value.shape}, the model's is "
                               f"{tuple(variables[name].shape)}")
    expected = config.get("base_fingerprint")
    if expected and base_fingerprint(model, set(tensors)) != expected:
        raise AdapterError(f"{directory}: the model's base weights are not those these adapters were trained "
                           f"on (base_model: {config['base_model']}); build the model from that checkpoint")
    for name, value in tensors.items():  # only once every variable fits: never a half-loaded model
        variables[name].assign(value)
    return config
