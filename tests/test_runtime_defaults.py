"""tfbert's TensorFlow runtime defaults (tfbert/__init__.py), each checked in a fresh interpreter: they only
take effect when TensorFlow loads after tfbert."""

import os
import platform
import subprocess
import sys

import pytest

REPORT = ("import tfbert, tensorflow as tf; from tensorflow.python.util import _pywrap_util_port as port; "
          "import os; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())")

x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                              reason="tfbert turns oneDNN on only on x86-64")


def onednn_state(**env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", REPORT], env={**environ, **env}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@x86_only
def test_importing_tfbert_first_turns_on_tensorflows_onednn_kernels():
    assert onednn_state() == "1 True"


@x86_only
def test_a_users_TF_ENABLE_ONEDNN_OPTS_0_is_kept():
    assert onednn_state(TF_ENABLE_ONEDNN_OPTS="0") == "0 False"
