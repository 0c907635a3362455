"""Predict with an exported model: in this process, or from TF Serving over REST or gRPC.

A classifier's export prints labels and probabilities; a token classifier's (NER) prints the entities
it finds (text, type, score; `--format jsonl` adds their character offsets and every word's tag).

Texts come from the arguments, from --input_file (one per line), or from stdin when neither
is given and stdin is not a terminal. For sentence-pair models each line is
`text<TAB>text_pair` (detected from a local export; pass --text_pair for a server).

    python pipelines/predict.py --export_dir exports/sentiment "a good film" "a dull film"
    python pipelines/predict.py --export_dir runs/ner-wnut17-minilm-l6/saved_model "Ada Lovelace met Babbage in London"
    python pipelines/predict.py --rest_url http://localhost:8501 --model_name sentiment --input_file reviews.txt
    cat reviews.txt | python pipelines/predict.py --grpc_address localhost:8500 --model_name sentiment \\
        --signature classify --format jsonl
"""

import argparse
import os
import sys

from tfbert.cli import quiet_native_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.serving_client import (GrpcPredictor, LocalPredictor, RestPredictor,  # noqa: E402
                                   ServingClientError, format_jsonl, format_table, load_text_pairs, load_texts,
                                   read_export_metadata, resolve_export_dir)

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
    parser.add_argument("--signature", default="serving_default", choices=("serving_default", "classify"),
                        help="serving_default: labels and probabilities; classify: the tf.Example classify API")
    parser.add_argument("--format", default="table", choices=("table", "jsonl"), help="output format")
    parser.add_argument("--text_pair", action="store_true",
                        help="the model reads sentence pairs: split each text at its first TAB")
    parser.add_argument("--batch_size", type=int, default=64, help="texts per request")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a server's answer")
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's native log lines")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, stdin=None) -> str:
    """Predicts the texts of `args` and returns the formatted output.

    Raises:
        ServingClientError, DataError, ...: anything the user can fix; the message says what.
    """
    if args.export_dir is None and not args.model_name:
        raise ServingClientError("--model_name is needed with --rest_url and --grpc_address")
    if args.batch_size < 1:
        raise ServingClientError(f"--batch_size must be at least 1, found {args.batch_size}")
    metadata = {}
    if args.export_dir is not None:
        # Checked before any model loads, so a wrong folder fails in a moment.
        version_dir = resolve_export_dir(args.export_dir, args.model_version)
        metadata = read_export_metadata(version_dir)
    text_pair = args.text_pair or bool(metadata.get("text_pair"))
    pairs = None
    if text_pair:
        texts, pairs = load_text_pairs(args.texts, args.input_file, stdin)
    else:
        texts = load_texts(args.texts, args.input_file, stdin)
    if not texts:
        raise ServingClientError("no texts: give TEXT arguments, --input_file, or lines on stdin")

    if args.export_dir is not None:
        predictor = LocalPredictor(version_dir, batch_size=args.batch_size)
    elif args.rest_url is not None:
        predictor = RestPredictor(args.rest_url, args.model_name, args.model_version, args.timeout, args.batch_size)
    else:
        predictor = GrpcPredictor(args.grpc_address, args.model_name, args.model_version, args.timeout,
                                  args.batch_size)
    with predictor:
        if args.signature == "classify":
            results = predictor.classify(texts, pairs)
        else:
            results = predictor.predict(texts, pairs, signature=args.signature)
    if args.format == "jsonl":
        return format_jsonl(texts, results, pairs)
    return format_table(texts, results, pairs, label_names=metadata.get("labels"))


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
