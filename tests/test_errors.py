"""One base error for bad user input; the modules below it stay importable without TensorFlow."""

import ast
import subprocess
import sys

import pytest

import tfbert.errors
from tfbert.errors import TfbertError


def test_errors_module_imports_nothing_of_tfbert():
    tree = ast.parse(open(tfbert.errors.__file__, encoding="utf-8").read())
    imported = [node.module if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in getattr(node, "names", [])]
    assert not [name for name in imported if name and name.startswith("tfbert")]


def test_every_module_error_is_a_tfbert_error():
    from tfbert.checkpoints import CheckpointError
    from tfbert.config import ConfigError
    from tfbert.data.readers import DataError
    from tfbert.export import ExportError
    from tfbert.serving import ServingClientError
    from tfbert.text.tokenizer import TokenizerError
    from tfbert.tuning import SearchError

    for error in (CheckpointError, ConfigError, DataError, ExportError, ServingClientError, TokenizerError,
                  SearchError):
        assert issubclass(error, TfbertError), error
    try:
        raise DataError("label 'x' not in labels.txt", "train.csv:3")
    except TfbertError as e:  # what the pipelines catch
        assert str(e).startswith("train.csv:3")


def test_rest_client_and_errors_load_without_tensorflow():
    script = ("import sys, tfbert.errors, tfbert.serving; "
              "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_a_pipeline_reports_a_user_error_or_ctrl_c_in_one_line(capsys, monkeypatch):
    """`run_pipeline` (every training and search script): bad input is one `<prog>: error:` line and exit
    status 1; Ctrl-C is one line saying how to resume, not a traceback through TensorFlow, and the
    interrupt goes on (Python then ends by SIGINT, which stops a shell loop around the command)."""
    from tfbert.cli import run_pipeline
    from tfbert.config import ConfigError
    from tfbert.training.run_config import ClassifierRunConfig

    def refused(config):
        raise ConfigError("batch_size: too large")

    def interrupted(config):
        raise KeyboardInterrupt

    assert run_pipeline(ClassifierRunConfig, refused, [], "", "train_cls.py") == 1
    assert capsys.readouterr().err == "train_cls.py: error: batch_size: too large\n"
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # (restored after the test)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(ClassifierRunConfig, interrupted, [], "", "train_cls.py")
    assert capsys.readouterr().err == "\ntrain_cls.py: interrupted; run the same command to resume\n"
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)  # what the interpreter calls: prints nothing
    sys.excepthook(ValueError, ValueError("other"), None)  # other errors still print
    assert capsys.readouterr().err == "ValueError: other\n"


def test_ctrl_c_while_a_pipeline_imports_is_one_line_and_ends_by_sigint():
    # before run_pipeline catches it (TensorFlow's imports, a few seconds) it was a traceback of the imports
    import signal

    script = ("import sys; sys.argv = ['/x/pipelines/train_cls.py']\n"
              "from tfbert.cli import quiet_native_logs\nquiet_native_logs()\n"
              "def importing():\n    raise KeyboardInterrupt\nimporting()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stderr == "\ntrain_cls.py: interrupted\n"
    assert result.returncode == -signal.SIGINT  # a shell loop around the command stops
