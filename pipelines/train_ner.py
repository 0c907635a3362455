"""Fine-tune BERT for token classification (named-entity recognition).

With no arguments: all-MiniLM-L6-v2 (the minilm-l6 preset) on WNUT-17 (emerging entities, 6 types,
shipped with tfbert under CC BY 4.0), its own train/dev/test splits; outputs under runs/ and
tensorboard_logs/. Files: CoNLL (token and tag columns, blank line between sentences; IOB1, IOB2
or BIOES) or JSON Lines ({"tokens": [...], "tags": [...]}). Run with --help for every flag.

    python pipelines/train_ner.py
    python pipelines/train_ner.py --train_file train.conll --validation_file dev.conll --tag_column 3
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.training.run_config import TokenClassifierRunConfig  # noqa: E402
from tfbert.training.runner import train  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(TokenClassifierRunConfig, train, argv, __doc__, "train_ner.py")


if __name__ == "__main__":
    sys.exit(main())
