"""Tests for tfbert.data.readers: the `read_examples` entry point re-exports the reader modules' names."""

from __future__ import annotations

import subprocess
import sys

import tfbert.data.readers as readers
from tfbert.data import examples, labels, splits, tfds_reader


def test_public_names_are_re_exported_from_their_modules():
    homes = {"DataError": examples, "Examples": examples, "Column": examples, "TASKS": examples,
             "FILE_FORMATS": examples, "DEFAULT_TEXT_COLUMNS": examples,
             "DEFAULT_LABEL_COLUMN": examples, "TFDS_PREFIX": examples, "LabelVocab": labels,
             "read_tfds": tfds_reader, "open_tfds_builder": tfds_reader,
             "train_validation_split": splits, "train_validation_test_split": splits}
    assert set(readers.__all__) == set(homes) | {"read_examples"}
    for name, module in homes.items():
        assert getattr(readers, name) is getattr(module, name), name


def test_readers_import_without_tensorflow():
    script = ("import sys, tfbert.data.readers; "
              "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
