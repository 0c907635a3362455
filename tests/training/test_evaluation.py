"""A finished run evaluated on a file it has not seen (`tfbert.training.evaluation`, `pipelines/evaluate.py`):
the file's metrics are the ones the run reports when that file is its test split, the labels are the run's,
and the results are written whole. (NER, question answering and masked LM: tests/pipelines/test_train_ner.py,
test_train_qa.py and test_pretrain_mlm.py evaluate their runs too.)"""

import json
import os
import re
import socket

import pytest

from conftest import write_sentiment_csv
from tfbert.config import ConfigError
from tfbert.data.readers import DataError
from tfbert.training.evaluation import evaluate_run
from tfbert.training.finished_run import RunFolderError
from tfbert.training.run_config import ClassifierRunConfig
from tfbert.training.runner import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_cli", os.path.join(ROOT, "pipelines", "evaluate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_classifier_run_scores_a_new_file_as_it_scored_its_test_split(tmp_path, tiny_model_dir, capsys,
                                                                       monkeypatch):
    from tfbert import fileio

    train_file = write_sentiment_csv(tmp_path / "train.csv", 160, seed=1)
    test_file = write_sentiment_csv(tmp_path / "test.csv", 21, seed=2)
    run = tmp_path / "run"
    metrics = train(ClassifierRunConfig(model=tiny_model_dir, train_file=train_file, test_file=test_file,
                                        validation_fraction=0.1, epochs=4, batch_size=8, max_seq_length=32,
                                        learning_rate=3e-3, output_dir=str(run), log_dir=str(tmp_path / "tb")))
    assert metrics["test"]["accuracy"] > 0.75  # (learnt: the comparisons below compare predictions of both classes)
    capsys.readouterr()

    # evaluated as the run evaluated (the encoder skipping padding: a padded run's last bits broke ties in a
    # regression run's Spearman)
    from tfbert.tasks.classification import ClassificationTask

    skipping, evaluate = [], ClassificationTask.evaluate
    monkeypatch.setattr(ClassificationTask, "evaluate",
                        lambda self, model, *a, **k: skipping.append(model.backbone.skip_padding)
                        or evaluate(self, model, *a, **k))
    summary = evaluate_run(str(run), test_file)
    monkeypatch.undo()
    assert skipping == [True]
    assert summary["test"] == metrics["test"]  # exactly, confusion matrix and per-class figures included
    written = run / "evaluations" / "test.csv"
    assert json.loads((written / "metrics.json").read_text())["test"] == metrics["test"]
    assert summary["num_examples"] == 21 and summary["test_file"] == test_file
    out = capsys.readouterr().out
    assert f"test: accuracy={metrics['test']['accuracy']:.4f}" in out
    assert f"results: {written / 'metrics.json'}" in out
    # other batches (padding) give the same answers
    other = evaluate_run(str(run), test_file, output_dir=str(tmp_path / "by3"), batch_size=3)
    assert other["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]

    # the file's labels are the run's: one it never trained on is named with its row, before the model loads
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,label\ngood film,pos\na film,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{unknown}:3: label 'maybe' is not in the label vocabulary")):
        evaluate_run(str(run), str(unknown))
    # --skip_bad_rows leaves such rows out and says so, as the error advises
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,pos\n\"  \",neg\nbad film,neg\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{bad}:3: empty text")):
        evaluate_run(str(run), str(bad))
    assert evaluate_run(str(run), str(bad), output_dir=str(tmp_path / "skipped"), skip_bad_rows=True)[
        "num_examples"] == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{empty}: no examples")):
        evaluate_run(str(run), str(empty))
    assert sorted(os.listdir(run / "evaluations")) == ["test.csv"]
    # a folder dataset given as "." is named after the folder (it was "evaluations/.", the evaluations folder)
    from tfbert.training.evaluation import evaluation_dir

    monkeypatch.chdir(tmp_path)
    assert evaluation_dir(str(run), ".") == str(run / "evaluations" / tmp_path.name)
    monkeypatch.undo()

    # killed while writing: the previous results stay whole, and no half folder is left (a kill -9's is removed
    # by the next evaluation)
    before = (written / "metrics.json").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(str(run), test_file)
    monkeypatch.undo()
    assert (written / "metrics.json").read_text() == before
    assert sorted(os.listdir(run / "evaluations")) == ["test.csv"]
    stray = run / "evaluations" / f".test.csv.tmp-0badc0de-pid999999999@{socket.gethostname()}"
    stray.mkdir()
    evaluate_run(str(run), test_file)
    assert sorted(os.listdir(run / "evaluations")) == ["test.csv"]

    # the results replace their folder whole: a folder of other files, the run's above all, is refused untouched
    for folder in (run, run.parent, run / "hf_model"):
        with pytest.raises(ConfigError, match=re.escape(f"--output_dir: {folder} ")):
            evaluate_run(str(run), test_file, output_dir=str(folder))
    assert (run / "model.keras").exists() and (run / "hf_model" / "config.json").exists()
    # another file of the same name replaces an earlier evaluation, and says so
    other_test = tmp_path / "other" / "test.csv"
    other_test.parent.mkdir()
    other_test.write_text(open(test_file, encoding="utf-8").read(), encoding="utf-8")
    capsys.readouterr()
    evaluate_run(str(run), str(other_test))
    assert f"{written}: replacing the evaluation of {test_file}" in capsys.readouterr().out

    # the command line: one line per error, and a search's folder is pointed to its best model
    cli = _load_cli()
    assert cli.main(["--checkpoint", str(run), "--test_file", test_file, "--output_dir", str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["test"] == metrics["test"]
    capsys.readouterr()
    assert cli.main(["--checkpoint", str(tmp_path / "nope"), "--test_file", test_file]) == 1
    assert capsys.readouterr().err == f"evaluate.py: error: {tmp_path / 'nope'}: no such run folder\n"
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunFolderError, match="a search's folder, not a training run: its best model is the run "):
        evaluate_run(str(tmp_path / "search"), test_file)
    with pytest.raises(RunFolderError, match=r"not a finished training run \(missing"):
        evaluate_run(str(tmp_path / "cli"), test_file)

    # a run that chose its best epoch by the validation loss reported the test loss too: so does its evaluation
    import tfbert
    from tfbert.tasks import task_for
    from tfbert.text import BertTokenizer
    from tfbert.training import runner

    config_yaml = run / "config.yaml"
    config_yaml.write_text(config_yaml.read_text().replace("metric_for_best: null", "metric_for_best: val_loss"))
    with_loss = evaluate_run(str(run), test_file, output_dir=str(tmp_path / "with_loss"))["test"]
    config = ClassifierRunConfig.from_args(["--config", str(config_yaml)])
    task = task_for(config)
    compiled = tfbert.load_model(str(run))  # as the run evaluated: its compiled loss
    data = task.evaluation_data(config, test_file, task.data_for_export(str(run), config))
    prepared = runner.PreparedData(task, data, BertTokenizer.from_pretrained(str(run / "hf_model")))
    reference = task.evaluate(compiled, prepared.dataset("test", config), data, "test", prepared.tokenizer, config,
                              with_loss=True)
    assert with_loss["loss"] == pytest.approx(reference["loss"], rel=1e-6) and "loss" not in metrics["test"]
