"""Tests for tfbert.data.files (through `read_examples`): formats, columns, errors with file:line."""

from __future__ import annotations

import os
import re

import pytest
from reader_helpers import error_of, write

from tfbert.data.examples import DataError
from tfbert.data.readers import read_examples


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


def test_csv_header_names_match_whatever_their_case(tmp_path):
    # a "Text,Label" header was once read as a data row, and "Label" trained as a class
    path = write(tmp_path, "caps.csv", "Text,LABEL\ngood film,pos\nbad film,neg\n")
    examples = read_examples(path)
    assert examples.texts == ["good film", "bad film"] and examples.labels == ["pos", "neg"]
    assert examples.sources[0] == f"{path}:2"
    named = write(tmp_path, "named.tsv", "Review\tVerdict\ngood\tpos\n")
    assert read_examples(named, text_column="review", label_column="verdict").labels == ["pos"]


def test_a_header_of_other_names_read_as_data_is_warned_about(tmp_path, caplog):
    rows = "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(12))
    path = write(tmp_path, "other.csv", "content,category\n" + rows)
    with caplog.at_level("WARNING", logger="tfbert.data.files"):
        examples = read_examples(path)
    assert examples.labels[0] == "category"  # no header named text/label: the first row is data ...
    assert f"{path}:1: the first row was read as data, and its label 'category' occurs in no other row" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tfbert.data.files"):
        read_examples(write(tmp_path, "plain.csv", rows))  # ... but a first row like the others is not warned about
    assert caplog.text == ""
    # a small file too (four rows, not warned about before)
    small = write(tmp_path, "small.csv", "review,sentiment\ngood film,pos\nbad film,neg\ngreat movie,pos\n")
    with caplog.at_level("WARNING", logger="tfbert.data.files"):
        read_examples(small)
    assert "its label 'sentiment' occurs in no other row" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tfbert.data.files"):  # every label once: nothing to tell by
        read_examples(write(tmp_path, "three.csv", "good film,pos\nbad film,neg\nso so,neutral\n"))
    assert caplog.text == ""


def test_columns_given_as_digits_are_indexes(tmp_path):
    """A command line passes every column as a string: "1" is the column's 0-based index in a file without a
    header (it was refused as a name no header holds), and in a header that has no column named "1"."""
    headerless = write(tmp_path, "label_first.csv", "1,good film\n0,bad film\n1,great movie\n")
    examples = read_examples(headerless, text_column="1", label_column="0")
    assert examples.texts == ["good film", "bad film", "great movie"] and examples.labels == ["1", "0", "1"]
    with_header = write(tmp_path, "header.csv", "stars,review\n5,good film\n1,bad film\n")
    examples = read_examples(with_header, text_column="1", label_column="stars")
    assert examples.texts == ["good film", "bad film"] and examples.labels == ["5", "1"]
    # pandas writes unnamed columns as a header "0,1": found by the digits at their own index
    pandas = write(tmp_path, "pandas.csv", "0,1\ngood film,pos\nbad film,neg\n")
    examples = read_examples(pandas, text_column="0", label_column="1")
    assert examples.texts == ["good film", "bad film"] and examples.sources[0] == f"{pandas}:2"



def test_a_column_named_twice_in_the_header_is_refused(tmp_path):
    path = write(tmp_path, "twice.csv", "text,label,label\ngood film,pos,neg\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:1: label column 'label' is in the header 2 times "
                                                  "(columns 1, 2, from 0): rename one, or give the column's index")):
        read_examples(path)
    assert read_examples(path, label_column="2").labels == ["neg"]


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
    assert message.endswith("(the whole file, one example)")  # not only its line 2 (--skip_bad_rows)
    write(root, "neg/bad.txt", "   \n")
    message = str(pytest.raises(DataError, read_examples, str(root)).value)
    assert "bad.txt:1:" in message and "empty text" in message
    assert "no label sub-folders" in error_of(str(tmp_path / "docs" / "pos"), file_format="folder")


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
        # without a header too: an unquoted comma made "shares rose" a label of its own
        ("noheader.csv", "stocks fell,money\nbank, shares rose,money\ngoal,sport\n", "noheader.csv:2:",
         "too many fields: expected 2 as in the other rows, found 3; quote fields that contain commas"),
        ("noheader.tsv", "stocks fell\tmoney\ngoal\tsport\nbank\tshares\tmoney\n", "noheader.tsv:3:",
         "too many fields: expected 2 as in the other rows, found 3; a text contains a tab"),
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
