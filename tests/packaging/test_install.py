"""README's two install steps, in order, in a fresh virtual environment (slow: it installs TensorFlow).

A green suite on a prepared machine once hid a broken install path: `pip install -e .` pulled a CUDA
build of torch through the default model's package, and the `[test]` extra installed next to it ended in
a segmentation fault. This test installs from the source tree (non-editable, so package data that is
not shipped is caught) into a new venv, as a user would.
"""

import os
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(command, **kwargs):
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}"
    return result.stdout


def _copy_source_tree(target):
    """The files git tracks (and new files not yet committed), as a clean clone would have them."""
    files = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).splitlines()
    for name in files:
        source = os.path.join(ROOT, name)
        if not os.path.isfile(source):
            continue
        destination = os.path.join(target, name)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        with open(source, "rb") as src, open(destination, "wb") as dst:
            dst.write(src.read())


@pytest.mark.slow
def test_readme_install_steps_in_a_fresh_venv(tmp_path):
    source = tmp_path / "src"
    _copy_source_tree(source)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}

    # README step 1: the package alone.
    _run([python, "-m", "pip", "install", "-q", "."], cwd=source, env=environment)
    installed = _run([python, "-m", "pip", "list", "--format=freeze"], env=environment).lower()
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert "torch" not in names and "sentence-transformers" not in names and "triton" not in names
    assert not [name for name in names if name.startswith(("nvidia-", "cuda-"))], sorted(names)
    check = ("import os, tfbert, tfbert.export as e; from tfbert.text import BertTokenizer; "
             "assert os.path.isfile(e.ALLOWLIST_FILE), e.ALLOWLIST_FILE; "
             "assert 'site-packages' in tfbert.__file__, tfbert.__file__; print('ok')")
    assert _run([python, "-c", check], cwd=tmp_path, env=environment).strip().endswith("ok")

    # README step 2, in the same venv: the test extra, then the three imports that crashed together.
    # With a current setuptools (as torch 2.13.0 pulls in, or an environment made with one) and an
    # empty pip cache, as on a fresh machine: seqeval, an sdist with `setup_requires`, fails to build
    # the legacy way (once step 1 has installed `wheel`) with setuptools-scm 10; a wheel pip built
    # for it earlier would hide that.
    _run([python, "-m", "pip", "install", "-q", "--upgrade", "setuptools"], env=environment)
    step_2 = dict(environment, PIP_CACHE_DIR=str(tmp_path / "pip-cache"))
    _run([python, "-m", "pip", "install", "-q", "--use-pep517", ".[test]"], cwd=source, env=step_2)
    imports = "import tensorflow, torch; from transformers import BertModel; print(torch.__version__)"
    assert "2.13.0" in _run([python, "-c", imports], cwd=tmp_path, env=environment)
