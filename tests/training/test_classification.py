"""End-to-end fine-tuning runs on tiny models and toy data the tests write."""

import dataclasses
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import yaml

from conftest import transformers_learning_rates, write_sentiment_csv
from tfbert.data.readers import DataError
from tfbert.training.runner import train as train_classifier
from tfbert.training.run_config import (ClassifierRunConfig, MaskedLMRunConfig, QARunConfig,
                                        TokenClassifierRunConfig)


class Interrupt(Exception):
    """Stands for a kill in the middle of a run (raised by `stop_before_epoch`'s callback)."""


def stop_before_epoch(number, batch=0):
    """A Keras callback that interrupts `fit` as epoch `number` (1-based) begins, or, with `batch`, once
    that many of its batches are done (after the run's own callbacks saw the last one)."""
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if epoch == number - 1 and not batch:
                raise Interrupt

        def on_train_batch_end(self, end, logs=None):
            if self.epoch == number - 1 and end + 1 >= batch:
                raise Interrupt

    return Stop()


def _config(tmp_path, model_dir, **overrides):
    fields = dict(model=model_dir, epochs=2, batch_size=8, max_seq_length=32, learning_rate=1e-3,
                  output_dir=str(tmp_path / "run"), log_dir=str(tmp_path / "tb"), log_every_n_steps=2)
    fields.update(overrides)
    return ClassifierRunConfig(**fields)


def _fit(config):
    """A train_cls run without its exports (config.yaml, model.keras, hf_model/, saved_model/), which
    the first test checks once; the other runs only need the training and the metrics."""
    from tfbert.training import runner

    return runner.fit_and_evaluate(config, runner.prepare(config), write_exports=False)


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir, size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_single_label_run_writes_everything_a_user_opens(tmp_path, tiny_model_dir):
    train = write_sentiment_csv(tmp_path / "train.csv", 160, seed=1)
    test = write_sentiment_csv(tmp_path / "test.csv", 40, seed=2)
    summary = train_classifier(_config(tmp_path, tiny_model_dir, train_file=train, test_file=test, epochs=4,
                                       learning_rate=3e-3))
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == summary["test"]["accuracy"] > 0.75  # the toy task is learnable
    assert set(metrics["validation"]) >= {"accuracy", "macro_f1", "mcc", "per_class", "confusion_matrix"}
    assert metrics["label_vocab"] == ["neg", "pos"] and metrics["num_examples"]["validation"] == 16
    assert metrics["steps_per_epoch"] >= 144 // 8
    assert metrics["optimizer_steps"] == 4 * metrics["steps_per_epoch"] and metrics["examples_per_second"] > 0
    assert (run / "labels.txt").read_text().split() == ["neg", "pos"]
    assert (run / "best.weights.h5").exists() and (run / "model.keras").exists()
    assert not (run / "backup").exists()  # removed once training finished
    # config.yaml reproduces the run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train_file"] == train and saved["epochs"] == 4
    assert ClassifierRunConfig.from_args(["--config", str(run / "config.yaml")]).to_dict() == saved
    # the HF export is read by transformers, with the labels
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(run / "hf_model")
    assert hf.config.id2label == {0: "neg", 1: "pos"}
    # TensorBoard: per-step training scalars, per-epoch validation metrics, hparams, config text, image
    train_tags = _scalars(str(tmp_path / "tb" / "train")).Tags()
    assert {"batch_loss", "learning_rate", "examples_per_second"} <= set(train_tags["tensors"])
    validation = _scalars(str(tmp_path / "tb" / "validation"))
    assert {"epoch_accuracy", "epoch_macro_f1", "epoch_mcc"} <= set(validation.Tags()["tensors"])
    accuracies = [float(np.asarray(e.tensor_proto.float_val or [0])[0]) if e.tensor_proto.float_val else
                  float(np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0])
                  for e in validation.Tensors("epoch_accuracy")]
    assert len(accuracies) == 4 and all(0 <= a <= 1 for a in accuracies)
    learning_rates = [float(np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0]) if
                      e.tensor_proto.tensor_content else e.tensor_proto.float_val[0]
                      for e in _scalars(str(tmp_path / "tb" / "train")).Tensors("learning_rate")]
    assert max(learning_rates) <= 3e-3 + 1e-9 and learning_rates[-1] < max(learning_rates)
    top = _scalars(str(tmp_path / "tb")).Tags()
    assert "run_config/text_summary" in top["tensors"] or "run_config" in top["tensors"]
    assert "_hparams_/session_start_info" in top["tensors"]
    assert any("confusion_matrix" in tag for tag in top["tensors"])
    # the run exported a SavedModel; pipelines/export.py exports it again for a server
    assert summary["saved_model"] == str(run / "saved_model" / "1")
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "..", "..", "pipelines", "export.py")
    result = subprocess.run([sys.executable, script, "--checkpoint", str(run), "--export_dir",
                             str(tmp_path / "serving")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "serving" / "1")
    from tfbert.serving import LocalPredictor

    served = LocalPredictor(str(tmp_path / "serving")).predict(["good film", "awful movie"])
    assert [row["label"] for row in served] == [r["label"] for r in
                                                LocalPredictor(summary["saved_model"]).predict(["good film", "awful movie"])]
    result = subprocess.run([sys.executable, script, "--checkpoint", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "not a finished training run" in result.stderr
    # model.keras loads back in a new process after `import tfbert` alone (Keras finds the classes by name),
    # with its optimizer and that optimizer's state (as at the best epoch, whose weights it holds), to train further
    loaded = subprocess.run([sys.executable, "-c", "import sys, tfbert; m = tfbert.load_model(sys.argv[1]); "
                             "print(type(m).__name__, type(m.optimizer).__name__, int(m.optimizer.iterations))",
                             str(run)], capture_output=True, text=True, timeout=300)
    assert loaded.stdout.split()[:2] == ["BertClassifier", "BertAdamW"], loaded.stderr[-2000:]
    steps = int(loaded.stdout.split()[2])
    assert 0 < steps <= summary["optimizer_steps"] and steps % summary["steps_per_epoch"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "regression", "pairs"])
def test_other_task_types_train_and_report_their_metrics(tmp_path, tiny_model_dir, task):
    rng = np.random.default_rng(0)
    words = "good bad great awful movie film".split()
    lines = ["text,other,label"]
    for _ in range(80):
        chosen = list(rng.choice(words, size=3))
        if task == "multi_label":
            label = '"' + ",".join(sorted({w for w in chosen if w in ("good", "bad", "great")}) or ["none"]) + '"'
        elif task == "regression":
            label = f"{sum(w in ('good', 'great') for w in chosen) / 3:.3f}"
        else:
            label = "same" if chosen[0] == chosen[1] else "different"
        lines.append(f"{' '.join(chosen)},{chosen[1]} {chosen[2]},{label}")
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    overrides = dict(train_file=str(path), epochs=1)
    if task == "pairs":
        overrides["text_pair_column"] = "other"
    else:
        overrides["problem_type"] = task
    summary = _fit(_config(tmp_path, tiny_model_dir, **overrides))
    expected = {"multi_label": "micro_f1", "regression": "pearson", "pairs": "mcc"}[task]
    assert expected in summary["validation"]
    assert np.isfinite(summary["validation"][expected])


def test_unseen_validation_label_names_file_and_line(tmp_path, tiny_model_dir):
    train = write_sentiment_csv(tmp_path / "train.csv", 20)
    validation = tmp_path / "dev.csv"
    validation.write_text("text,label\ngood film,pos\nodd film,neutral\n")
    with pytest.raises(DataError, match=r"dev.csv:3: label 'neutral'"):
        train_classifier(_config(tmp_path, tiny_model_dir, train_file=train, validation_file=str(validation)))


def test_yaml_config_and_flag_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 7\nlearning_rate: 0.0002\nbatch_size: 4\n")
    config = ClassifierRunConfig.from_args(["--config", str(path), "--epochs", "2", "--jit_compile"])
    assert (config.epochs, config.learning_rate, config.batch_size, config.jit_compile) == (2, 2e-4, 4, True)
    path.write_text("learning_rate: 2e-5\nweight_decay: 1e-2\n")  # YAML 1.1 reads 2e-5 as a string
    config = ClassifierRunConfig.from_args(["--config", str(path)])
    assert (config.learning_rate, config.weight_decay) == (2e-5, 0.01)
    path.write_text("epochs: two\n")
    with pytest.raises(ValueError, match=r"run.yaml: field 'epochs' must be int, found 'two'"):
        ClassifierRunConfig.load_yaml(str(path))
    # one value per field (a list raised Python's own TypeError, naming no field), but for the comma lists
    for text, message in (("batch_size: [4, 8]", r"field 'batch_size' must be int, found \[4, 8\]"),
                          ("batch_size: {a: 1}", r"field 'batch_size' must be int, found \{'a': 1\}"),
                          ("train_file: [a.csv, b.csv]",
                           r"field 'train_file' must be str, found \['a.csv', 'b.csv'\]")):
        path.write_text(text + "\n")
        with pytest.raises(ValueError, match=rf"run.yaml: {message}"):
            ClassifierRunConfig.load_yaml(str(path))
    path.write_text("lora_targets: [query, key]\nrun_name: 2024\n")
    assert ClassifierRunConfig.load_yaml(str(path)) == {"lora_targets": "query,key", "run_name": "2024"}
    with pytest.raises(ValueError, match="something must be left to train on"):
        ClassifierRunConfig(validation_fraction=0.5, test_fraction=0.5)
    path.write_text("epochs: 7\nlearning_rat: 0.1\n")
    with pytest.raises(SystemExit):
        ClassifierRunConfig.from_args(["--config", str(path)])
    with pytest.raises(ValueError, match=r"run.yaml: unknown field\(s\) learning_rat"):
        ClassifierRunConfig.load_yaml(str(path))
    with pytest.raises(ValueError, match="field 'mixed_precision'"):
        ClassifierRunConfig(mixed_precision="fp8")


def test_default_run_name_is_stable_so_reruns_resume():
    a, b = ClassifierRunConfig(), ClassifierRunConfig()
    assert a.resolved_output_dir() == b.resolved_output_dir() == os.path.join("runs", "cls-bbc_news-minilm-l6")
    assert a.resolved_log_dir() == os.path.join("tensorboard_logs", "cls-bbc_news-minilm-l6")


def test_tfds_dataset_flag_uses_its_splits(tmp_path, tiny_model_dir, tfds_data_dir):
    summary = _fit(_config(tmp_path, tiny_model_dir, dataset="tfds:tiny_tfbert_reviews",
                           tfds_data_dir=tfds_data_dir, epochs=1, batch_size=2))
    assert summary["data"] == "tfds:tiny_tfbert_reviews"
    assert summary["num_examples"] == {"train": 3, "validation": 2, "test": 1}
    assert summary["label_vocab"] == ["neg", "pos"] and "accuracy" in summary["test"]


@pytest.mark.slow
def test_efficiency_flags_train_together(tmp_path, tiny_model_dir):
    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=4)
    summary = train_classifier(_config(
        tmp_path, tiny_model_dir, train_file=train, epochs=2, mixed_precision="mixed_bfloat16", jit_compile=True,
        gradient_accumulation_steps=2, layerwise_lr_decay=0.8, padding="max_length"))
    assert summary["optimizer_steps"] == 2 * summary["steps_per_epoch"] // 2
    from tfbert.tasks.classification import ClassificationData, ClassificationTask
    from tfbert.training.run_config import ClassifierRunConfig as Config
    from tfbert.training.runner import build_model, seed_everything

    config = Config(model=tiny_model_dir, jit_compile=True, max_seq_length=32)
    seed_everything(config)
    data = ClassificationData(None, None, None, ["neg", "pos"], "", label_vocab=[0, 1])
    assert build_model(config, ClassificationTask(), data, 10).jit_compile  # Keras drops XLA while op determinism is on
    assert np.isfinite(summary["validation"]["accuracy"])
    # the export of a bfloat16 model is a float32 graph that still gives the same labels
    from tfbert.serving import LocalPredictor

    rows = LocalPredictor(summary["saved_model"]).predict(["good film", "awful movie"])
    assert all(abs(sum(row["probabilities"]) - 1) < 1e-5 for row in rows)


@pytest.mark.slow
def test_a_resumed_run_keeps_the_best_epoch_of_before_the_interruption(tmp_path, tiny_model_dir):
    import hashlib

    from tfbert.training import runner

    train = write_sentiment_csv(tmp_path / "train.csv", 40, seed=4)
    # so small a learning rate that epoch 2 scores exactly what epoch 1 did: not an improvement
    config = _config(tmp_path, tiny_model_dir, train_file=train, learning_rate=1e-9)
    prepared = runner.prepare(config)
    with pytest.raises(Interrupt):
        runner.fit_and_evaluate(config, prepared, extra_callbacks=(stop_before_epoch(2),), write_exports=False)
    run = tmp_path / "run"
    record = json.loads((run / "backup" / "best_value.json").read_text())
    assert record["monitor"] == "val_accuracy" and record["epoch"] == 1
    best_after_epoch_1 = hashlib.sha256((run / "best.weights.h5").read_bytes()).hexdigest()

    # the same command after a label was added to the data: refused by name, not a Keras loading error
    original = (tmp_path / "train.csv").read_text(encoding="utf-8")
    (tmp_path / "train.csv").write_text(original + "so so film,meh\n" * 10, encoding="utf-8")
    from tfbert.config import ConfigError

    with pytest.raises(ConfigError, match=r"started with other settings \(contents of train_file: 'sha256:.*\); to "
                                          r"resume it, restore the contents train_file had; or pass another"):
        runner.fit_and_evaluate(config, runner.prepare(config), write_exports=False)
    with pytest.raises(ConfigError, match=r"\(contents of train_file: .*, learning_rate: 1e-09 -> 0.5\); to resume it, "
                                          r"restore the contents train_file had and run the command it started with"):
        runner.fit_and_evaluate(dataclasses.replace(config, learning_rate=0.5), runner.prepare(config),
                                write_exports=False)
    # a backup without the data's hash (written before tfbert kept one) is still checked by its variables
    import yaml

    saved = yaml.safe_load((run / "backup" / "run_config.yaml").read_text())
    del saved["contents of train_file"]
    (run / "backup" / "run_config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"backup: holds an interrupted run whose model had other variables "
                                          r"\(classifier/bias: \[2\] -> \[3\]; classifier/kernel: \[32, 2\] -> "
                                          r"\[32, 3\]\): the data changed"):
        runner.fit_and_evaluate(config, runner.prepare(config), write_exports=False)
    (tmp_path / "train.csv").write_text(original, encoding="utf-8")

    summary = runner.fit_and_evaluate(config, prepared, write_exports=False)
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_run"] == 1
    # a fresh ModelCheckpoint would have taken epoch 2 as the best (its optimizer state differs)
    assert hashlib.sha256((run / "best.weights.h5").read_bytes()).hexdigest() == best_after_epoch_1
    assert summary["validation"]["accuracy"] == pytest.approx(record["best"])
    assert not (run / "backup").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task, stops, settings", [
    # (where the run is stopped, where it resumes) for each interrupted run, compared with one uninterrupted run
    ("classification", [((2, 0), (1, 0)),
                        ((2, 5), (1, 3))], {}),  # within epoch 2: from its step backup, resumed with backups off
    ("mlm", [((1, 5), (0, 3))], {}),  # within the first epoch: no epoch backup yet
    ("classification", [((2, 5), (1, 3))], {"gradient_accumulation_steps": 2}),  # between two updates
    ("classification", [((2, 4), (1, 4))], {"steps_per_execution": 2}),  # the first call past 3 batches
], ids=["classification-after-epoch-1-and-within-epoch-2", "mlm-within-epoch-1",
        "classification-within-an-accumulated-update", "classification-steps-per-execution"])
def test_a_resumed_run_trains_exactly_as_the_uninterrupted_run(tmp_path, tiny_vocab_file, task, stops, settings,
                                                               capsys):
    """Shuffled batches, dropout masks and (MLM) the masked tokens: the batches after the resume see what
    the uninterrupted run saw, so the trained weights are the same bit for bit (the runner is the same
    for every task; masked LM draws its masks in the input pipeline). Killed within an epoch, the run
    resumes from its last backup within the epoch (every 3 batches here), and the epoch's logged loss is
    the whole epoch's."""
    import dataclasses
    import random

    import keras

    from conftest import tiny_config
    from tfbert import BertBackbone
    from tfbert.text import BertTokenizer
    from tfbert.training import runner

    model_dir = tmp_path / "tiny-with-dropout"
    keras.utils.set_random_seed(0)
    BertBackbone(tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)).save_pretrained(model_dir)
    BertTokenizer(tiny_vocab_file).save_pretrained(model_dir)
    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=4)
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(["the movie was good .", "hello world !", "a film , not bad",
                                                         "this is very great"]) for _ in range(3))
                                   for _ in range(60)) + "\n", encoding="utf-8")
    corpus = str(corpus)

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            losses[-1][epoch] = logs["loss"]

        def on_train_end(self, logs=None):
            weights.append([w.copy() for w in self.model.get_weights()])

    weights, losses = [], []
    names = ["uninterrupted"] + [f"interrupted{i}" for i in range(len(stops))]
    for name, (stop, resumed_at) in zip(names, [(None, None)] + stops):
        losses.append({})
        if task == "mlm":
            config = MaskedLMRunConfig(model=str(model_dir), train_file=corpus, epochs=2, batch_size=4,
                                       max_seq_length=32, learning_rate=1e-3, output_dir=str(tmp_path / name),
                                       log_dir=str(tmp_path / f"tb-{name}"), backup_every_n_steps=3, **settings)
        else:
            config = _config(tmp_path, str(model_dir), train_file=train, epochs=2, output_dir=str(tmp_path / name),
                             log_dir=str(tmp_path / f"tb-{name}"), metric_for_best="val_loss", backup_every_n_steps=3,
                             **settings)
        extra = (Keep(), stop_before_epoch(*stop)) if stop else (Keep(),)
        try:
            summary = runner.fit_and_evaluate(config, runner.prepare(config), write_exports=False,
                                              extra_callbacks=extra)
            assert summary["steps_per_epoch"] > 6 and stop is None  # (room for two backups within an epoch)
        except Interrupt:
            backup = tmp_path / name / "backup"
            assert (backup / "step.weights.h5").exists() == bool(resumed_at[1])
            assert not [f for f in os.listdir(backup) if f.startswith(".")]  # backups are written whole
            if stop == (2, 5) and not settings:  # (backups taken within an epoch are restored all the same)
                config = dataclasses.replace(config, backup_every_n_steps=0)
            summary = runner.fit_and_evaluate(config, runner.prepare(config), write_exports=False,
                                              extra_callbacks=(Keep(),))
            assert (summary["resumed_from_epoch"], summary["resumed_from_batch"]) == resumed_at
            said = f"backup: {resumed_at[0]} epoch(s)" + (f" and {resumed_at[1]} of the " if resumed_at[1] else "")
            assert said in capsys.readouterr().out
            assert summary["epochs_run"] == 2 - resumed_at[0]
            assert summary["optimizer_steps"] == 2 * summary["steps_per_epoch"] // settings.get(
                "gradient_accumulation_steps", 1)
            assert not (tmp_path / name / "backup").exists()
    assert len(weights) == len(names) and len(weights[0]) > 0
    for resumed, resumed_losses in zip(weights[1:], losses[1:]):
        assert len(resumed) == len(weights[0])
        for a, b in zip(weights[0], resumed):
            np.testing.assert_array_equal(a, b)
        assert resumed_losses == {epoch: losses[0][epoch] for epoch in resumed_losses}  # the same figures, to the bit
    import tensorflow as tf

    # TensorBoard: the points of the uninterrupted run, none twice (the killed run's points past its backup
    # were logged again after the resume); examples/s is a time, not compared
    for run in ("train", "validation"):
        logged = []
        for name in names:
            events = _scalars(str(tmp_path / f"tb-{name}" / run))
            logged.append(sorted((tag, e.step, float(tf.make_ndarray(e.tensor_proto)))
                                 for tag in events.Tags()["tensors"] if "per_second" not in tag
                                 for e in events.Tensors(tag)))
        assert all(other == logged[0] for other in logged[1:]), run


def test_training_a_finished_run_again_is_said_with_what_stays(tmp_path, capsys):
    """The same command after a run finished trains it again (a new SavedModel version to serve): not
    silently, since a command repeated by mistake replaces the run's metrics.json and model files."""
    from tfbert.training.runner import say_finished_run_is_trained_again

    run = tmp_path / "run"
    say_finished_run_is_trained_again(str(run))  # a new run folder (or an interrupted one): nothing to say
    (run / "saved_model" / "1").mkdir(parents=True)
    say_finished_run_is_trained_again(str(run))
    assert capsys.readouterr().out == ""
    (run / "metrics.json").write_text("{}")
    (run / "saved_model" / "2").mkdir()
    say_finished_run_is_trained_again(str(run))
    said = capsys.readouterr().out
    assert said.startswith(f"{run} holds a run that finished on ") and ": training again from the start; its " \
        "metrics.json and model files are replaced, its SavedModel versions (1, 2) stay and this run's is the " \
        "next (--output_dir or --run_name for a run folder of its own)\n" in said


def test_outputs_are_written_whole_or_not_at_all(tmp_path):
    from tfbert import fileio

    target = tmp_path / "metrics.json"
    fileio.write_json(str(target), {"a": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_write(str(target)) as f:
            f.write('{"a": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}  # the previous file, untouched
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary left behind


def test_early_stopping_stops_once_nothing_improves(tmp_path, tiny_model_dir):
    train = write_sentiment_csv(tmp_path / "train.csv", 60, seed=6)
    # nothing improves after the first epoch at this learning rate
    summary = _fit(_config(tmp_path, tiny_model_dir, train_file=train, epochs=6, learning_rate=1e-9,
                           early_stopping_patience=1))
    assert summary["epochs_run"] == 2 and summary["optimizer_steps"] == 2 * summary["steps_per_epoch"]


def test_every_split_is_checked_before_training(tmp_path):
    from tfbert.tasks.classification import ClassificationTask

    train = write_sentiment_csv(tmp_path / "train.csv", 20, seed=1)
    (tmp_path / "test.csv").write_text("text,label\ngood,pos\nodd,meh\n", encoding="utf-8")
    (tmp_path / "one.csv").write_text("text,label\ngood,pos\nfine,pos\n", encoding="utf-8")
    (tmp_path / "train.tsv").mkdir()
    task = ClassificationTask()
    with pytest.raises(DataError, match=r"test.csv:3: label 'meh' is not in the label vocabulary"):
        task.load_data(ClassifierRunConfig(train_file=train, test_file=str(tmp_path / "test.csv")))
    with pytest.raises(DataError, match=r"one.csv: the training data has a single label \('pos'\)"):
        task.load_data(ClassifierRunConfig(train_file=str(tmp_path / "one.csv"), validation_file=train))
    with pytest.raises(DataError, match=r"train.tsv: is a directory with no label sub-folders"):
        task.load_data(ClassifierRunConfig(train_file=str(tmp_path / "train.tsv")))


def test_has_header_flag_reads_a_header_of_other_names(tmp_path):
    # a header naming no column the run reads, with the columns given by index: the first row was read
    # as data (trained as a class 'sentiment'); --has_header says it is a header, --has_header false
    # that a first row naming columns is data
    from tfbert.tasks.classification import ClassificationTask
    from tfbert.tasks.masked_language_modeling import MaskedLanguageModelingTask
    from tfbert.training.run_config import MaskedLMRunConfig

    rows = [("a fine film", "pos"), ("a dull film", "neg")] * 6
    path = tmp_path / "reviews.csv"
    path.write_text("review,sentiment\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    args = ["--train_file", str(path), "--text_column", "0", "--label_column", "1", "--validation_fraction", "0"]
    task = ClassificationTask()
    detected = task.load_data(ClassifierRunConfig.from_args(args))
    assert detected.label_vocab.labels == ["neg", "pos", "sentiment"]
    config = ClassifierRunConfig.from_args(args + ["--has_header"])
    assert config.has_header is True
    assert task.load_data(config).label_vocab.labels == ["neg", "pos"]
    (tmp_path / "named.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    data = task.load_data(ClassifierRunConfig.from_args(["--train_file", str(tmp_path / "named.csv"),
                                                         "--validation_fraction", "0", "--has_header", "false"]))
    assert data.label_vocab.labels == ["label", "neg", "pos"]
    # pretrain_mlm.py reads the same way: without the flag the header is a document of its own
    mlm_args = ["--train_file", str(path), "--text_column", "0", "--validation_fraction", "0"]
    texts = MaskedLanguageModelingTask().load_data(MaskedLMRunConfig.from_args(mlm_args)).train.texts
    assert texts[0] == "review" and len(texts) == 13
    texts = MaskedLanguageModelingTask().load_data(MaskedLMRunConfig.from_args(mlm_args + ["--has_header"])).train.texts
    assert texts[0] == "a fine film" and len(texts) == 12


def test_auto_unsets_an_optional_flag_given_by_config(tmp_path, capsys):
    # a previous run's config.yaml records has_header as given, version_2_with_negative as given or detected;
    # `--<flag> auto` returns to detection over it, and a wrong word names what the flag takes
    from tfbert.config import ConfigError
    from tfbert.training.run_config import QARunConfig, build_parser
    from tfbert.training.runner import prepare

    (tmp_path / "config.yaml").write_text("has_header: true\n", encoding="utf-8")
    config = ["--config", str(tmp_path / "config.yaml")]
    csv = ["--train_file", "train.csv"]
    assert ClassifierRunConfig.from_args(config + csv).has_header is True
    assert ClassifierRunConfig.from_args(config + ["--has_header", "auto"]).has_header is None
    assert ClassifierRunConfig.from_args(config + csv + ["--has_header", "false"]).has_header is False
    (tmp_path / "qa.yaml").write_text("version_2_with_negative: false\n", encoding="utf-8")
    qa = QARunConfig.from_args(["--config", str(tmp_path / "qa.yaml"), "--version_2_with_negative", "AUTO"])
    assert qa.version_2_with_negative is None
    with pytest.raises(SystemExit):
        ClassifierRunConfig.from_args(["--has_header", "maybe"])
    assert "expected true/false/auto, found 'maybe'" in capsys.readouterr().err
    # given where it changes nothing (no CSV/TSV file; .txt is plain text for pretrain_mlm.py): the run is
    # refused before its data is read (the config itself loads: a finished run's config.yaml that holds it
    # still exports)
    for cls, files, reads in ((ClassifierRunConfig, [], "the built-in data"),
                              (ClassifierRunConfig, ["--train_file", "train.jsonl"], "train.jsonl"),
                              (ClassifierRunConfig, ["--dataset", "tfds:imdb_reviews"], "--dataset tfds:imdb_reviews"),
                              (MaskedLMRunConfig, ["--train_file", "corpus.txt"], "corpus.txt")):
        run = cls.from_args(config + files + ["--output_dir", str(tmp_path / "run")])
        with pytest.raises(ConfigError, match=re.escape("field 'has_header' must be unset (`auto`): it is for "
                                                        "CSV/TSV files")) as error:
            prepare(run)
        assert f"and the run reads {reads}" in str(error.value)
    for cls, files in ((ClassifierRunConfig, ["--train_file", "a.jsonl", "--test_file", "b.TXT"]),
                       (MaskedLMRunConfig, ["--train_file", "corpus.tsv"])):
        with pytest.raises(DataError, match="not found|no such file"):  # past the check, to the reading
            prepare(cls.from_args(config + files))
    help_text = build_parser(ClassifierRunConfig).format_help()
    assert "--has_header auto` unsets a value from --config" in " ".join(help_text.split())


@pytest.mark.parametrize("cls, flags, refused", [
    # forgot --train_file: the run would train on the built-in data, with the files and columns unread
    (ClassifierRunConfig, ["--test_file", "t.csv", "--text_column", "body", "--skip_bad_rows", "true"],
     {"test_file": "it is read with --train_file, and the run reads the built-in data (bbc_news) with its own splits",
      "text_column": "it says how to read your own data (--train_file), and the run reads the built-in data",
      "skip_bad_rows": "it says how to read your own data"}),
    (ClassifierRunConfig, ["--dataset", "tfds:imdb_reviews", "--validation_file", "v.csv"],
     {"validation_file": "the run reads --dataset tfds:imdb_reviews with its own splits"}),
    (ClassifierRunConfig, ["--train_file", "a.csv", "--test_fraction", "0.2", "--threshold", "0.3",
                           "--label_delimiter", ";", "--tfds_data_dir", "tfds"],
     {"test_fraction": "it holds out part of the built-in data: with --train_file or --dataset a test split comes "
                       "from --test_file",
      "threshold": "in multi-label runs (--multi_label), and this run is classification",
      "label_delimiter": "it separates a text's labels in multi-label runs",
      "tfds_data_dir": "the run reads none (no --dataset)"}),
    (ClassifierRunConfig, ["--train_file", "a.csv", "--validation_file", "v.csv", "--validation_fraction", "0.3"],
     {"validation_fraction": "validation_file is the validation data"}),
    (TokenClassifierRunConfig, ["--validation_fraction", "0.2", "--tag_column", "2", "--test_fraction", "0.3"],
     {"validation_fraction": "the built-in data (wnut17) has a validation split",
      "tag_column": "the run reads the built-in data (wnut17)",
      "test_fraction": "WNUT-17 ships its own test split, and other data has one only from --test_file"}),
    (TokenClassifierRunConfig, ["--dataset", "tfds:conll2003", "--token_column", "1"],
     {"token_column": "it is for data files, and --dataset tfds:conll2003 is read by its features"}),
    (QARunConfig, ["--train_file", "a.json", "--test_fraction", "0.2"], {"test_fraction": "built-in data"}),
    (MaskedLMRunConfig, ["--text_column", "body", "--test_fraction", "0.1"],
     {"text_column": "the run reads the built-in data (bbc_news)", "test_fraction": "a test split comes only from"}),
], ids=["cls-no-train-file", "cls-dataset", "cls-train-file", "cls-validation-file", "ner-default", "ner-dataset",
        "qa-train-file", "mlm-default"])
def test_a_field_the_run_would_not_read_is_refused_before_the_data(tmp_path, cls, flags, refused):
    """A flag given where the run reads nothing of it (a test file without --train_file trained on the built-in
    data, silently) is refused, each named with why, before any data is read; the config itself loads (a
    finished run's config.yaml that holds one still exports)."""
    from tfbert.config import ConfigError
    from tfbert.training.runner import prepare

    config = cls.from_args(flags + ["--output_dir", str(tmp_path / "run")])
    with pytest.raises(ConfigError) as error:
        prepare(config)
    message = str(error.value)
    assert message.count("has no effect here") == len(refused), message
    for name, why in refused.items():
        assert re.search(rf"field '{name}' has no effect here \([^;]*{re.escape(why)}[^;]*\): leave it out, found "
                         rf"{re.escape(repr(getattr(config, name)))}", message), (name, message)


def test_fields_are_refused_only_where_the_run_does_not_read_them(tmp_path):
    # the same fields where they are read: past the check, to the reading of the (missing) files
    from tfbert.training.runner import prepare

    for cls, flags in ((ClassifierRunConfig, ["--train_file", "a.csv", "--test_file", "t.csv", "--text_column",
                                              "body", "--multi_label", "--threshold", "0.3"]),
                       (TokenClassifierRunConfig, ["--train_file", "a.conll", "--tag_column", "2",
                                                   "--validation_fraction", "0.3"]),
                       (MaskedLMRunConfig, ["--train_file", "a.csv", "--validation_file", "v.csv", "--text_column",
                                            "body"])):
        with pytest.raises(DataError, match="not found|no such file"):
            prepare(cls.from_args(flags + ["--output_dir", str(tmp_path / "run")]))
    for cls, flags in ((ClassifierRunConfig, ["--train_file", "tfds:glue/sst2", "--tfds_data_dir", "tfds"]),
                       (QARunConfig, ["--test_fraction", "0.3", "--validation_fraction", "0.2"]),  # the built-in data's
                       (MaskedLMRunConfig, ["--validation_file", "v.txt", "--test_file", "t.txt"])):
        assert cls.from_args(flags).unused_fields() == {}, flags
    # test_fraction counts against validation_fraction only where it is read
    assert TokenClassifierRunConfig(train_file="a.conll", validation_fraction=0.95).validation_fraction == 0.95
    with pytest.raises(ValueError, match="'validation_fraction' must be < 1 - test_fraction"):
        ClassifierRunConfig(validation_fraction=0.95)


def test_no_validation_split_trains_on_everything_and_keeps_the_last_epoch(tmp_path, tiny_model_dir, capsys):
    train = write_sentiment_csv(tmp_path / "train.csv", 40, seed=2)
    with pytest.raises(ValueError, match="early_stopping_patience' must be unset when there is no validation data"):
        _config(tmp_path, tiny_model_dir, train_file=train, validation_fraction=0, early_stopping_patience=1)
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.old").write_text("an earlier run")
    from tfbert.training import runner

    config = _config(tmp_path, tiny_model_dir, train_file=train, validation_fraction=0)
    summary = runner.fit_and_evaluate(config, runner.prepare(config))  # with every output: none is evaluated
    assert summary["num_examples"] == {"train": 40, "validation": 0, "test": 0}
    assert summary["best_metric"] is None and summary["epochs_run"] == 2 and "validation" not in summary
    assert not (tmp_path / "run" / "best.weights.h5").exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"] == 2
    assert (tmp_path / "run" / "model.keras").is_file() and (tmp_path / "run" / "labels.txt").is_file()
    assert [p.name for p in (tmp_path / "run" / "saved_model").iterdir()] == ["1"]
    # the earlier run's TensorBoard files were moved aside, not mixed with this run's curves
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("tb.old-")]
    assert len(moved) == 1 and (moved[0] / "events.out.tfevents.old").exists()
    assert "held an earlier run's logs" in capsys.readouterr().out


def test_a_run_stopped_after_training_resumes_at_its_outputs(tmp_path, tiny_model_dir, monkeypatch, capsys):
    # killed after the last epoch (in the test evaluation or the export): the backup is still there, and
    # the same command evaluates and writes the outputs without training again
    from tfbert.training import runner

    train = write_sentiment_csv(tmp_path / "train.csv", 48, seed=3)
    config = _config(tmp_path, tiny_model_dir, train_file=train)
    finish_run = runner.finish_run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "finish_run", killed)
    with pytest.raises(KeyboardInterrupt):
        _fit(config)
    backup = tmp_path / "run" / "backup"
    assert json.loads((backup / "training_done.json").read_text()) == {"epochs": 2}
    monkeypatch.setattr(runner, "finish_run", finish_run)
    resumed = _fit(config)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 0
    assert "training had finished (2 epoch(s)); evaluating and writing the outputs" in capsys.readouterr().out
    assert not backup.exists() and (tmp_path / "run" / "metrics.json").exists()
    straight = _fit(_config(tmp_path / "straight", tiny_model_dir, train_file=train))
    assert straight["epochs_run"] == 2 and resumed["validation"] == straight["validation"]


def test_a_run_stopped_after_its_export_keeps_one_version_and_a_bad_backup_is_refused(tmp_path, tiny_model_dir,
                                                                                       monkeypatch, capsys, caplog):
    """Killed after its export but before its backup was removed, the rerun keeps the version it wrote (a
    copy under the next number would make a server switch to it); a second run on a folder in use, a
    backup with an epoch count but no weights (it would resume onto the untrained model) and the export
    of a run that did not finish (no metrics.json: labels.txt may be missing too) are refused; the export
    of a finished run says that a later one there was stopped."""
    from tfbert import fileio
    from tfbert.config import ConfigError
    from tfbert.export import ExportError
    from tfbert.training import runner

    train = write_sentiment_csv(tmp_path / "train.csv", 48, seed=3)
    config = _config(tmp_path, tiny_model_dir, train_file=train, epochs=1)
    run = tmp_path / "run"
    remove_dir = fileio.remove_dir

    def killed(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "remove_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.fit_and_evaluate(config, runner.prepare(config))
    assert os.listdir(run / "saved_model") == ["1"] and (run / "backup" / "export_version.json").exists()
    monkeypatch.setattr(fileio, "remove_dir", remove_dir)
    capsys.readouterr()
    summary = runner.fit_and_evaluate(config, runner.prepare(config))
    assert "SavedModel for TF Serving: " + str(run / "saved_model" / "1") + " (written before the run was stopped)" \
        in capsys.readouterr().out
    assert os.listdir(run / "saved_model") == ["1"] and summary["saved_model"] == str(run / "saved_model" / "1")
    assert not (run / "backup").exists()

    with fileio.lock_dir(str(run)):  # another run holds the folder
        with pytest.raises(fileio.DirectoryInUse, match=r"in use by another process \(pid\d+@.*\); a second "
                                                        "training run there would mix its files"):
            runner.fit_and_evaluate(config, runner.prepare(config))
        with monkeypatch.context() as patched:  # the command: refused before it reads the data, builds the model
            patched.setattr(runner, "prepare", lambda config: pytest.fail("read the data of a run it then refused"))
            with pytest.raises(fileio.DirectoryInUse, match=r"in use by another process"):
                runner.train(config)
    (run / "backup").mkdir()
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    with pytest.raises(ConfigError, match=r"backup: an incomplete backup \(no latest.weights.h5\): it cannot be "
                                          r"resumed; delete .*backup to train from the start"):
        runner.fit_and_evaluate(config, runner.prepare(config))
    # the export of the finished run says that a later one there was stopped (it exports the finished one);
    # in a copied run folder too (cp -r, scp: the files get new times, in any order), whose times were taken
    # for a later run stopped while writing its outputs
    finished_at = os.path.getmtime(run / "metrics.json")
    os.utime(run / "config.yaml", (finished_at + 5, finished_at + 5))
    caplog.set_level(logging.WARNING, logger="tfbert")
    assert os.path.isdir(runner.export_run(str(run), str(tmp_path / "serving")))
    assert f"{run} holds an interrupted run besides the finished one: this exports the run that finished on " \
        in caplog.text
    # a length given to the export is checked as given (0 was taken for "not given"), not blamed on config.yaml
    for length, expected in ((0, "a positive integer"), (2, "at least 3")):
        with pytest.raises(ExportError, match=rf"^--max_seq_length: field 'max_seq_length' must be {expected}"):
            runner.export_run(str(run), str(tmp_path / "serving"), max_seq_length=length)
    # a later run stopped while writing its outputs (config.yaml first, metrics.json last) removed metrics.json
    # before its first one: not exported as a mix of two runs
    shutil.rmtree(run / "backup")

    def stopped_while_writing(model, prepared, config, *args):
        config.save_yaml(os.path.join(config.resolved_output_dir(), "config.yaml"))
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "write_outputs", stopped_while_writing)
    with pytest.raises(KeyboardInterrupt):
        runner.fit_and_evaluate(config, runner.prepare(config))
    monkeypatch.undo()
    with pytest.raises(ExportError, match=r"not a finished training run \(missing .*metrics.json\); if it was "
                                          "stopped, run its training command again to finish it"):
        runner.export_run(str(run), str(tmp_path / "serving"))
    with pytest.raises(ExportError, match=re.escape(f"{tmp_path / 'nope'}: no such run folder")):
        runner.export_run(str(tmp_path / "nope"), str(tmp_path / "serving"))
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text("{}")
    with pytest.raises(ExportError, match=re.escape(f"{tmp_path / 'search'}: a search's folder, not a training run: "
                                                    f"its best model is the run {tmp_path / 'search' / 'best_model'}")):
        runner.export_run(str(tmp_path / "search"), str(tmp_path / "serving"))


def test_a_run_killed_while_writing_its_first_epoch_backup_resumes(tmp_path, tiny_model_dir, capsys):
    """Keras writes an epoch backup's weights in place, then its epoch count: killed in between at the first
    epoch, the run left weights (here half a file) without a count, and every rerun was refused as an
    incomplete backup (a search recorded the trial as failed). Now the weights are discarded and the run
    resumes from its step backup within the epoch."""
    from tfbert.training import runner

    train = write_sentiment_csv(tmp_path / "train.csv", 48, seed=3)
    config = _config(tmp_path, tiny_model_dir, train_file=train, epochs=1, backup_every_n_steps=2)
    with pytest.raises(Interrupt):
        runner.fit_and_evaluate(config, runner.prepare(config), extra_callbacks=(stop_before_epoch(1, batch=5),),
                                write_exports=False)
    backup = tmp_path / "run" / "backup"
    assert (backup / "step.weights.h5").exists() and not (backup / "training_metadata.json").exists()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 88)  # cut short
    capsys.readouterr()
    summary = runner.fit_and_evaluate(config, runner.prepare(config), write_exports=False)
    out = capsys.readouterr().out
    assert f"{backup}: weights without an epoch count, as a run stopped while writing its first epoch's backup " \
        "leaves them: discarded" in out
    assert (summary["resumed_from_epoch"], summary["resumed_from_batch"]) == (0, 4)
    assert summary["epochs_run"] == 1 and not backup.exists()


def test_an_epoch_count_cut_short_is_written_again_for_the_weights_beside_it(tmp_path, capsys):
    """Keras opens training_metadata.json after the epoch's weights are written: a count cut short by a kill
    sits beside whole weights of one epoch more than the previous count (.bkp), or of epoch 1."""
    from tfbert.config import ConfigError
    from tfbert.training.runner import check_backup_complete

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"epoch 3")
    (backup / "latest.weights.h5.bkp").write_bytes(b"epoch 2")
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2, "batch": 0}')
    (backup / "training_metadata.json").write_text("")  # killed as Keras wrote it
    check_backup_complete(str(backup))
    assert (backup / "latest.weights.h5").read_bytes() == b"epoch 3"  # the finished epoch is kept
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 3, "batch": 0}
    assert "cut short when the run was stopped, after that epoch's weights were written: written again (3 epoch" \
        in capsys.readouterr().out
    # weights without a count beside a previous count: deleted by hand, not a state Keras leaves
    (backup / "training_metadata.json").unlink()
    with pytest.raises(ConfigError, match=r"an incomplete backup \(no training_metadata.json\)"):
        check_backup_complete(str(backup))
    # at the first epoch (no previous count)
    for name in ("latest.weights.h5.bkp", "training_metadata.json.bkp"):
        (backup / name).unlink()
    (backup / "training_metadata.json").write_text('{"epo')
    check_backup_complete(str(backup))
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 1, "batch": 0}
    # a count (whole or not) without weights is refused, as before
    (backup / "latest.weights.h5").unlink()
    with pytest.raises(ConfigError, match=r"an incomplete backup \(no latest.weights.h5\)"):
        check_backup_complete(str(backup))


def test_inputs_the_model_cannot_take_are_refused_before_training(tmp_path, tiny_model_dir):
    from tfbert.config import ConfigError

    train = write_sentiment_csv(tmp_path / "train.csv", 24, seed=4)
    with pytest.raises(ConfigError, match=r"max_seq_length: 128 exceeds the model's max_position_embeddings "
                                          r"\(64, .*tiny-bert\); pass --max_seq_length 64 or less"):
        _fit(_config(tmp_path, tiny_model_dir, train_file=train, max_seq_length=128))
    with open(os.path.join(tiny_model_dir, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("".join(f"extra{i}\n" for i in range(7)))  # ids past the embeddings
    with pytest.raises(ConfigError, match=r"tiny-bert: the tokenizer's vocabulary \(vocab.txt\) has \d+ tokens, "
                                          r"the model's embeddings \d+ \(config.json vocab_size\)"):
        _fit(_config(tmp_path, tiny_model_dir, train_file=train))
    assert not (tmp_path / "run" / "backup").exists()  # nothing trained


@pytest.mark.parametrize("field", ["output_dir", "log_dir"])
def test_an_output_path_that_is_a_file_is_refused(tmp_path, field):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(ValueError, match=f"field '{field}' must be a directory .*not an existing file, found "
                                         f"'{tmp_path / 'afile'}'"):
        ClassifierRunConfig(**{field: str(tmp_path / "afile")})


def test_help_keeps_the_examples_lines_and_lists_each_choice_once():
    from tfbert.training.run_config import build_parser

    text = build_parser(ClassifierRunConfig, description="Fine-tune.\n\n    python a.py\n    python a.py --x 1\n")
    help_text = text.format_help()
    assert "\n    python a.py\n    python a.py --x 1\n" in help_text  # not one reflowed line
    assert "--problem_type {single_label_classification,multi_label_classification,regression,classification," \
           "multi_label}" in help_text


def test_every_flag_of_every_pipeline_says_what_it_does():
    # --dropout, --seed, --padding, ... said "default: None" and nothing else
    from tfbert.training.run_config import MaskedLMRunConfig, QARunConfig, TokenClassifierRunConfig, build_parser
    from tfbert.tuning import TuneRunConfig

    for cls in (ClassifierRunConfig, TokenClassifierRunConfig, QARunConfig, MaskedLMRunConfig, TuneRunConfig):
        for action in build_parser(cls)._actions:
            assert action.help and not action.help.startswith("default:"), (cls.__name__, action.dest)
            assert "(default: None)" not in action.help, (cls.__name__, action.dest)


def test_a_config_for_anywhere_names_its_inputs_by_absolute_paths(tmp_path, monkeypatch):
    # a search's best_hparams.yaml kept "train.csv" as typed: its printed command failed from another folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.csv").write_text("text,label\n", encoding="utf-8")
    (tmp_path / "model").mkdir()
    config = ClassifierRunConfig(model="model", train_file="train.csv", test_file="missing.csv")
    moved = config.with_absolute_paths()
    assert (moved.model, moved.train_file) == (str(tmp_path / "model"), str(tmp_path / "train.csv"))
    assert moved.test_file == "missing.csv" and ClassifierRunConfig().with_absolute_paths().model == "minilm-l6"
    assert config.train_file == "train.csv"  # (a copy)


def test_problem_type_as_transformers_names_it_and_old_task_field(tmp_path, capsys):
    assert ClassifierRunConfig().problem_type == "single_label_classification"
    assert ClassifierRunConfig(problem_type="regression").task == "regression"
    assert ClassifierRunConfig(multi_label=True).problem_type == "multi_label_classification"
    assert ClassifierRunConfig.from_args(["--problem_type", "multi_label"]).problem_type == "multi_label_classification"
    old = tmp_path / "config.yaml"  # written before the rename
    old.write_text("task: multi_label\nlearning_rate: 3e-5\n", encoding="utf-8")
    config = ClassifierRunConfig.from_args(["--config", str(old)])
    assert config.problem_type == "multi_label_classification" and config.task == "multi_label"
    assert f"{old}: field 'task: multi_label' is now 'problem_type: multi_label_classification'" in \
        capsys.readouterr().err
    assert "task" not in config.to_dict()
    old.write_text("task: ranking\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        ClassifierRunConfig.from_args(["--config", str(old)])
    assert "field 'task' (now 'problem_type') must be one of classification, multi_label, regression" in \
        capsys.readouterr().err


def test_training_skips_padding_where_shapes_may_change_and_the_loss_ignores_padding(tiny_model_dir):
    from tfbert.tasks.classification import ClassificationData, ClassificationTask
    from tfbert.tasks.question_answering import QuestionAnsweringTask
    from tfbert.training.run_config import QARunConfig
    from tfbert.training.runner import build_model, skips_padding

    task = ClassificationTask()
    assert skips_padding(ClassifierRunConfig(), task)
    assert not skips_padding(ClassifierRunConfig(skip_padding=False), task)
    assert not skips_padding(ClassifierRunConfig(strategy="tpu"), task)  # static shapes
    assert not skips_padding(ClassifierRunConfig(static_shapes=True), task)
    assert not skips_padding(ClassifierRunConfig(jit_compile=True), task)
    assert not skips_padding(QARunConfig(), QuestionAnsweringTask())  # its loss reads padded positions
    data = ClassificationData(None, None, None, ["neg", "pos"], "", label_vocab=[0, 1])
    tiny = dict(model=tiny_model_dir, max_seq_length=32)
    assert build_model(ClassifierRunConfig(**tiny), task, data, 10).backbone.skip_padding
    assert not build_model(ClassifierRunConfig(**tiny, skip_padding=False), task, data, 10).backbone.skip_padding


def test_batching_follows_the_strategy_and_the_task():
    plain = ClassifierRunConfig(batch_size=16, max_seq_length=64, seed=5)
    assert plain.batching(training=True) == {"batch_size": 16, "max_seq_length": 64, "shuffle": True, "seed": 5,
                                             "static_shapes": False, "padding": "bucket", "drop_remainder": False}
    assert plain.batching(training=False) == {**plain.batching(training=True), "shuffle": False}
    # a task whose predictions map back by position keeps the order of its evaluation examples
    assert plain.batching(training=False, keep_order=True)["padding"] == "batch"
    assert plain.batching(training=True, keep_order=True)["padding"] == "bucket"
    # whole training batches where a partial one would break a step: static shapes (TPU) and multi-worker
    tpu = ClassifierRunConfig(strategy="tpu")
    assert tpu.uses_static_shapes() and not tpu.static_shapes
    assert tpu.batching(training=True)["drop_remainder"] and not tpu.batching(training=False)["drop_remainder"]
    assert tpu.batching(training=False)["static_shapes"]
    workers = ClassifierRunConfig(strategy="multi_worker", worker_hosts="a:1,b:2", task_index=0)
    assert workers.batching(training=True)["drop_remainder"] and not workers.batching(training=True)["static_shapes"]
    with pytest.raises(ValueError, match="field 'steps_per_execution' must be a positive integer, found 0"):
        ClassifierRunConfig(steps_per_execution=0)
    # a dropout of 1 failed only when the model was built; a negative weight decay trained (weights grew)
    with pytest.raises(ValueError, match=r"field 'dropout' must be in \[0, 1\), found 1.0"):
        ClassifierRunConfig(dropout=1.0)
    with pytest.raises(ValueError, match="field 'weight_decay' must be >= 0, found -0.01"):
        ClassifierRunConfig(weight_decay=-0.01)
    # each of these ran before: -5 trained on all but the last 5 examples, [CLS][SEP] windows trained on
    # nothing, a negative patience stopped at once, '../x' wrote beside runs/, '' failed in the reader
    for fields, message in [
        (dict(max_train_examples=-5), "field 'max_train_examples' must be a non-negative integer (0 or unset: "
                                      "every training example), found -5"),
        (dict(max_seq_length=2), "field 'max_seq_length' must be at least 3 ([CLS], one token, [SEP]), found 2"),
        (dict(early_stopping_patience=-1), "field 'early_stopping_patience' must be a non-negative integer"),
        (dict(run_name="../elsewhere"), "field 'run_name' must be a folder under runs/ (no '..', not absolute"),
        (dict(run_name="/tmp/x"), "field 'run_name' must be a folder under runs/"),
        (dict(multi_label=True, label_delimiter=""), "field 'label_delimiter' must be a non-empty string"),
        (dict(multi_label=True, threshold=5.0), "field 'threshold' must be in (0, 1)"),
        (dict(lr_scheduler_type="constant"), "field 'lr_scheduler_type' must be linear | cosine | "
                                             "constant_with_warmup, found 'constant'"),
        (dict(max_grad_norm=-1.0), "field 'max_grad_norm' must be a number >= 0 (0: no clipping), found -1.0"),
        (dict(max_grad_norm=float("nan")), "field 'max_grad_norm' must be a number >= 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            ClassifierRunConfig(**fields)
    assert ClassifierRunConfig(max_seq_length=3, early_stopping_patience=0, label_delimiter="",
                               max_train_examples=0).max_seq_length == 3
    # a run name may name a group of runs (runs/<group>/<name>), and "" is no name (the default one)
    assert ClassifierRunConfig(run_name="sst2/lr-1e-4").resolved_output_dir() == os.path.join("runs", "sst2/lr-1e-4")
    assert ClassifierRunConfig(run_name="").resolved_run_name().startswith("cls-")


def test_a_run_too_short_for_one_update_is_refused_before_training(tmp_path, tiny_model_dir, capsys):
    """64 examples in batches of 8 for 3 epochs are 24 batches: accumulating 50 per update, the run
    trained nothing and exported its random head as a success."""
    from tfbert.config import ConfigError
    from tfbert.training.runner import check_updates

    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=4)
    config = _config(tmp_path, tiny_model_dir, train_file=train, epochs=3, validation_fraction=0.0,
                     gradient_accumulation_steps=50)
    with pytest.raises(ConfigError, match=re.escape(
            "gradient_accumulation_steps: 50 batches per optimizer update, but the run has 8 batches per epoch x 3 "
            "epochs = 24: it would make no update")):
        train_classifier(config)
    assert not os.path.exists(tmp_path / "run")  # refused before training: no empty run folder
    capsys.readouterr()
    assert check_updates(dataclasses.replace(config, gradient_accumulation_steps=5), 8) == 4
    assert "4 updates of 5 batches; the last 4 batches of the run fill no group" in capsys.readouterr().out
    assert check_updates(dataclasses.replace(config, gradient_accumulation_steps=23), 8) == 1
    assert "1 update of 23 batches; the last batch of the run fills no group and is not applied" \
        in capsys.readouterr().out
    assert check_updates(dataclasses.replace(config, gradient_accumulation_steps=4), 8) == 6
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_a_run_follows_its_learning_rate_schedule_and_clipping(tmp_path, tiny_model_dir):
    """`--lr_scheduler_type cosine --max_grad_norm 0`: the logged learning rates are transformers' cosine
    schedule over the run's updates, and the optimizer clips nothing."""
    import tensorflow as tf

    from tfbert.tasks.classification import ClassificationData, ClassificationTask
    from tfbert.training.runner import build_model

    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=4)
    summary = _fit(_config(tmp_path, tiny_model_dir, train_file=train, epochs=2, lr_scheduler_type="cosine",
                           warmup_ratio=0.25, validation_fraction=0.0, log_every_n_steps=1))
    updates = summary["optimizer_steps"]
    expected = transformers_learning_rates("cosine", 1e-3, updates, int(updates * 0.25))
    logged = {e.step: float(tf.make_ndarray(e.tensor_proto))
              for e in _scalars(str(tmp_path / "tb" / "train")).Tensors("learning_rate")}
    assert sorted(logged) == list(range(1, updates + 1))
    # the rate logged after update n is the one update n + 1 uses (0 after the last)
    assert [logged[n] for n in range(1, updates)] == pytest.approx(expected[1:], rel=1e-5)
    data = ClassificationData(None, None, None, ["neg", "pos"], "", label_vocab=[0, 1])
    config = ClassifierRunConfig(model=tiny_model_dir, max_seq_length=32, max_grad_norm=0.0)
    assert build_model(config, ClassificationTask(), data, 10).optimizer.global_clipnorm is None
    assert build_model(ClassifierRunConfig(model=tiny_model_dir, max_seq_length=32), ClassificationTask(), data,
                       10).optimizer.global_clipnorm == 1.0


@pytest.mark.slow
def test_steps_per_execution_takes_the_same_steps_and_still_logs(tmp_path, tiny_model_dir, capsys):
    train = write_sentiment_csv(tmp_path / "train.csv", 64, seed=4)
    runs = {k: _fit(_config(tmp_path / str(k), tiny_model_dir, train_file=train, epochs=2, steps_per_execution=k,
                            log_every_n_steps=2, validation_fraction=0.0, padding="batch", dropout=0.0,
                            backup_every_n_steps=4))
            for k in (1, 3)}
    # calls of 3 steps in epochs of 8: a call would end past a backup's point
    assert "backups at epoch ends only: --steps_per_execution 3 does not divide an epoch's 8 batches" in \
        capsys.readouterr().out
    assert runs[1]["optimizer_steps"] == runs[3]["optimizer_steps"] == 2 * runs[1]["steps_per_epoch"] == 16
    assert runs[3]["examples_per_second"] > 0
    steps = {k: [e.step for e in _scalars(str(tmp_path / str(k) / "tb" / "train")).Tensors("learning_rate")]
             for k in runs}
    assert steps[1] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert steps[3] == [3, 6, 8, 11, 14, 16]  # one log per call of 3 steps (the last of an epoch: 2)


def test_the_training_step_is_traced_once(tmp_path, tiny_model_dir):
    """The optimizer's slots and the metrics' variables exist before the first step, so tf.function
    traces the forward and backward graph once, not a second time after creating them (issue 12)."""
    from tfbert.training import runner

    config = _config(tmp_path, tiny_model_dir, train_file=write_sentiment_csv(tmp_path / "train.csv", 24, seed=5),
                     epochs=1, padding="max_length", gradient_accumulation_steps=2)
    prepared = runner.prepare(config)
    inputs = runner.start_run(config, prepared)
    model = inputs.model
    assert model.optimizer.built and model.optimizer.variables
    traces = []
    step = model.train_step

    def counted(data):
        traces.append(1)
        return step(data)
    model.train_step = counted
    summary = runner.fit_and_evaluate(config, prepared, inputs, write_exports=False)
    assert summary["epochs_run"] == 1 and len(traces) == 1
