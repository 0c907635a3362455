"""`pipelines/predict.py`: reading texts, the table and JSON Lines output, and the command line as a user runs it."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from serving_checks import (
    MODEL_NAME,
    PREDICT_SCRIPT,
    assert_same_predictions,
    closed_port,
    load_predict_cli,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def export(tiny_sentiment_export):
    return tiny_sentiment_export


@pytest.fixture(scope="module")
def local(export):
    from tfbert.serving import LocalPredictor

    return LocalPredictor(export["base_dir"])


def test_load_texts_reads_arguments_files_and_stdin(tmp_path, capsys):
    from tfbert.data.readers import DataError
    cli = load_predict_cli()
    load_texts, load_text_pairs = cli.load_texts, cli.load_text_pairs

    path = tmp_path / "texts.txt"
    path.write_bytes(b"\xef\xbb\xbfgood movie\r\n\n   \nbad\tfilm\nlast line")
    assert load_texts(None, str(path), None) == ["good movie", "bad\tfilm", "last line"]
    # outputs no longer line up with the file's lines: said, with the lines
    assert f"predict.py: warning: {path}: skipped 2 blank line(s) (2, 3)" in capsys.readouterr().err
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


def test_cli_subprocesses_print_jsonl_and_a_table_from_stdin(export, local):
    def start(*args):
        return subprocess.Popen([sys.executable, PREDICT_SCRIPT, *args], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # Both interpreters at once: each spends most of its time importing TensorFlow.
    jsonl = start("--export_dir", export["base_dir"], "good movie", "bad film", "--format", "jsonl")
    table = start("--export_dir", export["version_dir"], "--format", "table")
    outputs = {}
    for name, process, stdin in (("jsonl", jsonl, ""), ("table", table, "good movie\n\nbad film\n")):
        stdout, stderr = process.communicate(stdin, timeout=120)
        outputs[name] = (process.returncode, stdout, stderr)

    code, stdout, stderr = outputs["jsonl"]
    assert code == 0, stderr[-2000:]
    lines = stdout.strip().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    expected = local.predict(["good movie", "bad film"])
    assert [r["text"] for r in records] == ["good movie", "bad film"]
    assert_same_predictions([{k: v for k, v in r.items() if k != "text"} for r in records], expected)

    code, stdout, stderr = outputs["table"]
    assert code == 0, stderr[-2000:]
    header, rule, *rows = stdout.strip().splitlines()
    assert header.split() == ["text", "label", "probability"] and set(rule) <= {"-", " "}
    assert len(rows) == 2
    for row, text, result in zip(rows, ["good movie", "bad film"], expected):
        assert row.startswith(text) and result["label"] in row.split()
        assert f"{result['probabilities'][result['label_id']]:.4f}" in row


def test_cli_errors_are_one_line(export, monkeypatch, capsys):
    cli = load_predict_cli()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    missing = os.path.join(export["base_dir"], "missing")
    assert cli.main(["--export_dir", missing, "good movie"]) == 1
    assert capsys.readouterr() == ("", f"predict.py: error: {missing}: no such export folder\n")
    assert cli.main(["--export_dir", export["base_dir"]]) == 1
    assert capsys.readouterr().err == ("predict.py: error: no texts: give TEXT arguments, --input_file, "
                                       "or lines on stdin\n")
    port = closed_port()
    assert cli.main(["--rest_url", f"http://127.0.0.1:{port}", "--model_name", MODEL_NAME, "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"predict.py: error: POST http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict: "
                          "cannot reach TF Serving") and err.count("\n") == 1
    assert cli.main(["--grpc_address", f"127.0.0.1:{port}", "--model_name", MODEL_NAME, "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"predict.py: error: 127.0.0.1:{port}: cannot reach TF Serving over gRPC") \
        and err.count("\n") == 1
    assert cli.main(["--rest_url", "http://127.0.0.1:1", "x"]) == 1
    assert "--model_name is needed" in capsys.readouterr().err


def test_rows_and_formats():
    from tfbert.serving import rows_from_columns

    cli = load_predict_cli()
    format_jsonl, format_table = cli.format_jsonl, cli.format_table

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

    lines = format_jsonl(["good", "odd"], [[("neg", 0.2), ("pos", 0.8)], {"score": float("nan")}], pairs=["p", "q"])
    first, second = (json.loads(line) for line in lines.splitlines())
    assert first == {"text": "good", "text_pair": "p", "classes": [{"label": "neg", "score": 0.2},
                                                                   {"label": "pos", "score": 0.8}]}
    assert second == {"text": "odd", "text_pair": "q", "score": None}


def test_question_answering_input_and_output_formats(tmp_path):
    from tfbert.data.readers import DataError

    cli = load_predict_cli()
    questions, contexts = cli.load_questions(["Who?", "When?"], ["Ada wrote it.", "In 1818."])
    assert (questions, contexts) == (["Who?", "When?"], ["Ada wrote it.", "In 1818."])
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "Who?", "context": "Ada."}\n\n{"question": 3, "context": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: expected {{\"question\": \"...\", \"context\": \"...\"}}")):
        cli.load_questions(None, None, str(path))
    with pytest.raises(DataError, match="1 --question but 0 --context"):
        cli.load_questions(["Who?"], None)
    results = [{"answer": "Ada", "score": 0.75, "start": 0, "end": 3},
               {"answer": "", "score": 0.9, "start": -1, "end": -1, "no_answer": True}]
    table = cli.format_answers(["Who wrote it?", "Why?"], ["Ada wrote it.", "x"], results, jsonl=False).splitlines()
    assert table[0].split() == ["question", "answer", "score"]
    assert table[2].split() == ["Who", "wrote", "it?", "Ada", "0.7500"] and "(no answer)" in table[3]
    first = json.loads(cli.format_answers(["Who wrote it?"], ["Ada wrote it."], results[:1], jsonl=True))
    assert first == {"question": "Who wrote it?", "answer": "Ada", "score": 0.75, "start": 0, "end": 3}


def test_fill_mask_output_formats():
    cli = load_predict_cli()
    result = {"num_masks": 2, "mask_start": [4, 20], "mask_end": [10, 26],
              "tokens": [["price", "share"], ["monday", "friday"]], "scores": [[0.5, 0.25], [0.4, float("nan")]]}
    none = {"num_masks": 0, "mask_start": [-1, -1], "mask_end": [-1, -1], "tokens": [["", ""], ["", ""]],
            "scores": [[0.0, 0.0], [0.0, 0.0]]}
    table = cli.format_fills(["The [MASK] rose on [MASK].", "plain"], [result, none], jsonl=False).splitlines()
    assert table[2].endswith("price 0.50, share 0.25 | monday 0.40, friday nan") and "(no [MASK]" in table[3]
    first, second = (json.loads(line) for line in cli.format_fills(["a", "b"], [result, none], jsonl=True).splitlines())
    assert first["masks"][1] == {"start": 20, "end": 26, "fills": [{"token": "monday", "score": 0.4},
                                                                    {"token": "friday", "score": None}]}
    assert second == {"text": "b", "masks": []}
    # a [MASK] past the export's max_seq_length is cut off by the tokenizer: said, not shown as "no [MASK]"
    long = "word " * 60 + "the [MASK] was good"
    table = cli.format_fills(["The [MASK] rose on [MASK].", long], [result, none], jsonl=False).splitlines()
    assert "(its [MASK] was cut off: past max_seq_length)" in table[3]


def test_masks_cut_off_and_empty_input_files_are_named(tmp_path, capsys, monkeypatch):
    cli = load_predict_cli()
    one = {"num_masks": 1, "mask_start": [4], "mask_end": [10], "tokens": [["price"]], "scores": [[0.5]]}
    cli.warn_cut_masks(["The [MASK] rose on [MASK].", "The [MASK] fell."], [one, one], ["news.txt:3", "news.txt:4"],
                       {"max_seq_length": 32, "tokenizer": {"mask_token": "[MASK]"}})
    assert capsys.readouterr().err == ("warning: news.txt:3: 1 of its 2 [MASK] come after the first 32 tokens and "
                                       "were cut off: no predictions for them (shorten the text before the mask)\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    args = cli.parse_args(["--rest_url", "http://127.0.0.1:1", "--model_name", "m", "--input_file", str(empty)])
    with pytest.raises(cli.DataError, match=rf"{empty}: no texts in the file \(it is empty or blank\)"):
        cli.run(args)  # (no server there: the file is checked first)
    monkeypatch.setattr(cli, "resolve_export_dir", lambda base, version: base)  # a question-answering export
    monkeypatch.setattr(cli, "read_export_metadata", lambda folder: {"task": "question_answering"})
    args = cli.parse_args(["--export_dir", str(tmp_path), "--input_file", str(empty)])
    with pytest.raises(cli.DataError, match=rf"{empty}: no questions in the file \(it is empty or blank\)"):
        cli.run(args)
