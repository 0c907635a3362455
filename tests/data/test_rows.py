"""Tests for tfbert.data.rows (through `read_examples`): labels by task, skip_bad_rows."""

from __future__ import annotations

import pytest
from reader_helpers import error_of, write

from tfbert.data.examples import DataError
from tfbert.data.readers import read_examples


# ---- labels by task ------------------------------------------------------------------------


def test_multi_label_split_strip_dedupe(tmp_path):
    path = write(tmp_path, "tags.csv", 'text,label\na," sports, news,,sports"\nb,news\n')
    examples = read_examples(path, task="multi_label")
    assert examples.labels == [["sports", "news"], ["news"]]
    path = write(tmp_path, "tags.tsv", "text\tlabel\na\tx|y\n")
    assert read_examples(path, task="multi_label", label_delimiter="|").labels == [["x", "y"]]
    path = write(tmp_path, "tags.jsonl", '{"text": "a", "label": ["x", " y", "x"]}\n'
                                          '{"text": "b", "label": []}\n')
    assert read_examples(path, task="multi_label").labels == [["x", "y"], []]


def test_a_list_label_of_a_single_label_run_names_the_flag_that_reads_it(tmp_path):
    path = write(tmp_path, "tags.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n')
    assert error_of(path) == (f"{path}:2: expected one label in key 'label', found a list ['x', 'y']; for several "
                              "labels per example read it with task='multi_label' (train_cls.py: --multi_label)")


def test_regression_labels_are_floats(tmp_path):
    path = write(tmp_path, "scores.csv", "text,label\na,0.5\nb, 3\nc,-1e-2\n")
    assert read_examples(path, task="regression").labels == [0.5, 3.0, -0.01]
    path = write(tmp_path, "bad_scores.csv", "text,label\na,0.5\nb,high\n")
    message = error_of(path, task="regression")
    assert "bad_scores.csv:3:" in message and "'high'" in message and "number" in message


def test_whole_float_json_labels_are_the_integer_class(tmp_path):
    path = write(tmp_path, "num.jsonl", '{"text": "good film", "label": 1}\n{"text": "great movie", "label": 1.0}\n'
                                         '{"text": "meh", "label": 0.5}\n{"text": "bad", "label": -2.0}\n')
    assert read_examples(path).labels == ["1", "1", "0.5", "-2"]
    assert read_examples(path, task="multi_label").labels == [["1"], ["1"], ["0.5"], ["-2"]]
    assert read_examples(path, task="regression").labels == [1.0, 1.0, 0.5, -2.0]
    # the same in CSV, where every cell is a string: "1.0" (pandas writes a float column so) is "1"
    path = write(tmp_path, "num.csv", "text,label\ngood film,1\ngreat movie, 1.0\nmeh,0.50\nbad,-2.00\nfine,03.0\n"
                                       'many,"1.0,2"\nversion,v1.0\n')
    assert read_examples(path).labels == ["1", "1", "0.50", "-2", "03", "1.0,2", "v1.0"]
    assert read_examples(path, task="multi_label").labels[5] == ["1", "2"]


# ---- skip_bad_rows --------------------------------------------------------------------------


def test_skip_bad_rows_records_reasons_but_file_errors_still_raise(tmp_path):
    path = write(tmp_path, "mixed.csv", b"text,label\ngood,a\n,b\nbad \xff,c\nfine,\nok,d\n")
    examples = read_examples(path, skip_bad_rows=True)
    assert examples.texts == ["good", "ok"]
    assert examples.sources == [f"{path}:2", f"{path}:6"]
    assert [entry.split(": ")[0] for entry in examples.skipped] == [
        f"{path}:3", f"{path}:4", f"{path}:5"]
    assert "empty text" in examples.skipped[0]
    assert "invalid UTF-8" in examples.skipped[1]
    assert "missing label" in examples.skipped[2]
    path = write(tmp_path, "bad.jsonl", 'oops\n{"text": "a", "label": "x"}\n')
    examples = read_examples(path, skip_bad_rows=True)
    assert examples.texts == ["a"] and examples.skipped[0].startswith(f"{path}:1: invalid JSON")
    # File-level problems are not skippable; nothing left is an error too.
    with pytest.raises(DataError, match="not found in the header"):
        read_examples(write(tmp_path, "c.csv", "text\nx\n"), label_column="label",
                      skip_bad_rows=True)
    message = error_of(write(tmp_path, "all_bad.csv", "text,label\n,a\n"), skip_bad_rows=True)
    assert "no examples left after skipping 1" in message and "all_bad.csv:2" in message
