"""Fine-tune BERT for token classification (named-entity recognition).

With no arguments: all-MiniLM-L6-v2 (the minilm-l6 preset) on WNUT-17 (emerging entities, 6 types,
shipped with tfbert under CC BY 4.0), its own train/dev/test splits; outputs under runs/ and
tensorboard_logs/. Files: CoNLL (token and tag columns, blank line between sentences; IOB1, IOB2
or BIOES) or JSON Lines ({"tokens": [...], "tags": [...]}). Run with --help for every flag.

    python pipelines/train_ner.py
    python pipelines/train_ner.py --train_file train.conll --validation_file dev.conll --tag_column 3
"""

import logging
import sys

from tfbert.cli import quiet_native_logs

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.errors import USER_ERRORS  # noqa: E402
from tfbert.training.run_config import TokenClassifierRunConfig  # noqa: E402
from tfbert.training.runner import train  # noqa: E402


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = TokenClassifierRunConfig.from_args(argv, description=__doc__)
    try:
        train(config)
    except USER_ERRORS as e:  # bad data, config, checkpoint or vocabulary: the message says where
        print(f"train_ner.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
