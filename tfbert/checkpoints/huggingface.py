"""Hugging Face BERT directories: `config.json` + `model.safetensors` (or `pytorch_model.bin`)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from tfbert import fileio
from tfbert.checkpoints.mapping import CheckpointError

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"


def is_hf_directory(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        os.path.isfile(os.path.join(path, n)) for n in (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME))


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for key in f.keys():
                state[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
    except Exception as e:  # safetensors raises its own error types for corrupt or truncated files
        raise CheckpointError(f"{path}: cannot read safetensors file: {e}") from e
    return state


def _read_pytorch_bin(path: str) -> dict[str, np.ndarray]:
    # A .bin file is a pickle: unpickling untrusted data runs arbitrary code, so only torch's
    # restricted `weights_only=True` loader may open it.
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path}: this is a PyTorch pickle checkpoint. tfbert reads it only through torch's safe "
            "weights_only loader, and torch is not installed. Convert it to safetensors, e.g. "
            "`BertModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`, or install torch."
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path}: refused to load with torch's weights_only loader ({e}). Convert the checkpoint to "
            "model.safetensors with transformers' save_pretrained(safe_serialization=True).") from e
    return {k: v.detach().float().numpy() for k, v in state.items()}


def read_state(directory: str) -> tuple[dict[str, np.ndarray], str]:
    """Reads a HF directory's weights; returns (state dict, the file it came from)."""
    path = os.path.join(directory, SAFETENSORS_NAME)
    if os.path.isfile(path):
        return _read_safetensors(path), path
    index = os.path.join(directory, SAFETENSORS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f).get("weight_map", {}).values()))
        state = {}
        for shard in shards:
            state.update(_read_safetensors(os.path.join(directory, shard)))
        return state, index
    path = os.path.join(directory, PYTORCH_NAME)
    if os.path.isfile(path):
        return _read_pytorch_bin(path), path
    raise CheckpointError(f"{directory}: no {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME} or {PYTORCH_NAME} found")


TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")


def write_directory(directory: str, config, state: dict[str, np.ndarray], tokenizer_dir: str | None = None,
                    vocab_file: str | None = None) -> None:
    """Writes `config.json` + `model.safetensors` as transformers' `BertModel.save_pretrained` does."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    config.save_json(os.path.join(directory, "config.json"))
    # Written under a temporary name and renamed, so a crash never leaves a truncated file behind.
    with fileio.atomic_path(os.path.join(directory, SAFETENSORS_NAME)) as tmp:
        save_file(state, tmp, metadata={"format": "pt"})
    if tokenizer_dir:
        for name in TOKENIZER_FILES:
            src = os.path.join(tokenizer_dir, name)
            if os.path.isfile(src) and os.path.abspath(src) != os.path.abspath(os.path.join(directory, name)):
                shutil.copyfile(src, os.path.join(directory, name))
    if vocab_file and os.path.abspath(vocab_file) != os.path.abspath(os.path.join(directory, "vocab.txt")):
        shutil.copyfile(vocab_file, os.path.join(directory, "vocab.txt"))
