"""Writing files so that a reader never sees half of one: write a temporary file beside it, then rename.

A run killed in the middle of a write leaves the previous file (or none) and a hidden stray
`.<name>.tmp-pid<pid>@<host>`, never a truncated `metrics.json` or `model.keras` that looks complete;
the next run removes such strays (`remove_leftovers`). Folders are written beside their place and
swapped in whole (`replace_dir`), and deleted as one step (`remove_dir`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator

from tfbert.errors import TfbertError

try:
    import fcntl
except ImportError:  # not on Windows: folders are not locked there
    fcntl = None


def owner_tag() -> str:
    """`pid<pid>@<host>`: which process on which machine writes a scratch file (`remove_leftovers`)."""
    return f"pid{os.getpid()}@{socket.gethostname()}"


def temporary_path(path: str) -> str:
    """A hidden path beside `path`, in the same directory (so the rename is atomic), with the same suffix
    (Keras checks that `model.save` targets end in `.keras`) and the writer's `owner_tag`."""
    directory, name = os.path.split(os.fspath(path))
    stem, suffix = os.path.splitext(name)
    if name.endswith(".weights.h5"):  # Keras checks this whole suffix of weights files
        stem, suffix = name[:-len(".weights.h5")], ".weights.h5"
    return os.path.join(directory, f".{stem}.tmp-{owner_tag()}{suffix}")


def scratch_path(path: str, kind: str = "tmp") -> str:
    """A hidden sibling of `path` to write a folder in (or move one to) before it is renamed: unique,
    tagged with its writer (`owner_tag`), so that `remove_leftovers` can tell a killed writer's."""
    directory, name = os.path.split(os.path.normpath(os.fspath(path)))
    return os.path.join(directory, f".{name}.{kind}-{uuid.uuid4().hex[:8]}-{owner_tag()}")


def remove_leftovers(directory: str) -> list[str]:
    """Removes the hidden scratch files and folders (`temporary_path`, `scratch_path`) in `directory` that
    a process on this machine left when it was killed: those whose process no longer runs. A running
    writer's, and another machine's, stay. Returns the paths removed."""
    if not os.path.isdir(directory):
        return []
    mine = re.compile(r"^\..*-pid(?P<pid>\d+)@" + re.escape(socket.gethostname())
                      + r"(\.weights\.h5|\.[A-Za-z0-9]+)?$")
    removed = []
    for name in os.listdir(directory):
        match = mine.match(name)
        if not match or _process_runs(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)
        removed.append(path)
    return removed


def remove_dir(path: str) -> None:
    """Deletes a folder as one step for a reader: renamed to a hidden scratch name first, then deleted, so
    that a process killed meanwhile leaves the whole folder or none of it under `path` (a backup with its
    weights deleted and its epoch count left would resume onto an untrained model)."""
    if not os.path.exists(path):
        return
    doomed = scratch_path(path, "deleted")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class DirectoryInUse(TfbertError):
    """Another process holds the folder's lock (`lock_dir`)."""


@contextlib.contextmanager
def lock_dir(directory: str, what: str = "run"):
    """Holds an exclusive lock on `<directory>/.lock` (`flock`: released when the process ends, even
    killed) for the block, with the holder's `owner_tag` written in it.

    Raises:
        DirectoryInUse: another process holds it; the message names it.
    """
    os.makedirs(directory, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = os.path.join(directory, ".lock")
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DirectoryInUse(f"{directory}: in use by another process ({holder}); a second {what} there "
                                 "would mix its files with that one's: wait for it to end, or give another "
                                 "output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(owner_tag() + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # (releases the lock)


def check_free(directory: str, what: str = "run") -> None:
    """Refuses now, before long work that will need the lock, a folder another process holds (`lock_dir`).

    Raises:
        DirectoryInUse: as `lock_dir`.
    """
    if fcntl is not None and os.path.exists(os.path.join(directory, ".lock")):
        with lock_dir(directory, what):
            pass


@contextlib.contextmanager
def made_dirs(path: str) -> Iterator[str]:
    """Creates the folder `path` (and its missing parents) for the block; when the block raises, the
    folders it created that are still empty are removed again (a run refused before it began leaves no
    empty `runs/<name>/` behind)."""
    path = os.path.abspath(os.fspath(path))
    created, parent = [], path
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(path, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in created:  # the deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # (only an empty one)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path to write; renamed over `path` when the block ends without an error."""
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        if os.path.isfile(temporary):  # as `open` makes a file: some writers (safetensors) make theirs 0600
            os.chmod(temporary, 0o666 & ~_umask())
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


def json_position(error: ValueError) -> str:
    """Where a `json.JSONDecodeError` happened, as "line L, column C" (the column matters: a SQuAD file is
    often one line of megabytes); "" for another ValueError."""
    if not isinstance(error, json.JSONDecodeError):
        return ""
    return f"line {error.lineno}, column {error.colno}"


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


def link_tree(source: str, destination: str) -> None:
    """A copy of the folder `source` at `destination` made of hard links (no bytes copied, the files
    stay when `source` is deleted); files are copied where the file system has no hard links. The copy
    is made in a `scratch_path` and renamed: `destination` is whole or absent."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    scratch = scratch_path(destination)
    try:
        shutil.copytree(source, scratch, copy_function=link)
        os.rename(scratch, destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
