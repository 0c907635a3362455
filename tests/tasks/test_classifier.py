"""BertClassifier: parity with transformers' BertForSequenceClassification both ways, head
loading rules, per-task losses, and the shared task-head checks."""

import json
import logging

import keras
import numpy as np
import pytest

from task_harness import TINY, make_inputs, perturbed_hf_checkpoint, run_standard_checks, tiny_config
from tfbert import BertBackbone
from tfbert.tasks import BertClassifier

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def hf_logits(model, inputs):
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in inputs.items()})
    return out.logits.numpy()


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """A random 3-label BertForSequenceClassification with every weight perturbed, as HF saves it."""
    directory = tmp_path_factory.mktemp("hf_cls")
    return directory, perturbed_hf_checkpoint(transformers.BertForSequenceClassification,
                                              transformers.BertConfig(**TINY, num_labels=3), directory)


def test_parity_with_transformers_both_ways(hf_checkpoint, tmp_path, caplog):
    directory, hf_model = hf_checkpoint
    inputs = make_inputs(batch=3, seq=9)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        classifier = BertClassifier.from_pretrained(directory, num_classes=3)
    assert "loaded the sequence-classification head" in caplog.text
    assert "unused" not in caplog.text  # classifier.* is consumed by the head, not reported
    ours = np.asarray(classifier(inputs, training=False))
    assert ours.shape == (3, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, hf_logits(hf_model, inputs), atol=1e-4, rtol=0)

    labels = ["negative", "neutral", "positive"]
    classifier.save_pretrained(tmp_path, label_names=labels)
    reloaded = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_labels == 3
    assert reloaded.config.id2label == dict(enumerate(labels))
    assert reloaded.config.label2id == {name: i for i, name in enumerate(labels)}
    assert reloaded.config.problem_type == "single_label_classification"
    np.testing.assert_allclose(hf_logits(reloaded, inputs), ours, atol=1e-4, rtol=0)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == ["BertForSequenceClassification"]


def test_a_named_head_is_lined_up_with_the_datas_labels(hf_checkpoint, tmp_path, caplog):
    directory, _ = hf_checkpoint
    inputs = make_inputs(batch=2, seq=7)
    named = tmp_path / "named"
    BertClassifier.from_pretrained(directory, num_classes=3).save_pretrained(named, label_names=["neg", "neu", "pos"])
    reference = np.asarray(BertClassifier.from_pretrained(named, num_classes=3)(inputs, training=False))

    with caplog.at_level(logging.INFO, logger="tfbert"):
        reordered = BertClassifier.from_pretrained(named, num_classes=3, label_names=["pos", "neg", "neu"])
    assert "reordered to the data's ['pos', 'neg', 'neu']" in caplog.text
    np.testing.assert_allclose(np.asarray(reordered(inputs, training=False)), reference[:, [2, 0, 1]], atol=1e-6)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tfbert"):
        other = BertClassifier.from_pretrained(named, num_classes=3, label_names=["a", "b", "c"])
    assert "trained for the classes ['neg', 'neu', 'pos'], but this model's are ['a', 'b', 'c']" in caplog.text
    np.testing.assert_allclose(np.asarray(other(inputs, training=False)), reference, atol=1e-6)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tfbert"):  # generic LABEL_i names: nothing to line up
        BertClassifier.from_pretrained(directory, num_classes=3, label_names=["a", "b", "c"])
    assert "reordered" not in caplog.text and "trained for the classes" not in caplog.text


def test_mismatched_head_is_ignored_with_warning(hf_checkpoint, caplog):
    directory, hf_model = hf_checkpoint
    with caplog.at_level(logging.INFO, logger="tfbert"):
        classifier = BertClassifier.from_pretrained(directory, num_classes=5, task="multi_label")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "(3, 32)" in warnings[0].getMessage() and "(5, 32)" in warnings[0].getMessage()
    # The encoder is the checkpoint's; the head is freshly initialised.
    pooler = hf_model.bert.pooler.dense.weight.detach().numpy()
    np.testing.assert_array_equal(classifier.backbone.pooler.kernel.numpy(), pooler.T)
    kernel = classifier.get_layer("classifier").kernel.numpy()
    assert kernel.shape == (32, 5) and np.abs(kernel).max() <= 2 * 0.02  # TruncatedNormal(0.02)


def test_checkpoint_without_head(tmp_path, caplog):
    backbone = BertBackbone(tiny_config())
    backbone.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        classifier = BertClassifier.from_pretrained(tmp_path, num_classes=2, hidden_dropout_prob=0.3)
    assert "no sequence-classification head" in caplog.text
    assert classifier.dropout == 0.3  # default follows hidden_dropout_prob, as in transformers
    np.testing.assert_array_equal(classifier.backbone.pooler.kernel.numpy(), backbone.pooler.kernel.numpy())
    with pytest.raises(TypeError, match="not_a_field"):
        BertClassifier.from_pretrained(tmp_path, num_classes=2, not_a_field=1)


def test_classifier_dropout_from_checkpoint_round_trips(tmp_path):
    classifier = BertClassifier(BertBackbone(tiny_config()), num_classes=1, task="regression", dropout=0.25)
    classifier.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["classifier_dropout"] == 0.25
    assert config["id2label"] == {"0": "LABEL_0"}
    reloaded = BertClassifier.from_pretrained(tmp_path, num_classes=1, task="regression")
    assert reloaded.dropout == 0.25
    inputs = make_inputs()
    np.testing.assert_allclose(reloaded(inputs), classifier(inputs), atol=1e-6)


@pytest.mark.parametrize("task, num_classes, loss_type", [
    ("classification", 4, keras.losses.SparseCategoricalCrossentropy),
    ("multi_label", 4, keras.losses.BinaryCrossentropy),
    ("regression", 1, keras.losses.MeanSquaredError),
])
def test_tasks_losses_and_shapes(task, num_classes, loss_type):
    backbone = BertBackbone(tiny_config())
    classifier = BertClassifier(backbone, num_classes=num_classes, task=task)
    loss = classifier.default_loss()
    assert isinstance(loss, loss_type)
    if task != "regression":
        assert loss.get_config()["from_logits"] is True
    logits = classifier(make_inputs(batch=3, seq=6))
    assert tuple(logits.shape) == (3, num_classes)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert classifier.dropout == backbone.config.hidden_dropout_prob
    # The head is built on the backbone's own Input tensors (as KerasHub heads are).
    assert all(classifier.input[name] is backbone.input[name] for name in backbone.input)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=3, task="regression"), "num_classes must be 1"),
    (dict(num_classes=1, task="classification"), "num_classes >= 2"),
    (dict(num_classes=0, task="multi_label"), "positive integer"),
    (dict(num_classes=2, task="ranking"), "task must be one of"),
    (dict(num_classes=2, dropout=1.0), "dropout"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BertClassifier(BertBackbone(tiny_config()), **kwargs)


def test_save_pretrained_checks_label_names(tmp_path):
    classifier = BertClassifier(BertBackbone(tiny_config()), num_classes=2)
    with pytest.raises(ValueError, match="3 label_names for a head with 2 outputs"):
        classifier.save_pretrained(tmp_path, label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        classifier.save_pretrained(tmp_path, label_names=["a", "a"])


def test_standard_checks_classification(tmp_path):
    run_standard_checks(
        build_model=lambda dtype=None: BertClassifier(BertBackbone(tiny_config(), dtype=dtype), num_classes=3),
        make_labels=lambda batch, seq: np.arange(batch) % 3,
        expected_output_shape=lambda batch, seq: (batch, 3),
        tmp_path=tmp_path)


@pytest.mark.parametrize("task, num_classes, make_labels", [
    ("multi_label", 4, lambda batch, seq: (np.arange(batch * 4).reshape(batch, 4) % 3 == 0).astype("float32")),
    ("regression", 1, lambda batch, seq: np.linspace(0.0, 1.0, batch).astype("float32")),
])
def test_standard_checks_other_tasks(tmp_path, task, num_classes, make_labels):
    # The XLA and mixed-precision paths do not depend on the task; the classification test covers them.
    run_standard_checks(
        build_model=lambda dtype=None: BertClassifier(BertBackbone(tiny_config(), dtype=dtype),
                                                      num_classes=num_classes, task=task),
        make_labels=make_labels, expected_output_shape=lambda batch, seq: (batch, num_classes),
        tmp_path=tmp_path, mixed_precision=False, jit_compile=False)
