"""`pipelines/predict.py` as a user runs it: the command line, its errors, and what it prints (the texts it reads
and the formats are `tfbert.serving.inputs` and `.formats`, tests/serving/test_inputs_and_formats.py)."""

import io
import json
import os
import subprocess
import sys

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
    # a server's flags with a local export: refused, not ignored (before the folder is even looked at)
    for flag, value in (("--model_name", MODEL_NAME), ("--timeout", "5")):
        assert cli.main(["--export_dir", "nowhere", flag, value, "x"]) == 1
        assert capsys.readouterr().err == (f"predict.py: error: {flag} is for a server (--rest_url, --grpc_address); "
                                           "--export_dir loads the model here\n")


def test_empty_input_files_are_named(tmp_path, monkeypatch):
    cli = load_predict_cli()
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


def test_classify_on_a_multi_label_export_shows_every_class_over_its_threshold(export, monkeypatch, capsys):
    # it showed the top class alone, where serving_default predicts every class over the threshold
    from serving_checks import LABELS

    cli = load_predict_cli()
    for threshold, shown in ((0.0, ", ".join(LABELS)), (1.0, "-")):
        monkeypatch.setattr(cli, "read_export_metadata",
                            lambda folder, t=threshold: {"task": "multi_label", "labels": LABELS, "threshold": t})
        assert cli.main(["--export_dir", export["base_dir"], "--signature", "classify", "good movie"]) == 0
        header, _, row = capsys.readouterr().out.strip().splitlines()
        assert header.split()[:2] == ["text", "predicted"] and f"good movie  {shown}  " in row
