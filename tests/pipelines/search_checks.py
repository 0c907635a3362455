"""A two-trial grid search over the learning rate through a task's `tune_<task>.py`, for the per-task search
tests: the runs and files every task's search must produce, checked once here."""

import csv
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def grid_search(tmp_path, script: str, model_dir: str, data_flags: list[str], batch_size: int, epochs: int,
                config_class):
    """Runs `pipelines/<script>` over learning rates 1e-5 and 3e-3 with the other hyperparameters fixed;
    checks that both trials completed, that the objective is `val_f1` and that 3e-3 won, that
    best_hparams.yaml is a config of the task's training pipeline, and that running the same command
    again resumes with nothing left to run.

    Returns:
        (the best trial's row of results.csv, the config read back from best_hparams.yaml, the export
        metadata of best_model/'s SavedModel)
    """
    space = tmp_path / "space.yaml"
    space.write_text(f"learning_rate: {{type: choice, values: [0.00001, 0.003]}}\nbatch_size: {batch_size}\n"
                     f"epochs: {epochs}\nwarmup_ratio: null\nweight_decay: null\ndropout: null\n"
                     "layerwise_lr_decay: null\n", encoding="utf-8")
    command = [sys.executable, os.path.join(ROOT, "pipelines", script), "--model", model_dir, *data_flags,
               "--search_space", str(space), "--tuner", "grid", "--max_trials", "2",
               "--output_dir", str(tmp_path / "search"), "--log_dir", str(tmp_path / "tb"), "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "search" / "results.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert "val_f1" in rows[0]  # the objective is the task's F1
    best = max(rows, key=lambda r: float(r["val_f1"]))
    assert float(best["learning_rate"]) == 0.003

    best_hparams = tmp_path / "search" / "best_hparams.yaml"
    train_script = script.replace("tune_", "train_")
    assert f"python pipelines/{train_script} --config" in best_hparams.read_text()
    config = config_class.from_args(["--config", str(best_hparams)])
    assert config.learning_rate == 0.003 and config.metric_for_best == "val_f1"
    exported = json.loads((tmp_path / "search" / "best_model" / "metrics.json").read_text())
    with open(os.path.join(exported["saved_model"], "assets.extra", "tfbert_export.json"), encoding="utf-8") as f:
        metadata = json.load(f)

    again = subprocess.run(command, capture_output=True, text=True, timeout=900)  # resumes: nothing left to run
    assert again.returncode == 0 and "started on" not in again.stdout, again.stdout[-2000:]
    return best, config, metadata
