"""Evaluate a finished training run on a data file it has not seen, without training.

    python pipelines/evaluate.py --checkpoint runs/cls-bbc_news-minilm-l6 --test_file new_articles.csv
    python pipelines/evaluate.py --checkpoint runs/qa-xquad_en-minilm-l6 --test_file dev-v1.1.json

The file is read as the run read its data (columns, tag scheme, SQuAD version) and scored with the
task's metrics (accuracy and F1; entity-level NER F1; SQuAD exact match and F1; masked-LM perplexity).
Results go to <checkpoint>/evaluations/<file name>/metrics.json (question answering adds
test_predictions.json in the official format), or to --output_dir.
"""

import argparse
import sys

from tfbert.cli import quiet_native_logs, show_info_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.training.evaluation import evaluate_run  # noqa: E402

PROG = "evaluate.py"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a finished training run's --output_dir (train_cls.py, train_ner.py, train_qa.py, "
                             "pretrain_mlm.py), or a search's best_model")
    parser.add_argument("--test_file", required=True, help="the data to evaluate on, in a format the task trains on")
    parser.add_argument("--output_dir", help="where the results go, replacing the folder whole: a new or empty folder, "
                                             "or an earlier evaluation's (default: <checkpoint>/evaluations/<file "
                                             "name>)")
    parser.add_argument("--batch_size", type=int, help="examples per batch (default: the run's)")
    parser.add_argument("--skip_bad_rows", action="store_true",
                        help="leave out (and report) the rows of --test_file that cannot be read, instead of stopping")
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's native log lines")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, found {args.batch_size}")
    show_info_logs()
    try:
        evaluate_run(args.checkpoint, args.test_file, args.output_dir, args.batch_size, args.skip_bad_rows)
    except USER_ERRORS as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: stopped; the previous results, if any, are unchanged", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
