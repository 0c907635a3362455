"""Predict with an exported model: in this process, or from TF Serving over REST or gRPC.

A classifier's export prints labels and probabilities; a token classifier's (NER) prints the entities
it finds (text, type, score; `--format jsonl` adds their character offsets and every word's tag; an
--input_file of {"tokens": [...]} lines is read as pre-split sentences, offsets then in words); a
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
import os
import sys

from tfbert.cli import quiet_native_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.data.readers import DataError  # noqa: E402
from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.serving import (GrpcPredictor, LocalPredictor, RestPredictor, ServingClientError,  # noqa: E402
                            format_answers, format_fills, format_jsonl, format_table, load_questions, mask_token_of,
                            pairs_of, read_export_metadata, read_sources, resolve_export_dir, texts_of, warn_cut_masks,
                            words_of)

PROG = "predict.py"


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
    parser.add_argument("--signature", default="serving_default", choices=("serving_default", "classify", "regress"),
                        help="serving_default: labels and probabilities; classify: the tf.Example classify API; "
                             "regress: a regression export's tf.Example regress API")
    parser.add_argument("--format", default="table", choices=("table", "jsonl"), help="output format")
    parser.add_argument("--question", action="append",
                        help="question answering: a question (repeatable; each goes with the --context at its place, "
                             "or all with a single --context)")
    parser.add_argument("--context", action="append", help="question answering: the text the answer is cut from")
    parser.add_argument("--text_pair", action="store_true",
                        help="the model reads sentence pairs: split each text at its first TAB")
    parser.add_argument("--batch_size", type=int, default=64, help="texts per request")
    parser.add_argument("--timeout", type=float, help="seconds to wait for a server's answer (default: 30)")
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's native log lines")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, stdin=None) -> str:
    """Predicts the texts of `args` and returns the formatted output.

    Raises:
        ServingClientError, DataError, ...: anything the user can fix; the message says what.
    """
    if args.export_dir is None and not args.model_name:
        raise ServingClientError("--model_name is needed with --rest_url and --grpc_address")
    if args.export_dir is not None:
        for flag in ("model_name", "timeout"):
            if getattr(args, flag) is not None:
                raise ServingClientError(f"--{flag} is for a server (--rest_url, --grpc_address); --export_dir "
                                         "loads the model here")
    if args.batch_size < 1:
        raise ServingClientError(f"--batch_size must be at least 1, found {args.batch_size}")
    metadata, version_dir = {}, None
    if args.export_dir is not None:
        # Checked before any model loads, so a wrong folder fails in a moment.
        version_dir = resolve_export_dir(args.export_dir, args.model_version)
        metadata = read_export_metadata(version_dir)
    question_answering = metadata.get("task") == "question_answering" or bool(args.question)
    if question_answering and args.texts:
        raise ServingClientError(f"a question answerer reads no TEXT arguments (found {args.texts[0]!r}): give "
                                 '--question and --context, or --input_file with {"question": ..., "context": ...} '
                                 "lines")
    if args.context and not question_answering:
        raise ServingClientError("--context without --question" + (
            f": this export is a {metadata['task']} model" if metadata.get("task") else ""))
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
    sources = read_sources(args.texts, args.input_file, stdin)
    locations = [location for location, _ in sources]
    # JSON Lines as the training pipelines read them: {"tokens": [...]} (NER), {"text": ...} (the others)
    from_file = [source for source in sources if not source[0].startswith("argument ")]
    sentences = words_of(from_file)
    objects = texts_of(from_file) if sentences is None else None
    if (sentences is not None or objects is not None) and args.texts:
        kind = '{"tokens": [...]}' if sentences is not None else '{"text": ...}'
        raise ServingClientError(f"TEXT arguments and {kind} lines in {sources[-1][0]}: the one or the other")
    if sentences is not None:
        return _predict_words(args, version_dir, metadata, sentences, sources[0][0].rsplit(":", 1)[0])
    if objects is not None:
        texts, pairs = objects
    elif text_pair:
        texts, pairs = pairs_of(sources)
    else:
        texts, pairs = [text for _, text in sources], None
    if not texts and args.input_file:
        raise DataError("no texts in the file (it is empty or blank): expected one text per line", args.input_file)
    if not texts:
        raise ServingClientError("no texts: give TEXT arguments, --input_file, or lines on stdin")

    with _predictor(args, version_dir) as predictor:
        if args.signature == "classify":
            results = predictor.classify(texts, pairs)
        elif args.signature == "regress":
            results = [{"score": value} for value in predictor.regress(texts, pairs)]
        else:
            results = predictor.predict(texts, pairs, signature=args.signature)
    if metadata.get("task") == "masked_lm" or (results and isinstance(results[0], dict) and "num_masks" in results[0]):
        warn_cut_masks(texts, results, locations, metadata)
        return format_fills(texts, results, args.format == "jsonl", mask_token=mask_token_of(metadata))
    if args.format == "jsonl":
        return format_jsonl(texts, results, pairs)
    threshold = metadata.get("threshold", 0.5) if metadata.get("task") == "multi_label" else None
    return format_table(texts, results, pairs, label_names=metadata.get("labels"), threshold=threshold)


def _predict_words(args: argparse.Namespace, version_dir: str | None, metadata: dict, sentences, source: str) -> str:
    """`{"tokens": [...]}` lines: pre-split sentences, through a token classifier's `tokens` signature."""
    task = metadata.get("task", "token_classification")
    if task != "token_classification":
        raise ServingClientError(f'{source}: {{"tokens": [...]}} lines are pre-split sentences for a token '
                                 f"classifier (NER); the export {version_dir} is a {task} model, which reads raw "
                                 "text lines")
    if args.signature != "serving_default":
        raise ServingClientError(f'--signature {args.signature}: {{"tokens": [...]}} lines go to the export\'s '
                                 '"tokens" signature')
    with _predictor(args, version_dir) as predictor:
        results = predictor.predict_words(sentences)
    texts = [" ".join(words) for words in sentences]
    if args.format == "jsonl":
        return format_jsonl(texts, results, sentences=sentences)
    return format_table(texts, results)


def _predictor(args: argparse.Namespace, version_dir: str | None):
    if version_dir is not None:
        return LocalPredictor(version_dir, batch_size=args.batch_size)
    timeout = 30.0 if args.timeout is None else args.timeout
    if args.rest_url is not None:
        return RestPredictor(args.rest_url, args.model_name, args.model_version, timeout, args.batch_size)
    return GrpcPredictor(args.grpc_address, args.model_name, args.model_version, timeout, args.batch_size)


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
