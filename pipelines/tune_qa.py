"""Hyperparameter search for extractive question answering: each trial is a train_qa run.

With no arguments: a random search of 8 trials over the default space (learning rate, warmup,
weight decay, batch size, head dropout, epochs, layer-wise LR decay) for all-MiniLM-L6-v2 on the
XQuAD-en training articles, validated on its validation articles by F1 (`val_f1`). Outputs under
runs/<search_name>/ (results.md, best_hparams.yaml for train_qa.py --config, best_model/) and
TensorBoard's HParams dashboard under tensorboard_logs/<search_name>/. Killed, the same command
resumes the search. The flags are train_qa.py's plus the search settings (see tune_cls.py for
distributed searches).

    python pipelines/tune_qa.py
    python pipelines/tune_qa.py --train_file train-v1.1.json --validation_file dev-v1.1.json --max_trials 20
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.tuning import TuneQaRunConfig, run_search  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(TuneQaRunConfig, run_search, argv, __doc__, "tune_qa.py")


if __name__ == "__main__":
    sys.exit(main())
