"""Writing files and folders so that a reader never sees half of one (tfbert.fileio): scratch names that
say whose they are, a killed writer's leftovers removed, folders deleted in one step, one run per folder."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from tfbert import fileio


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_scratch_names_are_hidden_and_carry_their_writer(tmp_path):
    tag = f"pid{os.getpid()}@{socket.gethostname()}"
    temporary = fileio.temporary_path(str(tmp_path / "model.keras"))
    assert os.path.basename(temporary) == f".model.tmp-{tag}.keras"  # Keras wants the .keras suffix
    weights = fileio.temporary_path(str(tmp_path / "best.weights.h5"))
    assert os.path.basename(weights) == f".best.tmp-{tag}.weights.h5"  # and .weights.h5 whole
    scratch = os.path.basename(fileio.scratch_path(str(tmp_path / "hf_model")))
    assert scratch.startswith(".hf_model.tmp-") and scratch.endswith(f"-{tag}")
    assert scratch != os.path.basename(fileio.scratch_path(str(tmp_path / "hf_model")))  # unique


def test_only_a_killed_writers_leftovers_on_this_machine_are_removed(tmp_path):
    host, dead = socket.gethostname(), _dead_pid()
    killed_files = [f".model.tmp-pid{dead}@{host}.keras", f".best.tmp-pid{dead}@{host}.weights.h5"]
    killed_dirs = [f".hf_model.tmp-0123abcd-pid{dead}@{host}", f".backup.deleted-0123abcd-pid{dead}@{host}"]
    kept_files = [f".model.tmp-pid{os.getpid()}@{host}.keras", ".lock", "model.keras"]  # this test's: it runs
    kept_dirs = [f".hf_model.tmp-0123abcd-pid{dead}@another-host.example", "hf_model"]  # another machine's pids
    for name in killed_files + kept_files:
        (tmp_path / name).write_text("x")
    for name in killed_dirs + kept_dirs:
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text("x")
    removed = fileio.remove_leftovers(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(killed_files + killed_dirs)
    assert sorted(os.listdir(tmp_path)) == sorted(kept_files + kept_dirs)
    assert fileio.remove_leftovers(str(tmp_path / "missing")) == []


def test_remove_dir_leaves_the_whole_folder_or_nothing(tmp_path, monkeypatch):
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in ("latest.weights.h5", "training_metadata.json"):
        (backup / name).write_text("x")
    rmtree = fileio.shutil.rmtree

    def killed(path, **kwargs):  # killed while deleting: the folder is no longer under its name
        assert not backup.exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        fileio.remove_dir(str(backup))
    monkeypatch.setattr(fileio.shutil, "rmtree", rmtree)
    assert not backup.exists() and len(os.listdir(tmp_path)) == 1  # its scratch copy, which the next run removes
    fileio.remove_dir(str(tmp_path / "missing"))  # nothing to do


def test_link_tree_shares_the_files_and_leaves_the_whole_copy_or_none(tmp_path, monkeypatch):
    source = tmp_path / "1"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    fileio.link_tree(str(source), str(tmp_path / "copy"))
    copied = tmp_path / "copy" / "variables" / "variables.index"
    assert copied.read_bytes() == b"index" and os.path.samefile(copied, source / "variables" / "variables.index")
    shutil.rmtree(source / "variables")
    assert copied.read_bytes() == b"index"  # a link, not a pointer to the deleted file

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        fileio.link_tree(str(source), str(tmp_path / "again"))
    assert sorted(os.listdir(tmp_path)) == ["1", "copy"]  # no half copy, under its name or a scratch one

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(fileio.os, "link", no_links)  # a file system without hard links: copies
    fileio.link_tree(str(source), str(tmp_path / "copied"))
    assert (tmp_path / "copied" / "saved_model.pb").read_bytes() == b"graph"
    assert not os.path.samefile(tmp_path / "copied" / "saved_model.pb", source / "saved_model.pb")


def test_a_folder_is_locked_for_one_run_at_a_time(tmp_path):
    holder = [sys.executable, "-c", "import sys, time\nfrom tfbert import fileio\n"
              f"with fileio.lock_dir({str(tmp_path)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()"]
    process = subprocess.Popen(holder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(fileio.DirectoryInUse, match=rf"{tmp_path}: in use by another process "
                                                        rf"\(pid{process.pid}@{socket.gethostname()}\); a second "
                                                        r"training run there would mix its files"):
            with fileio.lock_dir(str(tmp_path), "training run"):
                pass
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    with fileio.lock_dir(str(tmp_path)):  # free again once the holder ended (killed too: the lock goes with it)
        with pytest.raises(fileio.DirectoryInUse):
            with fileio.lock_dir(str(tmp_path)):  # a second holder in the same process is refused too
                pass


def test_folders_made_for_a_block_that_fails_are_removed_if_still_empty(tmp_path):
    with pytest.raises(ValueError):
        with fileio.made_dirs(str(tmp_path / "runs" / "a")):
            raise ValueError("refused")
    assert os.listdir(tmp_path) == []  # runs/a and runs/, both made for the block
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError):
        with fileio.made_dirs(str(tmp_path / "runs" / "b")) as made:
            (tmp_path / "runs" / "b" / "vocab.txt").write_text("x")  # something written stays, with its folder
            raise ValueError("refused")
    assert made == str(tmp_path / "runs" / "b") and os.listdir(tmp_path / "runs" / "b") == ["vocab.txt"]
    with fileio.made_dirs(str(tmp_path / "runs" / "c")):
        pass
    assert sorted(os.listdir(tmp_path / "runs")) == ["b", "c"]  # kept when the block succeeds


def test_files_written_atomically_are_as_readable_as_open_makes_them(tmp_path):
    # safetensors writes its files 0600: hf_model/model.safetensors was unreadable to other users and services
    import numpy as np
    from safetensors.numpy import save_file

    old = os.umask(0o022)
    try:
        with fileio.atomic_path(str(tmp_path / "model.safetensors")) as path:
            save_file({"w": np.zeros(2, "float32")}, path)
        assert os.stat(tmp_path / "model.safetensors").st_mode & 0o777 == 0o644
        os.umask(0o077)
        with fileio.atomic_write(str(tmp_path / "private.json")) as f:
            f.write("{}")
        assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o600  # the umask still rules
    finally:
        os.umask(old)
