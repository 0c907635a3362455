"""A finished run evaluated on a data file it has not seen: the task's metrics, as the run computes them
for its test split, without training (`pipelines/evaluate.py`).

    results = evaluate_run("runs/cls-bbc_news-minilm-l6", "new_articles.csv")
    results["test"]["accuracy"]

The file is read with the run's settings (columns, tag scheme, SQuAD version, ...) and must use the
run's labels: an unknown label or tag is an error naming its row, before the model is loaded. The
results go to `<run>/evaluations/<file name>/` (or `output_dir`, a new folder or an earlier
evaluation's), written whole: `metrics.json` and the task's own files (question answering:
`test_predictions.json`, `test_nbest_predictions.json`, and `test_null_odds.json` for v2.0; classification:
`labels.txt` and the confusion matrix image in `tensorboard/`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

from tfbert import fileio
from tfbert.config import ConfigError
from tfbert.data.examples import DataError
from tfbert.tasks import task_for
from tfbert.training import finished_run, runner


def evaluation_dir(run_dir: str, test_file: str) -> str:
    """Where `evaluate_run` writes by default: `<run_dir>/evaluations/<the file's name>`."""
    name = os.path.basename(os.path.abspath(test_file)).replace(":", "_") or "data"  # (".": the folder's name)
    return os.path.join(run_dir, "evaluations", name)


def _evaluated_file(folder: str) -> str | None:
    """The file an earlier evaluation in `folder` scored (its metrics.json says), else None."""
    try:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record.get("test_file") if isinstance(record, dict) and "run" in record else None


def check_output_dir(output_dir: str, run_dir: str) -> None:
    """Refuses a results folder that would replace more than an earlier evaluation: the run's own folder
    or one holding it, a file, or a folder of other files (the results replace the folder whole).

    Raises:
        ConfigError: naming the folder and what it holds.
    """
    out, run = os.path.realpath(output_dir), os.path.realpath(run_dir)
    if out == run or run.startswith(out.rstrip(os.sep) + os.sep):
        raise ConfigError(f"--output_dir: {output_dir} holds the run {run_dir}; the results replace their folder "
                          "whole: give a folder of their own")
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise ConfigError(f"--output_dir: {output_dir} is a file; give a folder for the results")
        held = sorted(os.listdir(output_dir))
        if held and _evaluated_file(output_dir) is None:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise ConfigError(f"--output_dir: {output_dir} holds other files ({shown}); the results replace their "
                              "folder whole: give a new or empty folder, or an earlier evaluation's")


def evaluate_run(run_dir: str, test_file: str, output_dir: str | None = None, batch_size: int | None = None,
                 skip_bad_rows: bool = False) -> dict:
    """Evaluates the finished run in `run_dir` on `test_file`; returns what it writes to metrics.json.

    Seeds the process as the run did (`runner.seed_everything`: Python, numpy, TensorFlow, op determinism),
    so that what is drawn at random in an evaluation (masked LM's masks) is what the run drew.

    Args:
        output_dir: where the results go; defaults to `evaluation_dir(run_dir, test_file)`. The folder
            is replaced whole once the new results are written, so it must be new, empty or an earlier
            evaluation's (`check_output_dir`).
        batch_size: examples per batch (default: the run's).
        skip_bad_rows: leave out (and report) the file's rows that cannot be read, instead of stopping.

    Raises:
        tfbert.training.finished_run.RunFolderError: not a finished run's folder.
        tfbert.data.readers.DataError: a bad row, or a label the run's model does not know (named).
        tfbert.config.ConfigError: a bad batch size, or an `output_dir` that holds other files.
    """
    started = time.time()
    config = finished_run.read_config(run_dir, "evaluates")
    output_dir = output_dir or evaluation_dir(run_dir, test_file)
    check_output_dir(output_dir, run_dir)
    if batch_size is not None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, found {batch_size!r}")
        config = dataclasses.replace(config, batch_size=batch_size)
    if skip_bad_rows:
        config = dataclasses.replace(config, skip_bad_rows=True)
    runner.seed_everything(config)  # (masked LM's evaluation masks are drawn from the run's seed, as in the run)
    task = task_for(config)
    try:
        data = task.evaluation_data(config, test_file, task.data_for_export(run_dir, config))
    except DataError as e:
        if "--version_2_with_negative" not in str(e):
            raise
        raise DataError(f"{e}. The run was trained without unanswerable questions (SQuAD v1.1): it is scored on "
                        "v1.1 data only") from None
    model, tokenizer = finished_run.load_model(run_dir)
    # run as the run evaluated it: padded or not changes the outputs in their last bits, which a regression
    # run's Spearman turns into another ranking where scores tie
    model.backbone.skip_padding = runner.skips_padding(config, task)
    # the loss too where the run reported it (its best epoch was chosen by it), with the run's loss function
    with_loss = runner.best_metric_of(config, task) == "val_loss"
    if with_loss:
        model.compile(loss=task.loss(model))
    prepared = runner.PreparedData(task, data, tokenizer)
    print(f"evaluating {run_dir} on {test_file}: {len(data.test)} examples", flush=True)
    results = {"test": task.evaluate(model, prepared.dataset("test", config), data, "test", tokenizer, config,
                                     with_loss=with_loss)}
    runner.print_results(results)
    finished = time.localtime(os.path.getmtime(os.path.join(run_dir, "metrics.json")))  # which model: the run's then
    finished = time.strftime("%Y-%m-%d %H:%M:%S", finished)
    summary = {"run": os.path.abspath(run_dir), "run_finished": finished, "test_file": os.path.abspath(test_file),
               "num_examples": len(data.test), "batch_size": config.batch_size,
               "max_seq_length": config.max_seq_length, "seconds": round(time.time() - started, 1),
               "test": {k: v for k, v in results["test"].items() if k != "report"}}
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    fileio.remove_leftovers(parent)  # a killed evaluation's scratch folder
    earlier = _evaluated_file(output_dir)
    if earlier and earlier != summary["test_file"]:
        print(f"{output_dir}: replacing the evaluation of {earlier}", flush=True)
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
