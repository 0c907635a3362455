"""Tests for tfbert.data.tfds_reader: reading a prepared TFDS dataset, and its errors."""

from __future__ import annotations

import pytest

from tfbert.data.examples import DataError
from tfbert.data.readers import read_examples
from tfbert.data.tfds_reader import read_tfds


def test_read_tfds_decodes_text_and_class_names(tfds_data_dir):
    examples = read_tfds("tiny_tfbert_reviews", "train", data_dir=tfds_data_dir)
    assert sorted(zip(examples.texts, examples.labels)) == [
        ("bad film", "neg"), ("déjà vu", "pos"), ("good film", "pos")]
    assert sorted(examples.sources) == [f"tfds:tiny_tfbert_reviews[train]:#{i}" for i in range(3)]
    test = read_examples("tfds:tiny_tfbert_reviews[test]", data_dir=tfds_data_dir)
    assert test.texts == ["fine"] and test.labels == ["neg"]


def test_read_tfds_errors(tfds_data_dir, tmp_path):
    with pytest.raises(DataError, match="not prepared") as info:
        read_tfds("tiny_tfbert_reviews", "train", data_dir=str(tmp_path))
    assert "download_and_prepare" in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(DataError, match="tfds:no_such_tfbert_dataset: no TFDS dataset"):
        read_tfds("no_such_tfbert_dataset", "train", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="'sentence1' not found; features found: 'text', 'label'"):
        read_tfds("tiny_tfbert_reviews", "train", tfds_data_dir, text_column="sentence1")
    with pytest.raises(DataError, match="splits found"):
        read_tfds("tiny_tfbert_reviews", "dev", tfds_data_dir)
