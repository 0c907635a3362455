"""`python pipelines/tune_ner.py`: the same search module as classification, over the NER task."""

import csv
import json
import os
import subprocess
import sys

import pytest

from test_train_ner import write_conll

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_grid_search_exports_the_best_ner_model_and_its_config_trains_again(tmp_path, tiny_model_dir):
    write_conll(tmp_path / "train.conll", 120, seed=1)
    write_conll(tmp_path / "dev.conll", 30, seed=2)
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: choice, values: [0.00001, 0.003]}\nbatch_size: 8\nepochs: 2\n"
                     "warmup_ratio: null\nweight_decay: null\ndropout: null\nlayerwise_lr_decay: null\n",
                     encoding="utf-8")
    command = [sys.executable, os.path.join(ROOT, "pipelines", "tune_ner.py"), "--model", tiny_model_dir,
               "--train_file", str(tmp_path / "train.conll"), "--validation_file", str(tmp_path / "dev.conll"),
               "--max_seq_length", "24", "--search_space", str(space), "--tuner", "grid", "--max_trials", "2",
               "--output_dir", str(tmp_path / "search"), "--log_dir", str(tmp_path / "tb"), "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "search" / "results.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert "val_f1" in rows[0]  # the objective is NER's metric
    best = max(rows, key=lambda r: float(r["val_f1"]))
    assert float(best["learning_rate"]) == 0.003 and float(best["val_f1"]) > 0.5

    # best_hparams.yaml is a train_ner config; best_model/ is a train_ner run with the tagging export
    from tfbert.training.run_config import TokenClassifierRunConfig

    best_hparams = tmp_path / "search" / "best_hparams.yaml"
    assert "python pipelines/train_ner.py --config" in best_hparams.read_text()
    config = TokenClassifierRunConfig.from_args(["--config", str(best_hparams)])
    assert config.learning_rate == 0.003 and config.metric_for_best == "val_f1"
    exported = json.loads((tmp_path / "search" / "best_model" / "metrics.json").read_text())
    metadata = json.loads(open(os.path.join(exported["saved_model"], "assets.extra", "tfbert_export.json")).read())
    assert metadata["task"] == "token_classification" and metadata["labels"] == ["O", "B-LOC", "B-PER", "I-PER"]

    again = subprocess.run(command, capture_output=True, text=True, timeout=900)  # resumes: nothing left to run
    assert again.returncode == 0 and "started on" not in again.stdout, again.stdout[-2000:]
