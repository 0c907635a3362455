"""`python pipelines/tune_qa.py`: the same search module as classification and NER, over the QA task."""

import csv
import json
import os
import subprocess
import sys

import pytest

from test_train_qa import LENGTHS, squad_document, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_grid_search_exports_the_best_qa_model_and_its_config_trains_again(tmp_path, tiny_model_dir):
    write_json(tmp_path / "train.json", squad_document("t", 12, 10, seed=1))
    write_json(tmp_path / "dev.json", squad_document("d", 3, 10, seed=2))
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: choice, values: [0.00001, 0.003]}\nbatch_size: 16\nepochs: 3\n"
                     "warmup_ratio: null\nweight_decay: null\ndropout: null\nlayerwise_lr_decay: null\n",
                     encoding="utf-8")
    command = [sys.executable, os.path.join(ROOT, "pipelines", "tune_qa.py"), "--model", tiny_model_dir,
               "--train_file", str(tmp_path / "train.json"), "--validation_file", str(tmp_path / "dev.json"),
               *LENGTHS, "--search_space", str(space), "--tuner", "grid", "--max_trials", "2",
               "--output_dir", str(tmp_path / "search"), "--log_dir", str(tmp_path / "tb"), "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "search" / "results.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert "val_f1" in rows[0]  # the objective is QA's F1
    best = max(rows, key=lambda r: float(r["val_f1"]))
    assert float(best["learning_rate"]) == 0.003 and float(best["val_f1"]) > 50

    # best_hparams.yaml is a train_qa config; best_model/ is a train_qa run with the QA export
    from tfbert.training.run_config import QARunConfig

    best_hparams = tmp_path / "search" / "best_hparams.yaml"
    assert "python pipelines/train_qa.py --config" in best_hparams.read_text()
    config = QARunConfig.from_args(["--config", str(best_hparams)])
    assert config.learning_rate == 0.003 and config.doc_stride == 16 and config.max_seq_length == 48
    exported = json.loads((tmp_path / "search" / "best_model" / "metrics.json").read_text())
    metadata = json.loads(open(os.path.join(exported["saved_model"], "assets.extra", "tfbert_export.json")).read())
    assert metadata["task"] == "question_answering" and metadata["doc_stride"] == 16
    assert (tmp_path / "search" / "best_model" / "validation_predictions.json").exists()
