"""read_documents: unlabelled text for masked-LM pre-training from plain text files and folders,
JSON Lines / CSV / TSV columns and TFDS, with `path:line` sources and clear errors."""

import json
import logging
import re

import pytest

from tfbert.data.examples import DataError
from tfbert.data.text_corpus import Documents, read_documents

TEXT = ("The first document\n"
        "goes on here.\n"
        "\n"
        "\n"
        "   Second document, one line.   \n"
        "   \n"
        "Third\n"
        "document\n"
        "ends the file")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_plain_text_documents_are_separated_by_blank_lines(tmp_path):
    path = write(tmp_path / "corpus.txt", TEXT)
    docs = read_documents(path)
    assert isinstance(docs, Documents) and len(docs) == 3
    assert docs.texts == ["The first document goes on here.", "Second document, one line.",
                          "Third document ends the file"]
    assert docs.sources == [f"{path}:1", f"{path}:5", f"{path}:7"]


def test_plain_text_line_by_line(tmp_path):
    path = write(tmp_path / "corpus.txt", TEXT)
    docs = read_documents(path, line_by_line=True)
    assert docs.texts == ["The first document", "goes on here.", "Second document, one line.", "Third", "document",
                          "ends the file"]
    assert docs.sources == [f"{path}:{n}" for n in (1, 2, 5, 7, 8, 9)]


def test_windows_line_ends_a_bom_and_other_extensions(tmp_path):
    data = "\ufeff" + TEXT.replace("\n", "\r\n")
    for name in ("corpus.txt", "notes.md", "README", "corpus.text"):
        path = tmp_path / name
        path.write_bytes(data.encode("utf-8"))
        docs = read_documents(str(path))
        assert docs.texts[0] == "The first document goes on here.", name
        assert docs.sources == [f"{path}:1", f"{path}:5", f"{path}:7"], name


def test_sources_count_newline_terminated_lines(tmp_path):
    # A form feed (page break) or U+2028 inside a file is not a line end for editors or for the
    # invalid-UTF-8 message (which counts "\n"), so it must not shift the reported lines, nor split
    # a line in two documents under line_by_line.
    path = write(tmp_path / "pages.txt", "page one\n\x0c\npage two\nstill\u2028two\n\nthree\n")
    docs = read_documents(path)
    assert docs.sources == [f"{path}:1", f"{path}:3", f"{path}:6"], docs.sources
    lines = read_documents(path, line_by_line=True)
    assert lines.sources == [f"{path}:{n}" for n in (1, 3, 4, 6)], lines.sources
    assert len(lines.texts) == 4, lines.texts


def test_a_folder_is_read_recursively_in_name_order(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "z_sub").mkdir(parents=True)
    write(folder / "c.txt", "gamma one\n\ngamma two\n")
    write(folder / "a.txt", "alpha\n")
    write(folder / "z_sub" / "inner.text", "zeta\n")
    write(folder / ".hidden.txt", "never read\n")
    (folder / ".git").mkdir()
    write(folder / ".git" / "HEAD", "never read either\n")
    docs = read_documents(str(folder))
    assert docs.texts == ["alpha", "gamma one", "gamma two", "zeta"]
    assert docs.sources == [f"{folder / 'a.txt'}:1", f"{folder / 'c.txt'}:1", f"{folder / 'c.txt'}:3",
                            f"{folder / 'z_sub' / 'inner.text'}:1"]
    assert read_documents(str(folder), line_by_line=True).texts == ["alpha", "gamma one", "gamma two", "zeta"]


def test_select_keeps_texts_and_sources_together(tmp_path):
    docs = read_documents(write(tmp_path / "corpus.txt", TEXT))
    picked = docs.select([2, 0])
    assert picked.texts == [docs.texts[2], docs.texts[0]] and picked.sources == [docs.sources[2], docs.sources[0]]


def test_json_lines_with_a_text_column(tmp_path):
    rows = [{"id": 1, "body": "First article.", "title": "a"}, {"id": 2, "body": "Second.", "title": "b"},
            {"id": 3, "body": "Third article\nwith two lines.", "title": "c"}]
    path = write(tmp_path / "articles.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs = read_documents(path, text_column="body")
    assert docs.texts == ["First article.", "Second.", "Third article\nwith two lines."]
    assert docs.sources == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert read_documents(path, text_column="title").texts == ["a", "b", "c"]
    # the default column is "text" (or "sentence")
    default = write(tmp_path / "default.jsonl", json.dumps({"text": "plain"}) + "\n" + json.dumps({"text": "two"}))
    assert read_documents(default).texts == ["plain", "two"]


def test_json_lines_missing_text_column_is_an_error(tmp_path):
    path = write(tmp_path / "articles.jsonl", json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError) as error:
        read_documents(path, text_column="content")
    assert str(path) in str(error.value) and "content" in str(error.value)


def test_csv_and_tsv_columns(tmp_path):
    path = write(tmp_path / "notes.csv", 'id,text,label\n1,"A note, with a comma.",x\n3,Another note.,z\n')
    docs = read_documents(path)
    assert docs.texts == ["A note, with a comma.", "Another note."]
    assert docs.sources == [f"{path}:2", f"{path}:3"]
    named = write(tmp_path / "named.csv", "id,content\n1,hello there\n2,general kenobi\n")
    assert read_documents(named, text_column="content").texts == ["hello there", "general kenobi"]
    tsv = write(tmp_path / "notes.tsv", "content\tother\nfirst line\t1\nsecond line\t2\n")
    assert read_documents(tsv, text_column="content").texts == ["first line", "second line"]


def test_tfds_text(tfds_data_dir):
    docs = read_documents("tfds:tiny_tfbert_reviews[validation]", data_dir=tfds_data_dir)
    assert sorted(docs.texts) == ["awful film", "great film"]
    assert all(s.startswith("tfds:tiny_tfbert_reviews[validation]") for s in docs.sources)


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="no such file or folder") as error:
        read_documents(str(missing))
    assert error.value.location == str(missing)


def test_invalid_utf8_names_the_file_and_line(tmp_path, caplog):
    path = tmp_path / "latin1.txt"
    path.write_bytes("fine line\n\nsecond doc\ncaf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="invalid UTF-8") as error:
        read_documents(str(path))
    assert error.value.location == f"{path}:4"
    assert str(error.value).startswith(f"{path}:4: invalid UTF-8")
    assert str(error.value).endswith("; --skip_bad_rows skips such lines")
    # with skip_bad_rows the line is left out of its document (which goes on), with a warning
    path.write_bytes(b"fine line\r\n\r\nsecond doc\ncaf\xe9 au lait\nthird line\n\nlast\n")
    with caplog.at_level(logging.WARNING, logger="tfbert"):
        documents = read_documents(str(path), skip_bad_rows=True)
    assert documents.texts == ["fine line", "second doc third line", "last"]
    assert documents.sources == [f"{path}:1", f"{path}:3", f"{path}:7"]
    assert [m for m in caplog.messages if m.startswith("skipped")] == [
        f"skipped {path}:4: invalid UTF-8: byte 0xe9 at byte offset 3 of the line (offset 27 in the file); save the "
        "file as UTF-8"]
    assert read_documents(str(path), line_by_line=True, skip_bad_rows=True).texts == [
        "fine line", "second doc", "third line", "last"]
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="no text found"):
        read_documents(str(path), skip_bad_rows=True)
    # also inside a folder, for line_by_line too
    folder = tmp_path / "folder"
    folder.mkdir()
    write(folder / "a.txt", "good\n")
    (folder / "b.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(DataError) as error:
        read_documents(str(folder), line_by_line=True)
    assert error.value.location == f"{folder / 'b.txt'}:2"


def test_files_and_folders_without_text(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="no text found") as error:
        read_documents(str(empty))
    assert error.value.location == str(empty)
    blank = write(tmp_path / "blank.txt", "\n   \n\t\n")
    with pytest.raises(DataError, match="no text found"):
        read_documents(blank, line_by_line=True)
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(DataError, match="no text found .the folder has no readable files."):
        read_documents(str(folder))


def test_blank_rows_of_a_table_are_skipped_like_blank_lines(tmp_path):
    # read_documents keeps only rows with text (text_corpus.py's `kept` filter), as the plain text reader
    # skips blank lines: a corpus with some empty rows trains on the others; one with none left has no text.
    jsonl = write(tmp_path / "rows.jsonl", "\n".join(json.dumps({"text": t}) for t in ["one", " ", "three"]) + "\n")
    docs = read_documents(jsonl)
    assert docs.texts == ["one", "three"] and docs.sources == [f"{jsonl}:1", f"{jsonl}:3"]
    csv = write(tmp_path / "rows.csv", "id,text\n1,one\n2,\n3,three\n")
    assert read_documents(csv).texts == ["one", "three"]
    # a folder whose name holds ": " (the skipped row's location is "<path>:<line>"): still an empty row
    folder = tmp_path / "notes: 2026"
    folder.mkdir()
    empty_row = write(folder / "rows.jsonl", json.dumps({"text": "one"}) + "\n" + json.dumps({"text": ""}) + "\n")
    assert read_documents(empty_row).texts == ["one"]
    bad_row = write(folder / "bad.jsonl", json.dumps({"text": "one"}) + "\n" + json.dumps({"text": 5}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{bad_row}:2: ")):
        read_documents(bad_row)
    blank = write(tmp_path / "blank.jsonl", json.dumps({"text": " "}) + "\n")
    with pytest.raises(DataError, match=r"blank.jsonl: no examples left after skipping 1 bad rows.*empty text"):
        read_documents(blank)


def test_a_bad_table_row_is_an_error_unless_skipped(tmp_path, caplog):
    # an empty text passes over like a blank line; invalid JSON or a text that is not a string is a
    # mistake in the file (it was skipped with a warning alone)
    for name, bad in (("invalid.jsonl", '{"text": "two"'), ("number.jsonl", json.dumps({"text": 5}))):
        path = write(tmp_path / name, "\n".join([json.dumps({"text": "one"}), bad, json.dumps({"text": "three"})]))
        with pytest.raises(DataError, match=rf"{name}:2: .*; --skip_bad_rows skips such rows"):
            read_documents(path)
        with caplog.at_level("WARNING"):
            docs = read_documents(path, skip_bad_rows=True)
        assert docs.texts == ["one", "three"] and f"skipped {path}:2: " in caplog.text
