"""Fine-tune BERT for extractive question answering (SQuAD v1.1 and v2.0).

With no arguments: all-MiniLM-L6-v2 (the minilm-l6 preset) on XQuAD-en (1,190 SQuAD-style questions
on 48 Wikipedia articles, shipped with tfbert under CC BY-SA 4.0), split into train/validation/test
by article; outputs under runs/ and tensorboard_logs/. Files: SQuAD JSON (v1.1, or v2.0 with
unanswerable questions: detected, or --version_2_with_negative) or JSON Lines
({"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}). Contexts longer
than --max_seq_length become overlapping windows (--doc_stride). Run with --help for every flag.

    python pipelines/train_qa.py
    python pipelines/train_qa.py --train_file train-v2.0.json --validation_file dev-v2.0.json
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.training.run_config import QARunConfig  # noqa: E402
from tfbert.training.runner import train  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(QARunConfig, train, argv, __doc__, "train_qa.py")


if __name__ == "__main__":
    sys.exit(main())
