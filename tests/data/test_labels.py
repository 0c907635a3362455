"""Tests for tfbert.data.labels: LabelVocab sorting, encoding, save/load and errors."""

from __future__ import annotations

import numpy as np
import pytest
from reader_helpers import write

from tfbert.data.examples import DataError, Examples
from tfbert.data.labels import LabelVocab


def test_label_vocab_sorting_round_trip_and_encode(tmp_path):
    examples = Examples(texts=["a", "b", "c", "d"], labels=["10", "2", "1", "2"])
    vocab = LabelVocab.build(examples, "classification")
    assert vocab.labels == ["1", "2", "10"]  # Numeric order for integer labels.
    np.testing.assert_array_equal(vocab.encode(examples, "classification"), [2, 1, 0, 1])
    assert vocab.encode(examples, "classification").dtype == np.int32
    path = str(tmp_path / "model" / "labels.txt")
    vocab.save(path)
    assert open(path, encoding="utf-8").read() == "1\n2\n10\n"
    assert LabelVocab.load(path) == vocab
    words = LabelVocab.build(Examples(texts=["a", "b"], labels=["neg", "Neutral"]),
                             "classification")
    assert words.labels == ["Neutral", "neg"]
    assert words.decode([1, 0]) == ["neg", "Neutral"]


def test_label_vocab_multi_label_and_unicode(tmp_path):
    examples = Examples(texts=["a", "b", "c"], labels=[["sport", "état"], [], ["état"]])
    vocab = LabelVocab.build(examples, "multi_label")
    assert vocab.labels == ["sport", "état"]
    multi_hot = vocab.encode(examples, "multi_label")
    assert multi_hot.dtype == np.float32
    np.testing.assert_array_equal(multi_hot, [[1, 1], [0, 0], [0, 1]])
    vocab.save(tmp_path / "labels.txt")
    assert LabelVocab.load(tmp_path / "labels.txt") == vocab


def test_label_vocab_errors(tmp_path):
    vocab = LabelVocab([str(i) for i in range(30)])
    unseen = Examples(texts=["a", "b"], labels=["3", "99"], sources=["dev.csv:2", "dev.csv:17"])
    with pytest.raises(DataError) as info:
        vocab.encode(unseen, "classification")
    message = str(info.value)
    assert message.startswith("dev.csv:17: label '99'") and "'0', '1'" in message
    assert "(10 more)" in message
    with pytest.raises(ValueError, match="regression"):
        LabelVocab.build(unseen, "regression")
    with pytest.raises(DataError, match="line break"):
        LabelVocab.build(Examples(texts=["a"], labels=["two\nlines"], sources=["x.csv:4"]),
                         "classification")
    with pytest.raises(DataError, match="no labels"):
        LabelVocab.build(Examples(texts=["a"], labels=[]), "classification")
    path = write(tmp_path, "dup.txt", "a\nb\na\n")
    with pytest.raises(DataError, match="dup.txt:3: duplicate label 'a'"):
        LabelVocab.load(path)
    with pytest.raises(DataError, match="file not found"):
        LabelVocab.load(tmp_path / "missing.txt")
