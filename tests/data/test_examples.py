"""Tests for tfbert.data.examples: the shared types import nothing of tfbert but its errors."""

from __future__ import annotations

import ast

import tfbert.data.examples
from tfbert.data.examples import DataError, Examples
from tfbert.errors import TfbertError


def test_examples_module_imports_only_tfbert_errors():
    tree = ast.parse(open(tfbert.data.examples.__file__, encoding="utf-8").read())
    imported = [node.module if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in getattr(node, "names", [])]
    assert [name for name in imported if name and name.startswith("tfbert")] == ["tfbert.errors"]


def test_data_error_and_examples_select():
    error = DataError("missing label", "train.csv:3")
    assert isinstance(error, TfbertError) and str(error) == "train.csv:3: missing label"
    examples = Examples(texts=["a", "b", "c"], labels=["x", "y", "x"], text_pairs=["p", "q", "r"])
    assert examples.sources == ["example #0", "example #1", "example #2"] and examples.has_labels
    picked = examples.select([2, 0])
    assert (picked.texts, picked.labels, picked.text_pairs) == (["c", "a"], ["x", "x"], ["r", "p"])
    assert picked.sources == ["example #2", "example #0"]
