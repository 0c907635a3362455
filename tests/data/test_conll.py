"""Tagged-sentence readers: CoNLL variants, JSON Lines, tag schemes, and errors that name file:line."""

import json

import pytest

from tfbert import datasets
from tfbert.data.conll import detect_scheme, iob2_to_entities, read_tagged, to_iob2
from tfbert.data.readers import DataError


def test_conll_with_docstart_spaces_and_blank_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
                    "\t\n  \nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n", encoding="utf-8")
    sentences = read_tagged(str(path))
    assert sentences.words == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert sentences.tags == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert sentences.sources == [f"{path}:3", f"{path}:8"]
    # another column as the tag: the chunk tags
    chunks = read_tagged(str(path), tag_column=2)
    assert chunks.tags[0] == ["B-NP", "B-VP", "B-NP"]


def test_iob1_and_bioes_are_read_as_iob2(tmp_path):
    iob1 = tmp_path / "iob1.conll"
    iob1.write_text("John\tI-PER\nSmith\tI-PER\nMary\tB-PER\nin\tO\nParis\tI-LOC\n", encoding="utf-8")
    sentences = read_tagged(str(iob1))
    assert sentences.scheme == "iob1"
    assert sentences.tags == [["B-PER", "I-PER", "B-PER", "O", "B-LOC"]]
    bioes = tmp_path / "bioes.jsonl"
    bioes.write_text(json.dumps({"tokens": ["New", "York", "City", "is", "big", "Bob"],
                                 "tags": ["B-LOC", "I-LOC", "E-LOC", "O", "O", "S-PER"]}) + "\n", encoding="utf-8")
    sentences = read_tagged(str(bioes))
    assert sentences.scheme == "bioes" and sentences.tags == [["B-LOC", "I-LOC", "I-LOC", "O", "O", "B-PER"]]
    with pytest.raises(DataError, match=r"iob1.conll:1: tags given as iob2, but 'I-PER' \(word 1 of its sentence\) "
                                        r"starts an entity without B- \(IOB1\)"):
        read_tagged(str(iob1), scheme="iob2")
    after_o = tmp_path / "after_o.conll"
    after_o.write_text("a\tO\n\nb\tB-X\nc\tO\nd\tI-X\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"after_o.conll:5: tags given as iob2, but 'I-X' \(word 3"):
        read_tagged(str(after_o), scheme="iob2")


def test_scheme_helpers():
    assert detect_scheme([["B-X", "I-X", "O"]]) == "iob2"
    assert detect_scheme([["O", "I-X"]]) == "iob1"
    assert detect_scheme([["S-X"]]) == "bioes"
    assert to_iob2(["S-X", "B-X", "E-X", "S-X"], "bioes") == ["B-X", "B-X", "I-X", "B-X"]
    assert iob2_to_entities(list("abcde"), ["B-X", "I-X", "I-Y", "O", "I-X"]) == [("X", 0, 2), ("Y", 2, 3), ("X", 4, 5)]


@pytest.mark.parametrize("content, where, message", [
    ("good\tO\nbad\n", 2, "expected a token and a tag"),
    ("good\tO\nbad\tPERSON\n", 2, "tag 'PERSON' is not O or B-/I-/E-/S-<type>"),
    ("a b c\nd e f\n", 1, "tag 'c' is not O"),
])
def test_bad_lines_name_file_and_line(tmp_path, content, where, message):
    path = tmp_path / "bad.conll"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=f"bad.conll:{where}: {message}"):
        read_tagged(str(path))


def test_skip_bad_rows_drops_the_sentence(tmp_path):
    path = tmp_path / "some_bad.conll"
    path.write_text("ok\tO\n\nbad\tPERSON\nrest\tO\n\nfine\tB-X\n", encoding="utf-8")
    assert read_tagged(str(path), skip_bad_rows=True).words == [["ok"], ["fine"]]


def test_jsonl_errors_and_empty_files(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"tokens": ["a", "b"], "tags": ["O"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:1: 'tags' must be a list with one tag per token"):
        read_tagged(str(path))
    path.write_text('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [], "tags": []}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:2: 'tokens' must be a non-empty list"):
        read_tagged(str(path))
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.conll: no sentences found"):
        read_tagged(str(empty))
    with pytest.raises(DataError, match="missing.conll: file not found"):
        read_tagged(str(tmp_path / "missing.conll"))


def test_shipped_wnut17_has_its_licence_and_splits():
    for split, sentences in (("train", 3394), ("validation", 1009), ("test", 1287)):
        data = read_tagged(datasets.path("wnut17", f"{split}.conll"))
        assert len(data) == sentences and data.scheme == "iob2"
    assert {tag[2:] for tag in data.tag_names() if tag != "O"} == {
        "corporation", "creative-work", "group", "location", "person", "product"}
    licence = open(datasets.path("wnut17", "LICENSE.txt"), encoding="utf-8").read()
    assert "CC BY 4.0" in licence and "Derczynski" in licence
