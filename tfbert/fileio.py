"""Writing files so that a reader never sees half of one: write a temporary file beside it, then rename.

A run killed in the middle of a write leaves the previous file (or none) and a stray
`<name>.tmp-<pid>`, never a truncated `metrics.json` or `model.keras` that looks complete. Folders
are written beside their place and swapped in whole (`replace_dir`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import sys
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


def replace_dir(new_dir: str, final_dir: str, aside: str) -> None:
    """Puts the folder `new_dir` at `final_dir`, replacing what is there: with one atomic exchange where
    the system has it (a reader of `final_dir` finds the old folder or the new one, never neither), else
    by renaming the old one to `aside` first (the window without a folder is one rename). The old
    folder is deleted afterwards."""
    if not os.path.exists(final_dir):
        os.rename(new_dir, final_dir)
        return
    if exchange_paths(new_dir, final_dir):
        shutil.rmtree(new_dir, ignore_errors=True)  # (now the old folder)
        return
    os.rename(final_dir, aside)
    try:
        os.rename(new_dir, final_dir)
    except OSError:
        os.rename(aside, final_dir)  # put the old one back
        raise
    shutil.rmtree(aside, ignore_errors=True)


def exchange_paths(a: str, b: str) -> bool:
    """Swaps two existing paths atomically (Linux `renameat2` with RENAME_EXCHANGE); False where the
    system or the file system has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):  # not supported here
        return False
    raise OSError(code, os.strerror(code), b)
