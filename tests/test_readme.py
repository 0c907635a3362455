"""The README's commands and example are what a new user types: check they are right."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_readme_starts_with_the_setup_and_test_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
    assert first_block[0].startswith("pip install -e . && python pipelines/train_cls.py")
    assert first_block[1].startswith('pip install --use-pep517 -e ".[test]" && python -m pytest')
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert 'python -m pip install -q --use-pep517 -e ".[test]"' in ci and "\npython -m pytest\n" in ci


@pytest.mark.slow
def test_library_example_runs_as_written(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(2, 9, 384) (2, 384)"
    assert all(os.path.exists(f"/tmp/minilm-copy/{name}") for name in ("model.safetensors", "vocab.txt",
                                                                       "tokenizer_config.json"))


def test_serving_example_runs_as_written(tiny_sentiment_export, tmp_path):
    # README's Python serving example, on a tiny export in place of the BBC News run's
    code = re.search(r"```python\n(from tfbert.serving import .*?)```", README, re.S).group(1)
    assert code.count("runs/cls-bbc_news-minilm-l6/saved_model") == 1
    code = code.replace("runs/cls-bbc_news-minilm-l6/saved_model", tiny_sentiment_export["base_dir"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.strip().splitlines()
    assert table[0].split() == ["text", "label", "probability"] and len(table) == 4
    assert table[2].startswith("Shares rose 5% after the results.") and table[3].startswith("The striker scored")
