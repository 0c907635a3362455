"""The QA task's default data (XQuAD-en shipped in the package) and `train_qa.py` run with it."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_default_data_is_xquad_split_by_article():
    from tfbert import datasets
    from tfbert.tasks.question_answering import QuestionAnsweringTask
    from tfbert.training.run_config import QARunConfig

    folder = datasets.path("xquad_en")
    assert {"xquad.en.json", "LICENSE.txt", "README.md"} <= set(os.listdir(folder))
    assert "Attribution-ShareAlike 4.0" in open(os.path.join(folder, "LICENSE.txt"), encoding="utf-8").read()
    assert "Artetxe" in open(os.path.join(folder, "README.md"), encoding="utf-8").read()

    config = QARunConfig()
    data = QuestionAnsweringTask().load_data(config)
    sizes = [len(data.train), len(data.validation), len(data.test)]
    assert sum(sizes) == 1190 and sizes == [834, 190, 166]
    titles = [set(split.titles) for split in (data.train, data.validation, data.test)]
    assert not (titles[0] & titles[1] or titles[0] & titles[2] or titles[1] & titles[2])  # whole articles
    assert data.version_2 is False and config.version_2_with_negative is False  # detected, kept in config.yaml
    again = QuestionAnsweringTask().load_data(QARunConfig())
    assert again.validation.ids == data.validation.ids  # the same split every time
    other = QuestionAnsweringTask().load_data(QARunConfig(seed=7))
    assert other.validation.ids != data.validation.ids


def test_detected_v2_and_an_empty_held_out_split_are_said(tmp_path, caplog):
    """Both passed silently: one question without answers in v1.1 data turned the whole run into a SQuAD
    v2.0 one, and a file of one article (the split is by title) left the run without validation."""
    from tfbert.tasks.question_answering import QuestionAnsweringTask
    from tfbert.training.run_config import QARunConfig

    def qa(i, answered=True):
        answers = {"text": ["Paris"], "answer_start": [0]} if answered else {"text": [], "answer_start": []}
        return {"id": f"q{i}", "title": "Paris", "question": "Which city?", "context": "Paris is big.",
                "answers": answers}

    path = tmp_path / "one_article.jsonl"
    path.write_text("".join(json.dumps(qa(i, answered=i != 2)) + "\n" for i in range(4)), encoding="utf-8")
    data = QuestionAnsweringTask().load_data(QARunConfig(train_file=str(path)))
    assert data.version_2 and data.validation is None and len(data.train) == 4
    said = caplog.text
    assert "SQuAD v2.0 detected (questions without answers: train 1)" in said
    assert "--version_2_with_negative false refuses such questions" in said
    assert f"{path}: --validation_fraction 0.15 held out nothing" in said and "give --validation_file" in said


def test_a_training_file_holds_out_its_validation_fraction(tmp_path):
    # it held out validation_fraction / (1 - test_fraction): 0.5 / 0.85 of the articles, a test share
    # taken off a file that has no test split
    from tfbert.tasks.question_answering import QuestionAnsweringTask
    from tfbert.training.run_config import QARunConfig

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "title": f"article {i}", "question": "Which city?",
                                        "context": "Paris is big.", "answers": {"text": ["Paris"], "answer_start": [0]}})
                            + "\n" for i in range(40)), encoding="utf-8")
    for fraction, held in ((0.5, 20), (0.25, 10)):
        data = QuestionAnsweringTask().load_data(QARunConfig(train_file=str(path), validation_fraction=fraction))
        assert (len(data.train), len(data.validation)) == (40 - held, held)


def test_a_v2_threshold_on_v1_data_is_said_to_be_unused(tmp_path, caplog):
    from tfbert.tasks.question_answering import QuestionAnsweringTask
    from tfbert.training.run_config import QARunConfig

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "title": f"article {i}", "question": "Which city?",
                                        "context": "Paris is big.", "answers": {"text": ["Paris"], "answer_start": [0]}})
                            + "\n" for i in range(8)), encoding="utf-8")
    QuestionAnsweringTask().load_data(QARunConfig(train_file=str(path)))
    assert "null_score_diff_threshold" not in caplog.text  # (not given)
    QuestionAnsweringTask().load_data(QARunConfig(train_file=str(path), null_score_diff_threshold=1.5))
    assert "--null_score_diff_threshold 1.5 is not used: the data is SQuAD v1.1" in caplog.text


def test_rows_dropped_under_skip_bad_rows_are_reported_for_every_task(tmp_path, caplog):
    # classification and QA dropped them silently when the validation split was taken from the training file
    # (a split does not carry the file's `skipped`): only the counts showed it
    from tfbert.tasks import task_for
    from tfbert.training.run_config import ClassifierRunConfig, QARunConfig, TokenClassifierRunConfig

    def qa(i, start=0):
        return json.dumps({"id": f"q{i}", "title": f"a{i}", "question": "Which city?", "context": "Paris is big.",
                           "answers": {"text": ["Paris"], "answer_start": [start]}}) + "\n"

    files = {"cls.csv": "text,label\n" + "good film,pos\nbad film,neg\n" * 10 + '"  ",pos\n',
             "qa.jsonl": "".join(qa(i) for i in range(20)) + qa(20, start=3),
             "ner.conll": "Ada B-PER\nmet O\n\n" * 10 + "Bob\n\n"}
    expected = {"cls.csv": "cls.csv:22: ", "qa.jsonl": "qa.jsonl:21: ", "ner.conll": "ner.conll:31: "}
    for (name, text), cls in zip(files.items(), (ClassifierRunConfig, QARunConfig, TokenClassifierRunConfig)):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        caplog.clear()
        config = cls(train_file=str(path), skip_bad_rows=True, validation_fraction=0.2)
        task_for(config).load_data(config)
        skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
        assert len(skipped) == 1 and f"skipped {tmp_path / expected[name]}" in skipped[0], (name, skipped)


@pytest.mark.slow
def test_train_qa_runs_on_its_default_data(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "pipelines", "train_qa.py"), "--model", tiny_model_dir,
                             "--max_train_examples", "32", "--epochs", "1", "--max_seq_length", "64",
                             "--doc_stride", "16", "--max_query_length", "16", "--output_dir", str(out),
                             "--log_dir", str(tmp_path / "tb")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "XQuAD-en" in result.stdout and "train 32, validation 190, test 166" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_examples"] == {"train": 32, "validation": 190, "test": 166}
    predictions = json.loads((out / "test_predictions.json").read_text())
    assert len(predictions) == 166 and all(isinstance(answer, str) for answer in predictions.values())
    assert 0 <= metrics["test"]["exact_match"] <= metrics["test"]["f1"] <= 100
