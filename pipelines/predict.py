"""Predict with an exported model: in this process, or from TF Serving over REST or gRPC.

A classifier's export prints labels and probabilities; a token classifier's (NER) prints the entities
it finds (text, type, score; `--format jsonl` adds their character offsets and every word's tag); a
question answerer's prints the answer to each --question in its --context (or to each
{"question", "context"} line of --input_file), with its score and character offsets in jsonl; a
masked LM's (pretrain_mlm.py) prints the top tokens for each [MASK] of each text.

Texts come from the arguments, from --input_file (one per line), or from stdin when neither
is given and stdin is not a terminal. For sentence-pair models each line is
`text<TAB>text_pair` (detected from a local export; pass --text_pair for a server).

    python pipelines/predict.py --export_dir exports/sentiment "a good film" "a dull film"
    python pipelines/predict.py --export_dir runs/ner-wnut17-minilm-l6/saved_model "Ada Lovelace met Babbage in London"
    python pipelines/predict.py --export_dir runs/qa-xquad_en-minilm-l6/saved_model \\
        --question "Who wrote it?" --context "The novel was written by Mary Shelley in 1818."
    python pipelines/predict.py --rest_url http://localhost:8501 --model_name sentiment --input_file reviews.txt
    cat reviews.txt | python pipelines/predict.py --grpc_address localhost:8500 --model_name sentiment \\
        --signature classify --format jsonl
"""

import argparse
import codecs
import json
import math
import os
import sys
from typing import IO, Any, Sequence

from tfbert.cli import quiet_native_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.data.readers import DataError  # noqa: E402
from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.serving import (Classification, GrpcPredictor, LocalPredictor, Result, RestPredictor,  # noqa: E402
                            ServingClientError, entities_of, is_tagging, read_export_metadata, resolve_export_dir,
                            tagged_words)
from tfbert.serving.base import preview  # noqa: E402

PROG = "predict.py"
STDIN_NAME = "<stdin>"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to predict (else --input_file or stdin)")
    parser.add_argument("--input_file", help="a UTF-8 file with one text per line (text<TAB>text_pair for pairs)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--export_dir", help="an export: its base folder (highest version) or a version folder")
    where.add_argument("--rest_url", help="TF Serving's REST API, e.g. http://localhost:8501")
    where.add_argument("--grpc_address", help="TF Serving's gRPC API, e.g. localhost:8500")
    parser.add_argument("--model_name", help="the served model's name (with --rest_url / --grpc_address)")
    parser.add_argument("--model_version", type=int, help="a model version (default: the latest)")
    parser.add_argument("--signature", default="serving_default", choices=("serving_default", "classify"),
                        help="serving_default: labels and probabilities; classify: the tf.Example classify API")
    parser.add_argument("--format", default="table", choices=("table", "jsonl"), help="output format")
    parser.add_argument("--question", action="append",
                        help="question answering: a question (repeatable; each goes with the --context at its place)")
    parser.add_argument("--context", action="append", help="question answering: the text the answer is cut from")
    parser.add_argument("--text_pair", action="store_true",
                        help="the model reads sentence pairs: split each text at its first TAB")
    parser.add_argument("--batch_size", type=int, default=64, help="texts per request")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a server's answer")
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's native log lines")
    return parser.parse_args(argv)


# ---- input texts ---------------------------------------------------------------------------


def load_texts(texts: Sequence[str] | None = None, file: str | None = None, stdin: IO | None = None) -> list[str]:
    """The texts to predict: the given ones, then one per line of `file`, else of `stdin`.

    Lines are decoded as UTF-8 (a leading byte-order mark is dropped); the line end ("\\n" or
    "\\r\\n") is removed and blank lines are skipped (with a warning naming them on stderr). `stdin`
    is read only when neither `texts` nor `file` gives anything and it is not a terminal.

    For sentence-pair models each line holds the text, a TAB, then the text pair
    (`"A man sleeps.\\tA person rests."`); `load_text_pairs` splits them at the first TAB.
    `load_texts` keeps such lines whole.

    Args:
        texts: texts given directly (e.g. command-line arguments).
        file: a UTF-8 text file with one text per line.
        stdin: a stream read like `file` when nothing else is given (e.g. `sys.stdin`).

    Returns:
        The texts in order; empty when nothing was given.

    Raises:
        DataError: the file cannot be read, or a line is not valid UTF-8 (names `file:line`).
    """
    return [text for _, text in _read_sources(texts, file, stdin)]


def load_text_pairs(texts: Sequence[str] | None = None, file: str | None = None,
                    stdin: IO | None = None) -> tuple[list[str], list[str]]:
    """Like `load_texts`, for sentence-pair models: each text or line is `text<TAB>text_pair`.

    Returns:
        (texts, text_pairs), split at the first TAB of each line.

    Raises:
        DataError: as `load_texts`, or a line without a TAB (names `file:line`).
    """
    firsts, seconds = [], []
    for location, line in _read_sources(texts, file, stdin):
        if "\t" not in line:
            raise DataError(f"expected a text, a TAB and its text pair, found no TAB in {preview(line)!r}", location)
        first, second = line.split("\t", 1)
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def _read_sources(texts, file, stdin) -> list[tuple[str, str]]:
    """(location, text) for every text: "argument N", "file:line" or "<stdin>:line"."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    found = [(f"argument {i + 1}", text) for i, text in enumerate(texts or [])]
    if file is not None:
        try:
            with open(file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise DataError("no such file", file) from None
        except IsADirectoryError:
            raise DataError("is a folder; expected a text file with one text per line", file) from None
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", file) from None
        found += _decode_lines(data, file)
    elif not found and stdin is not None and not _is_terminal(stdin):
        data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        found += _decode_lines(data, STDIN_NAME)
    return found


def _decode_lines(data: bytes, name: str) -> list[tuple[str, str]]:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines, blank = [], []
    rows = data.split(b"\n")
    if rows and not rows[-1]:
        rows.pop()  # the final line end
    for number, raw in enumerate(rows, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"invalid UTF-8: byte 0x{raw[e.start]:02x} at byte offset {e.start} of the line; "
                            "save the file as UTF-8", f"{name}:{number}") from None
        if line.strip():
            lines.append((f"{name}:{number}", line))
        else:
            blank.append(number)
    if blank:  # the outputs are one per text: say which lines have none
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        print(f"{PROG}: warning: {name}: skipped {len(blank)} blank line(s) ({shown}); the outputs follow the other "
              "lines", file=sys.stderr)
    return lines


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# ---- output formats --------------------------------------------------------------------------


def _summary(result: Result | Classification, label_names: Sequence[str] | None) -> dict[str, str]:
    """The columns of one table row: the answer and how sure the model is."""
    if is_tagging(result):
        shown = [f"{e['text']} [{e['type']}] {e['score']:.2f}" for e in entities_of(result)]
        return {"entities": "; ".join(shown) or "-"}
    if isinstance(result, list):  # classify: [(class, score), ...]
        ranked = sorted(result, key=lambda pair: -pair[1])
        if not ranked:
            return {}
        return {"class": ranked[0][0], "score": f"{ranked[0][1]:.4f}",
                "all scores": "  ".join(f"{label or i}={score:.3f}" for i, (label, score) in enumerate(result))}
    cells = {}
    probabilities = result.get("probabilities")
    if "label" in result:
        cells["label"] = str(result["label"])
        if isinstance(probabilities, list) and probabilities:
            label_id = result.get("label_id")
            best = probabilities[label_id] if isinstance(label_id, int) and 0 <= label_id < len(probabilities) \
                else max(probabilities)
            cells["probability"] = f"{best:.4f}"
    elif "predicted" in result:
        chosen = [i for i, flag in enumerate(result["predicted"]) if flag]
        names = [label_names[i] if label_names and i < len(label_names) else str(i) for i in chosen]
        cells["predicted"] = ", ".join(names) or "-"
    elif "score" in result:
        cells["score"] = f"{result['score']:.4f}"
    else:
        for name, value in result.items():
            cells[name] = preview(json.dumps(value), 40)
    return cells


def format_table(texts: Sequence[str], results: Sequence[Result | Classification], pairs: Sequence[str] | None = None,
                 label_names: Sequence[str] | None = None, max_text_width: int = 60) -> str:
    """A plain-text table: one row per text with its label (or class, score, predicted labels)
    and probability. Tabs and newlines in texts are shown escaped; long texts are cut.

    Args:
        texts: the input texts, in the order of `results`.
        results: what `predict` or `classify` returned.
        pairs: the text pairs, shown in a second column.
        label_names: names for multi-label `predicted` flags (indices otherwise).
        max_text_width: characters of each text shown.
    """
    rows = []
    for i, (text, result) in enumerate(zip(texts, results)):
        row = {"text": preview(text, max_text_width)}
        if pairs is not None:
            row["text_pair"] = preview(pairs[i], max_text_width)
        row.update(_summary(result, label_names))
        rows.append(row)
    columns = ["text"] + (["text_pair"] if pairs is not None else [])
    for row in rows:
        columns += [name for name in row if name not in columns]
    widths = {name: max([len(name)] + [len(row.get(name, "")) for row in rows]) for name in columns}
    lines = ["  ".join(name.ljust(widths[name]) for name in columns).rstrip(),
             "  ".join("-" * widths[name] for name in columns)]
    lines += ["  ".join(row.get(name, "").ljust(widths[name]) for name in columns).rstrip() for row in rows]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so every line stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def format_jsonl(texts: Sequence[str], results: Sequence[Result | Classification],
                 pairs: Sequence[str] | None = None) -> str:
    """One JSON object per line: `{"text": ..., ["text_pair": ...,] <outputs>}`; classify
    results as `"classes": [{"label": ..., "score": ...}, ...]`. Non-finite numbers are null.
    """
    lines = []
    for i, (text, result) in enumerate(zip(texts, results)):
        record: dict[str, Any] = {"text": text}
        if pairs is not None:
            record["text_pair"] = pairs[i]
        if isinstance(result, list):
            record["classes"] = [{"label": label, "score": _finite(score)} for label, score in result]
        elif is_tagging(result):  # the entities, and each word with its tag, without the batch padding
            record["entities"] = [{**e, "score": _finite(e["score"])} for e in entities_of(result)]
            words = tagged_words(result)
            record["words"] = [word for word, _ in words]
            record["tags"] = [tag for _, tag in words]
        else:
            record.update({name: _finite(value) for name, value in result.items()})
        lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
    return "\n".join(lines)


# ---- question answering ----------------------------------------------------------------------


def load_questions(questions: Sequence[str] | None, contexts: Sequence[str] | None, file: str | None = None,
                   stdin: IO | None = None) -> tuple[list[str], list[str]]:
    """(questions, contexts) for a question-answering export: from --question/--context pairs, else one
    JSON object per line of `file` (or stdin) with "question" and "context" strings.

    Raises:
        DataError: unequal --question/--context counts, or a line that is not such an object
            (names `file:line`).
    """
    questions, contexts = list(questions or []), list(contexts or [])
    if len(questions) != len(contexts):
        raise DataError(f"{len(questions)} --question but {len(contexts)} --context; give a context for each "
                        "question")
    for location, line in (_read_sources(None, file, stdin) if file is not None or not questions else []):
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(f"expected a JSON object with question and context: {getattr(e, 'msg', e)}",
                            location) from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("question", "context")):
            raise DataError('expected {"question": "...", "context": "..."} (both strings)', location)
        questions.append(record["question"])
        contexts.append(record["context"])
    return questions, contexts


def format_fills(texts: Sequence[str], results: Sequence[Result], jsonl: bool, max_text_width: int = 60) -> str:
    """A fill-mask export's predictions: per text, each [MASK]'s top tokens with their probabilities."""
    records = []
    for text, result in zip(texts, results):
        masks = [{"start": int(result["mask_start"][m]), "end": int(result["mask_end"][m]),
                  "fills": [{"token": t, "score": float(s)} for t, s in zip(result["tokens"][m], result["scores"][m])]}
                 for m in range(int(result["num_masks"]))]
        records.append({"text": text, "masks": masks})
    if jsonl:
        return "\n".join(json.dumps({"text": r["text"], "masks": [
            {**mask, "fills": [{"token": f["token"], "score": _finite(f["score"])} for f in mask["fills"]]}
            for mask in r["masks"]]}, ensure_ascii=False, allow_nan=False) for r in records)
    rows = []
    for record in records:
        shown = " | ".join(", ".join(f"{f['token']} {f['score']:.2f}" for f in mask["fills"]) for mask in record["masks"])
        missing = "(its [MASK] was cut off: past max_seq_length)" if "[MASK]" in record["text"] else "(no [MASK] in the text)"
        rows.append({"text": preview(record["text"], max_text_width), "fills": shown or missing})
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in ("text", "fills")}
    lines = ["text".ljust(widths["text"]) + "  fills", "-" * widths["text"] + "  " + "-" * widths["fills"]]
    lines += [(row["text"].ljust(widths["text"]) + "  " + row["fills"]).rstrip() for row in rows]
    return "\n".join(lines)


def warn_cut_masks(texts: Sequence[str], results: Sequence[Result], locations: Sequence[str] | None,
                   metadata: dict) -> None:
    """Warns on stderr about each text with more mask tokens than the model filled: those came after the
    export's `max_seq_length` tokens and were cut off (the table would say the text has none)."""
    mask = (metadata.get("tokenizer") or {}).get("mask_token") or "[MASK]"
    length = metadata.get("max_seq_length")
    for i, (text, result) in enumerate(zip(texts, results)):
        written, filled = text.count(mask), int(result["num_masks"])
        if written > filled:
            where = locations[i] if locations else f"text {i + 1}"
            limit = f"the first {length} tokens" if length else "the model's max_seq_length"
            print(f"warning: {where}: {written - filled} of its {written} {mask} come after {limit} and were "
                  "cut off: no predictions for them (shorten the text before the mask)", file=sys.stderr)


def format_answers(questions: Sequence[str], contexts: Sequence[str], results: Sequence[Result], jsonl: bool,
                   max_text_width: int = 60) -> str:
    """Answers as a table (question, answer, score) or as JSON Lines (question, answer, score, start,
    end[, no_answer]; the context is left out)."""
    if jsonl:
        return "\n".join(json.dumps({"question": q, **{k: _finite(v) for k, v in r.items()}}, ensure_ascii=False,
                                    allow_nan=False) for q, r in zip(questions, results))
    rows = [{"question": preview(q, max_text_width),
             "answer": "(no answer)" if r.get("no_answer") or r.get("start", 0) < 0 else preview(r["answer"], 40),
             "score": f"{r['score']:.4f}"} for q, r in zip(questions, results)]
    columns = ["question", "answer", "score"]
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace, stdin=None) -> str:
    """Predicts the texts of `args` and returns the formatted output.

    Raises:
        ServingClientError, DataError, ...: anything the user can fix; the message says what.
    """
    if args.export_dir is None and not args.model_name:
        raise ServingClientError("--model_name is needed with --rest_url and --grpc_address")
    if args.batch_size < 1:
        raise ServingClientError(f"--batch_size must be at least 1, found {args.batch_size}")
    metadata, version_dir = {}, None
    if args.export_dir is not None:
        # Checked before any model loads, so a wrong folder fails in a moment.
        version_dir = resolve_export_dir(args.export_dir, args.model_version)
        metadata = read_export_metadata(version_dir)
    question_answering = metadata.get("task") == "question_answering" or bool(args.question)
    if question_answering:
        questions, contexts = load_questions(args.question, args.context, args.input_file, stdin)
        if not questions and args.input_file:
            raise DataError('no questions in the file (it is empty or blank): expected {"question": ..., '
                            '"context": ...} lines', args.input_file)
        if not questions:
            raise ServingClientError("no questions: give --question and --context, or --input_file with "
                                     '{"question": ..., "context": ...} lines')
        with _predictor(args, version_dir) as predictor:
            results = predictor.predict_inputs({"question": questions, "context": contexts}, args.signature)
        return format_answers(questions, contexts, results, args.format == "jsonl")
    text_pair = args.text_pair or bool(metadata.get("text_pair"))
    pairs = None
    locations = None
    if text_pair:
        texts, pairs = load_text_pairs(args.texts, args.input_file, stdin)
    else:
        sources = _read_sources(args.texts, args.input_file, stdin)
        texts, locations = [text for _, text in sources], [location for location, _ in sources]
    if not texts and args.input_file:
        raise DataError("no texts in the file (it is empty or blank): expected one text per line", args.input_file)
    if not texts:
        raise ServingClientError("no texts: give TEXT arguments, --input_file, or lines on stdin")

    with _predictor(args, version_dir) as predictor:
        if args.signature == "classify":
            results = predictor.classify(texts, pairs)
        else:
            results = predictor.predict(texts, pairs, signature=args.signature)
    if metadata.get("task") == "masked_lm" or (results and isinstance(results[0], dict) and "num_masks" in results[0]):
        warn_cut_masks(texts, results, locations, metadata)
        return format_fills(texts, results, args.format == "jsonl")
    if args.format == "jsonl":
        return format_jsonl(texts, results, pairs)
    return format_table(texts, results, pairs, label_names=metadata.get("labels"))


def _predictor(args: argparse.Namespace, version_dir: str | None):
    if version_dir is not None:
        return LocalPredictor(version_dir, batch_size=args.batch_size)
    if args.rest_url is not None:
        return RestPredictor(args.rest_url, args.model_name, args.model_version, args.timeout, args.batch_size)
    return GrpcPredictor(args.grpc_address, args.model_name, args.model_version, args.timeout, args.batch_size)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        output = run(args, sys.stdin)
    except USER_ERRORS + (ServingClientError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    try:
        print(output, flush=True)
    except BrokenPipeError:  # piped into `head`: stop quietly, as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
