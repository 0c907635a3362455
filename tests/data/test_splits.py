"""Tests for tfbert.data.splits: deterministic, disjoint, stratified splits."""

from __future__ import annotations

import pytest

from tfbert.data.examples import Examples
from tfbert.data.splits import train_validation_split, train_validation_test_split


def make_examples(counts: dict[str, int]) -> Examples:
    labels = [label for label, count in counts.items() for _ in range(count)]
    return Examples(texts=[f"text {i}" for i in range(len(labels))], labels=labels,
                    sources=[f"data.csv:{i + 2}" for i in range(len(labels))])


def test_split_is_deterministic_disjoint_and_stratified():
    examples = make_examples({"a": 50, "b": 30, "c": 2, "d": 1, "e": 17})
    train, validation = train_validation_split(examples, 0.2, seed=7)
    again = train_validation_split(examples, 0.2, seed=7)
    assert (train, validation) == again
    assert train_validation_split(examples, 0.2, seed=8)[1].sources != validation.sources
    assert not set(train.sources) & set(validation.sources)
    assert sorted(train.sources + validation.sources) == sorted(examples.sources)
    assert abs(len(validation) - 20) <= 5  # Within the number of classes.
    for label in ("a", "b", "c", "e"):  # Every class with >= 2 examples is in both sets.
        assert label in train.labels and label in validation.labels
    assert validation.labels.count("a") == 10 and validation.labels.count("b") == 6
    # Texts and labels stay together.
    by_source = dict(zip(examples.sources, zip(examples.texts, examples.labels)))
    assert all(by_source[s] == (t, y) for s, t, y in
               zip(validation.sources, validation.texts, validation.labels))


def test_three_way_split_sizes_and_small_classes():
    examples = make_examples({"x": 80, "y": 15, "z": 3, "w": 2})
    train, validation, test = train_validation_test_split(examples, (0.8, 0.1, 0.1), seed=0)
    assert len(train) + len(validation) + len(test) == 100
    for part, expected in ((train, 80), (validation, 10), (test, 10)):
        assert abs(len(part) - expected) <= 4
    assert {"x", "y", "z"} <= set(test.labels) and {"x", "y", "z"} <= set(validation.labels)
    assert "w" in train.labels and "w" in validation.labels  # 2 examples: train, then validation.
    assert len(set(train.sources) | set(validation.sources) | set(test.sources)) == 100


def test_plain_split_for_regression_and_multi_label_keeps_pairs():
    regression = Examples(texts=[f"t{i}" for i in range(10)], labels=[float(i) for i in range(10)],
                          text_pairs=[f"p{i}" for i in range(10)])
    train, validation = train_validation_split(regression, 0.3, seed=1)
    assert len(validation) == 3 and len(train) == 7
    assert all(p == "p" + t[1:] for t, p in zip(train.texts, train.text_pairs))
    multi = Examples(texts=["a", "b", "c", "d"], labels=[["x"], ["x", "y"], [], ["y"]])
    assert [len(part) for part in train_validation_split(multi, 0.5, seed=0)] == [2, 2]
    with pytest.raises(ValueError):
        train_validation_split(multi, 1.0, seed=0)
