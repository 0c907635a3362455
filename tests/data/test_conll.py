"""Tagged-sentence readers: CoNLL variants, JSON Lines, tag schemes, and errors that name file:line."""

import json
import logging

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
    sentences = read_tagged(str(path), skip_bad_rows=True)
    assert sentences.words == [["ok"], ["fine"]]
    assert sentences.skipped == [f"{path}:3: tag 'PERSON' is not O or B-/I-/E-/S-<type> (is --tag_column right?) "
                                 "(its sentence is skipped)"]


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
    (tmp_path / "folder.conll").mkdir()
    with pytest.raises(DataError, match="folder.conll: is a directory; expected a CoNLL file"):
        read_tagged(str(tmp_path / "folder.conll"))


def test_a_file_without_blank_lines_is_said_to_run_its_sentences_together(tmp_path, caplog):
    path = tmp_path / "noblank.conll"
    path.write_text("A\tO\n\n" + "John\tB-PER\nran\tO\n.\tO\n" * 120, encoding="utf-8")  # 360 words, no blank line
    with caplog.at_level(logging.WARNING, logger="tfbert"):
        sentences = read_tagged(str(path))
    assert [len(words) for words in sentences.words] == [1, 360]  # read as it is: a document may be that long
    assert caplog.messages == [f"{path}: 1 of its 2 sentences has more than 300 words (the longest, 360 words, "
                               "starts at line 3): CoNLL files end each sentence with a blank line; if they are "
                               "missing, sentences run together"]


def test_shipped_wnut17_has_its_licence_and_splits(caplog):
    for split, sentences in (("train", 3394), ("validation", 1009), ("test", 1287)):
        with caplog.at_level(logging.WARNING, logger="tfbert"):
            data = read_tagged(datasets.path("wnut17", f"{split}.conll"))
        assert len(data) == sentences and data.scheme == "iob2"
    assert not caplog.messages
    assert {tag[2:] for tag in data.tag_names() if tag != "O"} == {
        "corporation", "creative-work", "group", "location", "person", "product"}
    licence = open(datasets.path("wnut17", "LICENSE.txt"), encoding="utf-8").read()
    assert "CC BY 4.0" in licence and "Derczynski" in licence


NER_ROWS = {"train": [(["John", "Smith", "lives", "in", "Paris"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
                      (["Mary"], ["B-PER"])],
            "dev": [(["Ann", "Lee"], ["B-PER", "I-PER"])],
            "test": [(["in", "Rome"], ["O", "B-LOC"])]}


@pytest.fixture(scope="module")
def ner_tfds_dir(tmp_path_factory):
    """A prepared TFDS dataset 'tiny_tfbert_ner' shaped like TFDS's conll2003 (tokens, ner ClassLabels)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

    class TinyTfbertNer(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "tokens": tfds.features.Sequence(tfds.features.Text()),
                "ner": tfds.features.Sequence(tfds.features.ClassLabel(names=names))}))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(rows) for split, rows in NER_ROWS.items()}

        def _generate_examples(self, rows):
            for i, (tokens, tags) in enumerate(rows):
                yield i, {"tokens": tokens, "ner": tags}

    data_dir = str(tmp_path_factory.mktemp("ner_tfds"))
    TinyTfbertNer(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_tfds_token_datasets(ner_tfds_dir):
    from tfbert.data.conll import read_tfds_tagged
    from tfbert.tasks.token_classification import TokenClassificationTask
    from tfbert.training.run_config import TokenClassifierRunConfig

    train = read_tfds_tagged("tiny_tfbert_ner", "train", data_dir=ner_tfds_dir)
    assert train.words == [w for w, _ in NER_ROWS["train"]] and train.tags == [t for _, t in NER_ROWS["train"]]
    assert train.sources == ["tfds:tiny_tfbert_ner[train]:#0", "tfds:tiny_tfbert_ner[train]:#1"]
    with pytest.raises(DataError, match=r"tfds:tiny_tfbert_ner\[validation\]: no split 'validation'"):
        read_tfds_tagged("tiny_tfbert_ner", "validation", data_dir=ner_tfds_dir)
    data = TokenClassificationTask().load_data(TokenClassifierRunConfig(dataset="tfds:tiny_tfbert_ner",
                                                                        tfds_data_dir=ner_tfds_dir))
    assert (len(data.train), len(data.validation), len(data.test)) == (2, 1, 1)  # 'dev' is the validation split
    assert data.label_names == ["O", "B-LOC", "B-PER", "I-PER"] and data.description == "tfds:tiny_tfbert_ner (IOB2 tags)"


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.conll"
    path.write_bytes("ok\tO\n\nM\u00fcnchen\tB-LOC\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"{path}:3: not valid UTF-8 \(byte 1 of the line\)"):
        read_tagged(str(path))


def test_bom_is_dropped(tmp_path):
    path = tmp_path / "bom.conll"
    path.write_bytes(b"\xef\xbb\xbf-DOCSTART- O\n\nEU\tB-ORG\nrejects\tO\n")
    sentences = read_tagged(str(path))
    assert sentences.words == [["EU", "rejects"]] and sentences.sources == [f"{path}:3"]
    path.write_bytes(b"\xef\xbb\xbfEU\tB-ORG\nrejects\tO\n")
    assert read_tagged(str(path)).words == [["EU", "rejects"]]


def test_only_newlines_end_lines(tmp_path):
    # U+0085, U+2028, \x0c, \x1c, U+00A0 are inside tokens; \r\n and \r end lines as \n does.
    path = tmp_path / "odd.conll"
    path.write_bytes("EU\tB-ORG\r\nrej\x85ects\tO\n\nsee\u2028you\tO\rla\x0cter\tO\n\nx\x1cy\u00a0z O\n\nbad\tPERSON\n"
                     .encode("utf-8"))
    with pytest.raises(DataError, match="odd.conll:9: tag 'PERSON'"):
        read_tagged(str(path))
    sentences = read_tagged(str(path), skip_bad_rows=True)
    assert sentences.words == [["EU", "rej\x85ects"], ["see\u2028you", "la\x0cter"], ["x\x1cy\u00a0z"]]
    assert sentences.sources == [f"{path}:1", f"{path}:4", f"{path}:7"]


def test_a_line_with_another_number_of_columns_is_refused(tmp_path):
    path = tmp_path / "conll03.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP\ncall NN I-NP O\n",
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"conll03.txt:5: expected 4 columns as most token lines have \(line 3, "
                                        r"...\), found 3: 'German JJ B-NP'"):
        read_tagged(str(path))
    tabs = tmp_path / "tabs.conll"
    tabs.write_text("New York\tB-LOC\nis\tO\n\nnice\tNN\tO\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"tabs.conll:4: expected 2 columns as most token lines have \(line 1"):
        read_tagged(str(tabs))
    # the first line is the odd one: it is blamed, not every line after it
    first = tmp_path / "first.txt"
    first.write_text("New York B-LOC\nis O\nbig O\n\nyes O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"first.txt:1: expected 2 columns as most token lines have \(line 2, "):
        read_tagged(str(first))
    assert read_tagged(str(first), skip_bad_rows=True).words == [["yes"]]
