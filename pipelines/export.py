"""Export a training run as a versioned SavedModel for TensorFlow Serving.

    python pipelines/export.py --checkpoint runs/cls-bbc_news-minilm-l6 --export_dir /models/news
    docker run -p 8501:8501 -v /models/news:/models/news -e MODEL_NAME=news tensorflow/serving

Writes <export_dir>/<next version>/ atomically; an existing version is never replaced
unless --overwrite is given with --version.
"""

import argparse
import sys

from tfbert.cli import quiet_native_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.training.runner import export_run  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a finished training run's --output_dir (train_cls.py, train_ner.py, "
                                                          "train_qa.py, pretrain_mlm.py), or a search's best_model")
    parser.add_argument("--export_dir", help="the model base path TF Serving polls (default: <checkpoint>/saved_model)")
    parser.add_argument("--version", type=int, help="version number (default: one more than the highest)")
    parser.add_argument("--overwrite", action="store_true", help="replace --version if it exists")
    parser.add_argument("--max_seq_length", type=int, help="truncation length in the graph (default: the run's)")
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's native log lines")
    args = parser.parse_args(argv)
    if args.overwrite and args.version is None:
        parser.error("--overwrite replaces an existing --version; give the version to replace")
    try:
        path = export_run(args.checkpoint, args.export_dir, args.version, args.overwrite, args.max_seq_length)
    except USER_ERRORS as e:
        print(f"export.py: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
