"""Tests for tfbert.data.readers: formats, columns, errors with file:line, splits, LabelVocab."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tfbert.data.readers import (
    DataError,
    Examples,
    LabelVocab,
    read_examples,
    read_tfds,
    train_validation_split,
    train_validation_test_split,
)


def write(directory, name: str, content: str | bytes) -> str:
    path = os.path.join(str(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    with open(path, "wb") as f:
        f.write(data)
    return path


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_examples(path, **kwargs)
    return str(info.value)


# ---- CSV -----------------------------------------------------------------------------------


def test_csv_with_header_quoted_commas_and_newlines_report_start_lines(tmp_path):
    path = write(tmp_path, "train.csv",
                 'id,text,label\n'
                 '1,"Hello, world",pos\n'
                 '2,"first line\nsecond line\nthird",neg\n'
                 '\n'
                 '3,"say ""hi""",pos\n')
    examples = read_examples(path)
    assert examples.texts == ["Hello, world", "first line\nsecond line\nthird", 'say "hi"']
    assert examples.labels == ["pos", "neg", "pos"]
    assert examples.text_pairs is None
    assert examples.sources == [f"{path}:2", f"{path}:3", f"{path}:7"]
    assert examples.skipped == []


def test_csv_bom_crlf_and_header_autodetected_by_sentence(tmp_path):
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbfsentence,label\r\n  padded text  ,1\r\nb,0\r\n")
    examples = read_examples(path)
    assert examples.texts == ["padded text", "b"]
    assert examples.labels == ["1", "0"]


def test_csv_without_header_uses_default_columns(tmp_path):
    path = write(tmp_path, "plain.csv", "great movie,pos\nawful,neg\n")
    examples = read_examples(path)  # Autodetect: no 'text'/'sentence'/'label' in row 1.
    assert examples.texts == ["great movie", "awful"]
    assert examples.labels == ["pos", "neg"]
    assert examples.sources[0].endswith("plain.csv:1")
    # A header-looking first row is data when has_header=False.
    path = write(tmp_path, "forced.csv", "text,label\nb,neg\n")
    assert read_examples(path, has_header=False).texts == ["text", "b"]


def test_csv_columns_by_name_and_index_and_pairs(tmp_path):
    path = write(tmp_path, "pairs.csv",
                 "premise,hypothesis,gold\nA man sleeps,A person rests,entail\nx,y,contra\n")
    by_name = read_examples(path, text_column="premise", text_pair_column="hypothesis",
                            label_column="gold")
    by_index = read_examples(path, has_header=True, text_column=0, text_pair_column=1,
                             label_column=2)
    assert by_name == by_index
    assert by_name.texts == ["A man sleeps", "x"]
    assert by_name.text_pairs == ["A person rests", "y"]
    assert by_name.labels == ["entail", "contra"]
    # Without a header, a pair column moves the default label to column 2.
    path = write(tmp_path, "pairs_plain.csv", "a,b,yes\nc,d,no\n")
    plain = read_examples(path, text_pair_column=1)
    assert plain.texts == ["a", "c"] and plain.text_pairs == ["b", "d"]
    assert plain.labels == ["yes", "no"]


def test_prediction_input_without_labels(tmp_path):
    path = write(tmp_path, "predict.csv", "text\nfirst\nsecond\n")
    examples = read_examples(path, require_labels=False)
    assert examples.texts == ["first", "second"]
    assert examples.labels == []
    path = write(tmp_path, "some.csv", "text,label\na,x\nb,\n")
    assert read_examples(path, require_labels=False).labels == ["x", None]


# ---- TSV / JSONL / folder ------------------------------------------------------------------


def test_tsv_and_txt_do_not_interpret_quotes(tmp_path):
    path = write(tmp_path, "dev.tsv", 'sentence\tlabel\nit \'s "quoted, really\t1\nplain\t0\n')
    examples = read_examples(path)
    assert examples.texts == ['it \'s "quoted, really', "plain"]
    assert examples.labels == ["1", "0"]
    path = write(tmp_path, "data.txt", "one\tA\ntwo\tB\n")
    assert read_examples(path).labels == ["A", "B"]


def test_jsonl_keys_values_and_blank_lines(tmp_path):
    path = write(tmp_path, "train.jsonl",
                 '{"text": "good", "label": 1}\n'
                 '\n'
                 '{"text": "bad", "label": "0", "extra": [1, 2]}\n')
    examples = read_examples(path)
    assert examples.texts == ["good", "bad"]
    assert examples.labels == ["1", "0"]  # JSON numbers become strings, as from CSV.
    assert examples.sources == [f"{path}:1", f"{path}:3"]
    path = write(tmp_path, "pairs.json",
                 '{"q": "who?", "a": "me", "y": "yes"}\n{"q": "why?", "a": "no", "y": "no"}\n')
    pairs = read_examples(path, text_column="q", text_pair_column="a", label_column="y")
    assert pairs.text_pairs == ["me", "no"] and pairs.labels == ["yes", "no"]
    by_index = read_examples(path, text_column=0, text_pair_column=1, label_column=2)
    assert by_index == pairs


def test_folder_of_label_subfolders(tmp_path):
    root = tmp_path / "reviews"
    write(root, "pos/a.txt", "Loved it.\n")
    write(root, "pos/b.txt", "Great\nfun")
    write(root, "neg/c.txt", "Boring.")
    write(root, "neg/.hidden.txt", "ignored")
    write(root, ".cache/d.txt", "ignored")
    write(root, "README.md", "top-level files are not examples")
    examples = read_examples(str(root))
    assert sorted(zip(examples.texts, examples.labels)) == [
        ("Boring.", "neg"), ("Great\nfun", "pos"), ("Loved it.", "pos")]
    assert examples.sources[0] == os.path.join(str(root), "neg", "c.txt") + ":1"


def test_folder_errors_name_the_file(tmp_path):
    root = tmp_path / "docs"
    write(root, "pos/ok.txt", "fine")
    write(root, "neg/bad.txt", b"line one\nline \xff two\n")
    message = str(pytest.raises(DataError, read_examples, str(root)).value)
    assert "bad.txt:2:" in message and "offset 5" in message
    write(root, "neg/bad.txt", "   \n")
    message = str(pytest.raises(DataError, read_examples, str(root)).value)
    assert "bad.txt:1:" in message and "empty text" in message
    assert "no label sub-folders" in error_of(str(tmp_path / "docs" / "pos"), file_format="folder")


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


def test_regression_labels_are_floats(tmp_path):
    path = write(tmp_path, "scores.csv", "text,label\na,0.5\nb, 3\nc,-1e-2\n")
    assert read_examples(path, task="regression").labels == [0.5, 3.0, -0.01]
    path = write(tmp_path, "bad_scores.csv", "text,label\na,0.5\nb,high\n")
    message = error_of(path, task="regression")
    assert "bad_scores.csv:3:" in message and "'high'" in message and "number" in message


# ---- errors --------------------------------------------------------------------------------


def test_missing_file_and_empty_file(tmp_path):
    assert error_of(str(tmp_path / "nope.csv")).endswith("nope.csv: file not found")
    path = write(tmp_path, "empty.tsv", "\n  \n")
    assert "empty.tsv: the file is empty" in error_of(path)
    path = write(tmp_path, "header_only.csv", "text,label\n")
    assert "header_only.csv: no examples" in error_of(path)


def test_missing_named_column_lists_columns_found(tmp_path):
    path = write(tmp_path, "cols.csv", "review,stars\ngood,5\n")
    message = error_of(path, text_column="review", label_column="label", has_header=True)
    assert "cols.csv:1:" in message and "'label'" in message
    assert "'review', 'stars'" in message
    message = error_of(path, has_header=True)
    assert "no text column" in message and "'review', 'stars'" in message
    # A name with no header in the file.
    message = error_of(path, text_column="body")
    assert "cols.csv:1:" in message and "no header" in message
    path = write(tmp_path, "cols.jsonl", '{"body": "x", "label": "a"}\n')
    message = error_of(path, text_column="text")
    assert "cols.jsonl:1:" in message and "'body', 'label'" in message


def test_row_errors_name_file_and_line(tmp_path):
    cases = [
        ("few.csv", "text,label\na,x\nonly-one-field\n", "few.csv:3:", "too few fields"),
        ("empty_text.csv", 'text,label\na,x\n"  ",y\n', "empty_text.csv:3:", "empty text"),
        ("no_label.tsv", "text\tlabel\na\tx\nb\t \n", "no_label.tsv:3:", "missing label"),
        ("extra.csv", "text,label\na,b,c\n", "extra.csv:2:", "too many fields"),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label: 1}\n', "bad.jsonl:2:",
         "invalid JSON"),
        ("array.json", '[{"text": "a", "label": "x"}]\n', "array.json:1:", "JSON Lines"),
        ("null.jsonl", '{"text": "a", "label": "x"}\n{"text": null, "label": "y"}\n',
         "null.jsonl:2:", "empty text"),
    ]
    for name, content, location, reason in cases:
        message = error_of(write(tmp_path, name, content))
        assert message.startswith(os.path.join(str(tmp_path), location)), message
        assert reason in message, message


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    path = write(tmp_path, "latin1.csv", b"text,label\nok,a\ncaf\xe9 au lait,b\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3:")
    assert "0xe9" in message and "byte offset 3 of the line" in message
    # Inside a multi-line quoted record the error is reported at the record's start.
    path = write(tmp_path, "multi.csv", b'text,label\n"one\ntw\xff",a\n')
    assert error_of(path).startswith(f"{path}:2:")


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


# ---- splits --------------------------------------------------------------------------------


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


# ---- LabelVocab ----------------------------------------------------------------------------


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


# ---- TFDS ----------------------------------------------------------------------------------


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
