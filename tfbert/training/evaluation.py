"""A finished run evaluated on a data file it has not seen: the task's metrics, as the run computes them
for its test split, without training (`pipelines/evaluate.py`).

    results = evaluate_run("runs/cls-bbc_news-minilm-l6", "new_articles.csv")
    results["test"]["accuracy"]

The file is read with the run's settings (columns, tag scheme, SQuAD version, ...) and must use the
run's labels: an unknown label or tag is an error naming its row, before the model is loaded. The
results go to `<run>/evaluations/<file name>/` (or `output_dir`), written whole: `metrics.json` and
the task's own files (question answering: `test_predictions.json` and `test_nbest_predictions.json`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

from tfbert import fileio
from tfbert.config import ConfigError
from tfbert.tasks import task_for
from tfbert.training import finished_run, runner


def evaluation_dir(run_dir: str, test_file: str) -> str:
    """Where `evaluate_run` writes by default: `<run_dir>/evaluations/<the file's name without extension>`."""
    name = os.path.splitext(os.path.basename(os.path.normpath(test_file)))[0] or "data"
    return os.path.join(run_dir, "evaluations", name)


def evaluate_run(run_dir: str, test_file: str, output_dir: str | None = None, batch_size: int | None = None) -> dict:
    """Evaluates the finished run in `run_dir` on `test_file`; returns what it writes to metrics.json.

    Seeds the process as the run did (`runner.seed_everything`: Python, numpy, TensorFlow, op determinism),
    so that what is drawn at random in an evaluation (masked LM's masks) is what the run drew.

    Args:
        output_dir: where the results go; defaults to `evaluation_dir(run_dir, test_file)`. What is
            there is replaced whole once the new results are written.
        batch_size: examples per batch (default: the run's).

    Raises:
        tfbert.training.finished_run.RunFolderError: not a finished run's folder.
        tfbert.data.readers.DataError: a bad row, or a label the run's model does not know (named).
        tfbert.config.ConfigError: a bad batch size.
    """
    started = time.time()
    config = finished_run.read_config(run_dir, "evaluates")
    if batch_size is not None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, found {batch_size!r}")
        config = dataclasses.replace(config, batch_size=batch_size)
    runner.seed_everything(config)  # (masked LM's evaluation masks are drawn from the run's seed, as in the run)
    task = task_for(config)
    data = task.evaluation_data(config, test_file, task.data_for_export(run_dir, config))
    model, tokenizer = finished_run.load_model(run_dir)
    prepared = runner.PreparedData(task, data, tokenizer)
    print(f"evaluating {run_dir} on {test_file}: {len(data.test)} examples", flush=True)
    results = {"test": task.evaluate(model, prepared.dataset("test", config), data, "test", tokenizer, config)}
    runner.print_results(results)
    summary = {"run": os.path.abspath(run_dir), "test_file": os.path.abspath(test_file),
               "num_examples": len(data.test), "batch_size": config.batch_size,
               "max_seq_length": config.max_seq_length, "seconds": round(time.time() - started, 1),
               "test": {k: v for k, v in results["test"].items() if k != "report"}}
    output_dir = output_dir or evaluation_dir(run_dir, test_file)
    os.makedirs(os.path.dirname(os.path.abspath(output_dir)), exist_ok=True)
    scratch = fileio.scratch_path(output_dir)
    try:  # written beside and swapped in whole: a killed evaluation leaves the previous results
        os.makedirs(scratch)
        task.write_extras(model, data, config, results, scratch, os.path.join(scratch, "tensorboard"))
        fileio.write_json(os.path.join(scratch, "metrics.json"), summary, default=float)
        fileio.replace_dir(scratch, output_dir, aside=fileio.scratch_path(output_dir, "old"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # (nothing left once swapped in)
    print(f"results: {os.path.join(output_dir, 'metrics.json')}", flush=True)
    return summary
