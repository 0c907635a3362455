"""`python pipelines/tune_ner.py`: the same search module as classification, over the NER task."""

import pytest

from search_checks import grid_search
from test_train_ner import write_conll


@pytest.mark.slow
def test_grid_search_exports_the_best_ner_model_and_its_config_trains_again(tmp_path, tiny_model_dir):
    from tfbert.training.run_config import TokenClassifierRunConfig

    write_conll(tmp_path / "train.conll", 120, seed=1)
    write_conll(tmp_path / "dev.conll", 30, seed=2)
    best, _, metadata = grid_search(
        tmp_path, "tune_ner.py", tiny_model_dir, ["--train_file", str(tmp_path / "train.conll"), "--validation_file",
                                                  str(tmp_path / "dev.conll"), "--max_seq_length", "24"],
        batch_size=8, epochs=2, config_class=TokenClassifierRunConfig)
    assert float(best["val_f1"]) > 0.5  # entity F1 in [0, 1]
    # best_model/ is a train_ner run with the tagging export
    assert metadata["task"] == "token_classification" and metadata["labels"] == ["O", "B-LOC", "B-PER", "I-PER"]
