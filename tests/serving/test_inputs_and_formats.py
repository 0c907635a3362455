"""`tfbert.serving.inputs` and `tfbert.serving.formats`: the texts `pipelines/predict.py` reads (arguments,
files, stdin, pairs, questions) and the tables and JSON Lines it prints, for every kind of export."""

import io
import json
import re

import numpy as np
import pytest


def test_load_texts_reads_arguments_files_and_stdin(tmp_path, capsys):
    from tfbert.data.readers import DataError
    from tfbert.serving import load_text_pairs, load_texts

    path = tmp_path / "texts.txt"
    path.write_bytes(b"\xef\xbb\xbfgood movie\r\n\n   \nbad\tfilm\nlast line")
    assert load_texts(None, str(path), None) == ["good movie", "bad\tfilm", "last line"]
    # outputs no longer line up with the file's lines: said, with the lines
    assert f"warning: {path}: skipped 2 blank line(s) (2, 3)" in capsys.readouterr().err
    assert load_texts(None, None, io.StringIO("a\nb\n")) == ["a", "b"] and not capsys.readouterr().err
    assert load_texts(["first"], str(path), io.StringIO("ignored")) == ["first", "good movie", "bad\tfilm", "last line"]
    assert load_texts(None, None, io.StringIO("a\nb\n")) == ["a", "b"]
    assert load_texts([], None, None) == []

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert load_texts(None, None, Terminal("never read\n")) == []

    path.write_bytes(b"fine\nalso fine\nbroken \xff byte\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: invalid UTF-8: byte 0xff at byte offset 7")):
        load_texts(None, str(path), None)
    stdin = io.TextIOWrapper(io.BytesIO(b"ok\n\xc3(\n"), encoding="utf-8")
    with pytest.raises(DataError, match=r"<stdin>:2: invalid UTF-8"):
        load_texts(None, None, stdin)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'missing.txt'}: no such file")):
        load_texts(None, str(tmp_path / "missing.txt"), None)

    path.write_text("a man sleeps\ta person rests\n\nit rains\tthe sun\tshines\n", encoding="utf-8")
    assert load_text_pairs(None, str(path), None) == (["a man sleeps", "it rains"],
                                                     ["a person rests", "the sun\tshines"])
    path.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: expected a text, a TAB and its text pair")):
        load_text_pairs(None, str(path), None)
    with pytest.raises(DataError, match="argument 1: expected"):
        load_text_pairs(["no tab"], None, None)


def test_rows_and_formats():
    from tfbert.serving import format_jsonl, format_table, rows_from_columns

    rows = rows_from_columns({"predicted": np.array([[True, False, True]]), "probabilities": np.float32([[.9, .1, .6]]),
                              "logits": np.float32([[2.0, -2.0, 0.4]])})
    assert rows == [{"predicted": [True, False, True], "probabilities": pytest.approx([.9, .1, .6]),
                     "logits": pytest.approx([2.0, -2.0, 0.4])}]
    assert isinstance(rows[0]["predicted"][0], bool)
    assert rows_from_columns({"score": np.float32([1.5, 2.5])}) == [{"score": 1.5}, {"score": 2.5}]

    table = format_table(["a\ttabbed text", "b"], [rows[0], {"predicted": [False, False, False]}],
                         label_names=["x", "y", "z"]).splitlines()
    assert table[0].split() == ["text", "predicted"] and "a\\ttabbed text" in table[2] and "x, z" in table[2]
    assert table[3].split() == ["b", "-"]
    classified = format_table(["good"], [[("neg", 0.2), ("pos", 0.8)]])
    assert classified.splitlines()[2].split()[:3] == ["good", "pos", "0.8000"]
    # a multi-label model's classify results: the classes over its threshold, as serving_default predicts
    multi = format_table(["good", "dull"], [[("a", 0.9), ("b", 0.1), ("c", 0.6)], [("a", 0.2), ("b", 0.5), ("c", 0.1)]],
                         threshold=0.5).splitlines()
    assert multi[0].split() == ["text", "predicted", "all", "scores"]
    assert multi[2].split()[:3] == ["good", "a,", "c"] and multi[3].split()[:2] == ["dull", "-"]

    lines = format_jsonl(["good", "odd"], [[("neg", 0.2), ("pos", 0.8)], {"score": float("nan")}], pairs=["p", "q"])
    first, second = (json.loads(line) for line in lines.splitlines())
    assert first == {"text": "good", "text_pair": "p", "classes": [{"label": "neg", "score": 0.2},
                                                                   {"label": "pos", "score": 0.8}]}
    assert second == {"text": "odd", "text_pair": "q", "score": None}


def test_question_answering_input_and_output_formats(tmp_path):
    from tfbert.data.readers import DataError
    from tfbert.serving import format_answers, load_questions

    questions, contexts = load_questions(["Who?", "When?"], ["Ada wrote it.", "In 1818."])
    assert (questions, contexts) == (["Who?", "When?"], ["Ada wrote it.", "In 1818."])
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "Who?", "context": "Ada."}\n\n{"question": 3, "context": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f'{path}:3: "question" must be a UTF-8 string, found 3')):
        load_questions(None, None, str(path))
    path.write_text('{"question": "Who?", "context": "Ada \\udc80."}\n', encoding="utf-8")  # a lone surrogate
    with pytest.raises(DataError, match=re.escape(f'{path}:1: "context" must be a UTF-8 string, found "Ada \\udc80."')):
        load_questions(None, None, str(path))
    for line, message in (('{"question": "Who?", "ctx": "Ada."}', """no "context" field (found 'ctx')"""),
                          ('["Who?", "Ada."]', 'expected {"question": "...", "context": "..."}, found an array')):
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=re.escape(f"{path}:1: {message}")):
            load_questions(None, None, str(path))
    with pytest.raises(DataError, match="1 --question but 0 --context; give a context for each question, or one"):
        load_questions(["Who?"], None)
    assert load_questions(["Who?", "When?"], ["Ada wrote it in 1818."]) == (
        ["Who?", "When?"], ["Ada wrote it in 1818."] * 2)  # one context for several questions
    results = [{"answer": "Ada", "score": 0.75, "start": 0, "end": 3},
               {"answer": "", "score": 0.9, "start": -1, "end": -1, "no_answer": True}]
    table = format_answers(["Who wrote it?", "Why?"], ["Ada wrote it.", "x"], results, jsonl=False).splitlines()
    assert table[0].split() == ["question", "answer", "score"]
    assert table[2].split() == ["Who", "wrote", "it?", "Ada", "0.7500"] and "(no answer)" in table[3]
    first = json.loads(format_answers(["Who wrote it?"], ["Ada wrote it."], results[:1], jsonl=True))
    assert first == {"question": "Who wrote it?", "answer": "Ada", "score": 0.75, "start": 0, "end": 3}


def test_fill_mask_output_formats(capsys):
    from tfbert.serving import format_fills, mask_token_of, warn_cut_masks

    result = {"num_masks": 2, "mask_start": [4, 20], "mask_end": [10, 26],
              "tokens": [["price", "share"], ["monday", "friday"]], "scores": [[0.5, 0.25], [0.4, float("nan")]]}
    none = {"num_masks": 0, "mask_start": [-1, -1], "mask_end": [-1, -1], "tokens": [["", ""], ["", ""]],
            "scores": [[0.0, 0.0], [0.0, 0.0]]}
    table = format_fills(["The [MASK] rose on [MASK].", "plain"], [result, none], jsonl=False).splitlines()
    assert table[2].endswith("price 0.50, share 0.25 | monday 0.40, friday nan") and "(no [MASK]" in table[3]
    first, second = (json.loads(line) for line in format_fills(["a", "b"], [result, none], jsonl=True).splitlines())
    assert first["masks"][1] == {"start": 20, "end": 26, "fills": [{"token": "monday", "score": 0.4},
                                                                    {"token": "friday", "score": None}]}
    assert second == {"text": "b", "masks": []}
    # a [MASK] past the export's max_seq_length is cut off by the tokenizer: said, not shown as "no [MASK]"
    long = "word " * 60 + "the [MASK] was good"
    table = format_fills(["The [MASK] rose on [MASK].", long], [result, none], jsonl=False).splitlines()
    assert "(its [MASK] was cut off: past max_seq_length)" in table[3]
    # a model whose mask token is another (a vocabulary with "<mask>"): the notes name that one
    metadata = {"tokenizer": {"mask_token": "<mask>"}}
    assert mask_token_of(metadata) == "<mask>" and mask_token_of({}) == "[MASK]"
    table = format_fills(["x", "the <mask> was good", "the [MASK] was good"], [result, none, none], jsonl=False,
                         mask_token=mask_token_of(metadata)).splitlines()
    assert "(its <mask> was cut off: past max_seq_length)" in table[3] and "(no <mask> in the text)" in table[4]
    one = {"num_masks": 1, "mask_start": [4], "mask_end": [10], "tokens": [["price"]], "scores": [[0.5]]}
    warn_cut_masks(["The [MASK] rose on [MASK].", "The [MASK] fell."], [one, one], ["news.txt:3", "news.txt:4"],
                   {"max_seq_length": 32, "tokenizer": {"mask_token": "[MASK]"}})
    assert capsys.readouterr().err == ("warning: news.txt:3: 1 of its 2 [MASK] come after the first 32 tokens and "
                                       "were cut off: no predictions for them (shorten the text before the mask)\n")
