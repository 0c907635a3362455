"""`python pipelines/tune_qa.py`: the same search module as classification and NER, over the QA task."""

import pytest

from search_checks import grid_search
from test_train_qa import LENGTHS, squad_document, write_json


@pytest.mark.slow
def test_grid_search_exports_the_best_qa_model_and_its_config_trains_again(tmp_path, tiny_model_dir):
    from tfbert.training.run_config import QARunConfig

    write_json(tmp_path / "train.json", squad_document("t", 12, 10, seed=1))
    write_json(tmp_path / "dev.json", squad_document("d", 3, 10, seed=2))
    best, config, metadata = grid_search(
        tmp_path, "tune_qa.py", tiny_model_dir, ["--train_file", str(tmp_path / "train.json"), "--validation_file",
                                                 str(tmp_path / "dev.json"), *LENGTHS],
        batch_size=16, epochs=3, config_class=QARunConfig)
    assert float(best["val_f1"]) > 50  # SQuAD F1 in [0, 100]
    assert config.doc_stride == 16 and config.max_seq_length == 48  # the QA flags reach best_hparams.yaml
    # what the data decided is recorded as train_qa's config.yaml records it (it was null, as if unread)
    assert config.version_2_with_negative is False
    # best_model/ is a train_qa run with the QA export and its predictions
    assert metadata["task"] == "question_answering" and metadata["doc_stride"] == 16
    assert (tmp_path / "search" / "best_model" / "validation_predictions.json").exists()
