"""Writing files so that a reader never sees half of one: write a temporary file beside it, then rename.

A run killed in the middle of a write leaves the previous file (or none) and a stray
`<name>.tmp-<pid>`, never a truncated `metrics.json` or `model.keras` that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator


def temporary_path(path: str) -> str:
    """A path beside `path`, in the same directory (so the rename is atomic), with the same suffix
    (Keras checks that `model.save` targets end in `.keras`)."""
    directory, name = os.path.split(os.fspath(path))
    stem, suffix = os.path.splitext(name)
    return os.path.join(directory, f".{stem}.tmp-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path to write; renamed over `path` when the block ends without an error."""
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs):
    """`open(path, mode)` whose content appears at `path` all at once, when the block ends."""
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as temporary:
        with open(temporary, mode, **open_kwargs) as f:
            yield f


def write_json(path: str, value, **dump_kwargs) -> None:
    """`value` as JSON (indented, with a final newline), written atomically."""
    dump_kwargs.setdefault("indent", 2)
    with atomic_write(path) as f:
        json.dump(value, f, **dump_kwargs)
        f.write("\n")
