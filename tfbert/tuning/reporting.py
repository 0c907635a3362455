"""The results of a search: `results.csv` and `results.md`, and the TensorBoard HParams experiment and
one HParams session per trial."""

from __future__ import annotations

import csv
import json
import os

import keras_tuner
import tensorflow as tf
from keras_tuner.engine.trial import TrialStatus

from tfbert import fileio
from tfbert.tuning.hypermodel import BertHyperModel
from tfbert.tuning.oracles import last_line
from tfbert.tuning.progress import format_value
from tfbert.tuning.settings import TuneRunConfig, validation_metric_names
from tfbert.tuning.space import ParamSpec


def write_trial_summary(log_dir: str, trial_id: str, values: dict, metrics: dict, error: str | None = None) -> None:
    """The HParams session of one trial: its values, its metrics (scalars at step 0) and any error."""
    from tensorboard.plugins.hparams import api as hparams_api

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        hparams_api.hparams(dict(values), trial_id=str(trial_id))
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
        if error:
            tf.summary.text("error", error)
    writer.flush()
    writer.close()


def write_search_summary(log_dir: str, space: dict[str, ParamSpec], objective: keras_tuner.Objective,
                         config: TuneRunConfig) -> None:
    """The HParams experiment: the searched values and their domains, the metrics to compare."""
    from tensorboard.plugins.hparams import api as hparams_api

    hparams = []
    for spec in space.values():
        if config.tuner == "hyperband" and spec.name == "epochs":
            domain = hparams_api.IntInterval(1, int(spec.largest))
        elif spec.kind == "float":
            domain = hparams_api.RealInterval(float(spec.min), float(spec.max))
        elif spec.kind == "int":
            domain = hparams_api.IntInterval(int(spec.min), int(spec.max))
        else:
            domain = hparams_api.Discrete(list(spec.values))
        hparams.append(hparams_api.HParam(spec.name, domain))
    names = [objective.name] + [m for m in validation_metric_names(config)
                                if m not in (objective.name, "val_loss")]
    metrics = [hparams_api.Metric(name, display_name=name) for name in names]
    metrics += [hparams_api.Metric(name, display_name=name) for name in ("optimizer_steps", "seconds")]
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        hparams_api.hparams_config(hparams=hparams, metrics=metrics)
    writer.flush()
    writer.close()


def trial_rows(oracle, hypermodel: BertHyperModel, project_dir: str) -> list[dict]:
    """One row per trial: id, status, objective, hyperparameters, optimizer steps, seconds, worker, error."""
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (int(t), t) if str(t).isdigit() else (-1, t)):
        trial = oracle.trials[trial_id]
        record_path = os.path.join(project_dir, f"trial_{trial_id}", "trial_run.json")
        record = {}
        if os.path.exists(record_path):
            with open(record_path, encoding="utf-8") as f:
                record = json.load(f)

        def metric(name):
            return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None

        status = str(trial.status)
        error = ""
        if trial.status in (TrialStatus.FAILED, TrialStatus.INVALID):
            error = last_line(trial.message) or record.get("error") or "the objective is NaN"
        row = {"trial_id": trial_id, "status": status,
               "objective": trial.score if trial.status == TrialStatus.COMPLETED else None}
        row.update(hypermodel.values(trial.hyperparameters))
        steps = metric("optimizer_steps")
        row.update(steps=int(steps) if steps is not None else None,
                   seconds=metric("seconds") if metric("seconds") is not None else record.get("seconds"),
                   worker=record.get("tuner_id", ""), error=error)
        rows.append(row)
    return rows


def write_results(oracle, hypermodel: BertHyperModel, project_dir: str, output_dir: str) -> list[dict]:
    """Writes `results.csv` and `results.md` (the best completed trial first in the markdown)."""
    rows = trial_rows(oracle, hypermodel, project_dir)
    objective = oracle.objective
    hyperband = hypermodel.config.tuner == "hyperband"
    hp_columns = [name for name in hypermodel.search_space if not (hyperband and name == "epochs")]
    hp_columns += ["epochs"] if hyperband else []
    columns = ["trial_id", "status", objective.name, *hp_columns, "steps", "seconds", "worker", "error"]

    def cells(row):
        return [row["objective"] if column == objective.name else row.get(column) for column in columns]

    with fileio.atomic_write(os.path.join(output_dir, "results.csv"), newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if cell is None else cell for cell in cells(row)])

    completed = [r for r in rows if r["status"] == TrialStatus.COMPLETED and r["objective"] is not None]
    ranked = sorted(completed, key=lambda r: r["objective"], reverse=objective.direction == "max")
    others = [r for r in rows if r not in ranked]
    lines = [f"# Search results: {objective.name} ({objective.direction})", "",
             f"{len(completed)} completed, {sum(r['status'] == TrialStatus.FAILED for r in rows)} failed, "
             f"{len(rows)} trials in all; best first.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in ranked + others:
        shown = ["" if c is None else format_value(c) if isinstance(c, float) else str(c).replace("|", "\\|")
                 for c in cells(row)]
        lines.append("| " + " | ".join(shown) + " |")
    with fileio.atomic_write(os.path.join(output_dir, "results.md")) as f:
        f.write("\n".join(lines) + "\n")
    return rows
