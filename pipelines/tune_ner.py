"""Hyperparameter search for token classification (NER): each trial is a train_ner run.

With no arguments: a random search of 8 trials over the default space (learning rate, warmup,
weight decay, batch size, dropout, epochs, layer-wise LR decay) for all-MiniLM-L6-v2 on the 3,394
WNUT-17 training sentences cut at 64 tokens, validated on WNUT-17 dev. Outputs under runs/<search_name>/
(results.md, best_hparams.yaml for train_ner.py --config, best_model/) and TensorBoard's HParams
dashboard under tensorboard_logs/<search_name>/. Killed, the same command resumes the search.
The flags are train_ner.py's plus the search settings (see tune_cls.py for distributed searches).

    python pipelines/tune_ner.py
    python pipelines/tune_ner.py --train_file train.conll --validation_file dev.conll --max_trials 20
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.tuning import TuneNerRunConfig, run_search  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(TuneNerRunConfig, run_search, argv, __doc__, "tune_ner.py")


if __name__ == "__main__":
    sys.exit(main())
