"""Hyperparameter search for sequence classification: each trial is a train_cls run.

With no arguments: a random search of 8 trials over the default space (learning rate, warmup,
weight decay, batch size, dropout, epochs, layer-wise LR decay) for all-MiniLM-L6-v2 on 320 BBC
News articles cut at 64 tokens, 11 minutes on 2 CPU cores. Outputs under
runs/<search_name>/ (results.md, best_hparams.yaml, best_model/) and TensorBoard's HParams
dashboard under tensorboard_logs/<search_name>/. Killed, the same command resumes the search.

    python pipelines/tune_cls.py
    python pipelines/tune_cls.py --train_file train.csv --objective val_macro_f1 --search_space space.yaml
    python pipelines/tune_cls.py --role chief --oracle_address 0.0.0.0:8000 ...           # distributed:
    python pipelines/tune_cls.py --role worker --oracle_address chief:8000 --worker_index 0 ...
"""

import sys

from tfbert.cli import quiet_native_logs, run_pipeline

quiet_native_logs()  # before TensorFlow is imported (--verbose shows its log lines)

from tfbert.tuning import TuneRunConfig, run_search  # noqa: E402


def main(argv=None) -> int:
    return run_pipeline(TuneRunConfig, run_search, argv, __doc__, "tune_cls.py")


if __name__ == "__main__":
    sys.exit(main())
