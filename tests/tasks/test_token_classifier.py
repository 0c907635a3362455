"""BertTokenClassifier: parity with transformers' BertForTokenClassification both ways (logits and
loss over the -100-masked labels), head loading rules, and the shared task-head checks."""

import json
import logging

import numpy as np
import pytest

from task_harness import TINY, make_inputs, perturbed_hf_checkpoint, run_standard_checks, tiny_config
from tfbert import BertBackbone
from tfbert.tasks import BertTokenClassifier
from tfbert.tasks.token_classifier import IGNORE_LABEL

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def token_labels(batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(TAGS), size=(batch, seq))
    labels[:, 0] = IGNORE_LABEL  # [CLS]
    labels[:, -2:] = IGNORE_LABEL  # later sub-tokens / [SEP] / padding
    return labels


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf_tok")
    config = transformers.BertConfig(**TINY, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)),
                                     label2id={t: i for i, t in enumerate(TAGS)})
    return directory, perturbed_hf_checkpoint(transformers.BertForTokenClassification, config, directory)


def test_parity_with_transformers_both_ways(hf_checkpoint, tmp_path, caplog):
    directory, hf_model = hf_checkpoint
    inputs = make_inputs(batch=3, seq=9)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        tagger = BertTokenClassifier.from_pretrained(directory, num_labels=len(TAGS), label_names=TAGS)
    assert "loaded the token-classification head" in caplog.text and "unused" not in caplog.text
    ours = np.asarray(tagger(inputs, training=False))
    assert ours.shape == (3, 9, len(TAGS)) and ours.dtype == np.float32
    labels = token_labels(3, 9)
    with torch.no_grad():
        hf = hf_model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in inputs.items()},
                      labels=torch.from_numpy(labels))
    np.testing.assert_allclose(ours, hf.logits.numpy(), atol=1e-4, rtol=0)
    # The loss skips the -100 positions exactly as transformers' CrossEntropyLoss(ignore_index=-100).
    loss = float(tagger.default_loss()(labels, ours))
    np.testing.assert_allclose(loss, float(hf.loss), rtol=1e-5)

    tagger.save_pretrained(tmp_path, label_names=TAGS)
    reloaded = transformers.BertForTokenClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.id2label == dict(enumerate(TAGS))
    with torch.no_grad():
        logits = reloaded(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in inputs.items()}).logits.numpy()
    np.testing.assert_allclose(logits, ours, atol=1e-4, rtol=0)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]


def test_head_rows_follow_the_datas_tag_order(hf_checkpoint, caplog):
    directory, _ = hf_checkpoint
    inputs = make_inputs(batch=2, seq=7)
    reference = np.asarray(BertTokenClassifier.from_pretrained(directory, num_labels=5, label_names=TAGS)(inputs))
    shuffled = ["I-LOC", "O", "B-LOC", "I-PER", "B-PER"]
    with caplog.at_level(logging.INFO, logger="tfbert"):
        tagger = BertTokenClassifier.from_pretrained(directory, num_labels=5, label_names=shuffled)
    assert "reordered" in caplog.text
    np.testing.assert_allclose(np.asarray(tagger(inputs)), reference[..., [TAGS.index(t) for t in shuffled]],
                               atol=1e-6)


def test_a_sequence_classification_checkpoint_gives_a_fresh_head(tmp_path, caplog):
    BertBackbone(tiny_config()).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        tagger = BertTokenClassifier.from_pretrained(tmp_path, num_labels=3)
    assert "no token-classification head" in caplog.text
    assert tagger.output_shape == (None, None, 3)


def test_a_new_head_starts_as_transformers_draws_it():
    """BertForTokenClassification's new head: normal(0, initializer_range), not truncated (the classifier's
    head stays truncated at two deviations, as TF BERT draws it); biases zero."""
    from tfbert.tasks import BertClassifier

    config = tiny_config(initializer_range=0.02)
    tagger = BertTokenClassifier(BertBackbone(config), num_labels=64)  # 32 x 64 = 2,048 draws
    kernel = tagger.output_dense.kernel.numpy()
    assert abs(kernel.std() - 0.02) < 0.002
    assert np.abs(kernel).max() > 2 * 0.02  # a truncated draw never exceeds two deviations
    assert not tagger.output_dense.bias.numpy().any()
    classifier = BertClassifier(BertBackbone(config), num_classes=64).output_dense.kernel.numpy()
    assert np.abs(classifier).max() <= 2 * 0.02


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_labels must be a positive integer"):
        BertTokenClassifier(BertBackbone(tiny_config()), num_labels=0)
    with pytest.raises(ValueError, match="dropout"):
        BertTokenClassifier(BertBackbone(tiny_config()), num_labels=2, dropout=1.5)


def test_standard_checks(tmp_path):
    run_standard_checks(
        build_model=lambda dtype=None: BertTokenClassifier(BertBackbone(tiny_config(), dtype=dtype), num_labels=5),
        make_labels=lambda batch, seq: token_labels(batch, seq),
        expected_output_shape=lambda batch, seq: (batch, seq, 5),
        tmp_path=tmp_path)


def test_minilm_token_classifier_matches_transformers(tmp_path):
    from tfbert.checkpoints import resolve
    from tfbert.text import BertTokenizer

    torch.manual_seed(1)
    hf_model = transformers.BertForTokenClassification.from_pretrained(
        resolve("minilm-l6"), num_labels=len(TAGS), id2label=dict(enumerate(TAGS))).eval()
    hf_model.save_pretrained(tmp_path, safe_serialization=True)  # the real encoder with a random head
    tagger = BertTokenClassifier.from_pretrained(tmp_path, num_labels=len(TAGS), label_names=TAGS)
    tokenizer = BertTokenizer.from_pretrained("minilm-l6")
    inputs = {k: np.asarray(v) for k, v in tokenizer(["Ada Lovelace met Charles Babbage in London.",
                                                      "a short one"], max_length=32).items()}
    with torch.no_grad():
        theirs = hf_model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in inputs.items()}).logits.numpy()
    ours = np.asarray(tagger(inputs, training=False))
    mask = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-4, rtol=0)
