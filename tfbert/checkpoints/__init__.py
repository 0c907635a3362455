"""Checkpoint import/export: Hugging Face directories, Google BERT checkpoints, named presets.

Example:
    >>> from tfbert import BertBackbone
    >>> backbone = BertBackbone.from_pretrained("minilm-l6")   # doctest: +SKIP
    >>> backbone.save_pretrained("/tmp/minilm-copy")           # doctest: +SKIP
"""

from __future__ import annotations

import os

from tfbert.checkpoints import google, huggingface
from tfbert.checkpoints.mapping import CheckpointError, LoadReport, assign_state, backbone_state
from tfbert.checkpoints.presets import PRESETS, resolve
from tfbert.config import BertConfig

__all__ = ["CheckpointError", "LoadReport", "PRESETS", "resolve",
           "read_checkpoint", "read_config"]


def read_config(path_or_preset: str | os.PathLike) -> BertConfig:
    """The `BertConfig` of a checkpoint (its config.json or bert_config.json) without reading its weights:
    to check a run's settings against the model (positions, layers) before any work."""
    directory = resolve(path_or_preset)
    for name in ("config.json", "bert_config.json"):
        if os.path.isfile(os.path.join(directory, name)):
            return BertConfig.from_json_file(os.path.join(directory, name))
    raise CheckpointError(f"{directory}: not a BERT checkpoint directory; expected config.json (Hugging Face) or "
                          "bert_config.json (Google)")


def read_checkpoint(path_or_preset: str | os.PathLike, **overrides) -> tuple[BertConfig, dict, str]:
    """Reads config and weights (HF names and layouts) from any supported source.

    Args:
        **overrides: config fields to change, e.g. `hidden_dropout_prob=0.2`.

    Returns:
        (config, state dict of float32 numpy arrays, the file the weights came from)

    Raises:
        TypeError: an override that is not a `BertConfig` field.
    """
    directory = resolve(path_or_preset)
    if huggingface.is_hf_directory(directory):
        config = BertConfig.from_json_file(os.path.join(directory, "config.json"))
        state, source = huggingface.read_state(directory)
    elif google.is_google_directory(directory):
        config = BertConfig.from_json_file(os.path.join(directory, "bert_config.json"))
        state, source = google.read_state(directory)
    else:
        tf_weights = os.path.isfile(os.path.join(directory, "tf_model.h5"))
        raise CheckpointError(
            f"{directory}: not a BERT checkpoint directory; expected config.json with model.safetensors "
            "(Hugging Face) or bert_config.json with bert_model.ckpt.index (Google)"
            + ("; tf_model.h5 (transformers' TensorFlow weights) is not read: convert it once where transformers 4, "
               "torch and tf-keras are installed, with the class config.json's 'architectures' names (e.g. "
               "BertForPreTraining, which keeps the pre-training heads): <class>.from_pretrained(dir, "
               "from_tf=True).save_pretrained(dir) writes model.safetensors" if tf_weights else ""))
    for key, value in overrides.items():
        if key not in BertConfig.__dataclass_fields__:
            raise TypeError(f"unknown BertConfig field {key!r}")
        setattr(config, key, value)
    config.validate(source)
    return config, state, source
