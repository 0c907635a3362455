"""BertQuestionAnswerer: parity with transformers' BertForQuestionAnswering both ways (start/end logits and
the span loss), on a tiny random config and on MiniLM with real QA windows; head loading rules; the
shared task-head checks."""

import json
import logging

import numpy as np
import pytest

from conftest import minilm_dir
from task_harness import TINY, make_inputs, perturbed_hf_checkpoint, run_standard_checks, tiny_config
from tfbert import BertBackbone
from tfbert.tasks.question_answerer import BertQuestionAnswerer, SpanLoss

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def span_labels(batch, seq, seed=0):
    """(start, end) with start <= end inside the row, and (0, 0) for the first row (no answer)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(1, seq - 1, size=batch)
    ends = np.minimum(starts + rng.integers(0, 3, size=batch), seq - 1)
    labels = np.stack([starts, ends], axis=1).astype("int32")
    labels[0] = 0
    return labels


def torch_inputs(inputs):
    return {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in inputs.items()}


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf_qa")
    config = transformers.BertConfig(**TINY)
    return directory, perturbed_hf_checkpoint(transformers.BertForQuestionAnswering, config, directory)


def test_parity_with_transformers_both_ways(hf_checkpoint, tmp_path, caplog):
    directory, hf_model = hf_checkpoint
    inputs = make_inputs(batch=3, seq=9)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        reader = BertQuestionAnswerer.from_pretrained(directory)
    assert "loaded the question-answering head 'qa_outputs.weight' (2, 32)" in caplog.text
    ours = np.asarray(reader(inputs, training=False))
    assert ours.shape == (3, 9, 2) and ours.dtype == np.float32
    labels = span_labels(3, 9)
    with torch.no_grad():
        hf = hf_model(**torch_inputs(inputs), start_positions=torch.from_numpy(labels[:, 0].astype(np.int64)),
                      end_positions=torch.from_numpy(labels[:, 1].astype(np.int64)))
    np.testing.assert_allclose(ours[..., 0], hf.start_logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours[..., 1], hf.end_logits.numpy(), atol=1e-4, rtol=0)
    # (CE(start) + CE(end)) / 2, averaged over the batch, as BertForQuestionAnswering's loss
    loss = float(reader.default_loss()(labels, ours))
    np.testing.assert_allclose(loss, float(hf.loss), rtol=1e-5)

    reader.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["BertForQuestionAnswering"]
    reloaded, info = transformers.BertForQuestionAnswering.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info  # no pooler: the QA model has none
    with torch.no_grad():
        out = reloaded.eval()(**torch_inputs(inputs))
    np.testing.assert_allclose(out.start_logits.numpy(), ours[..., 0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.end_logits.numpy(), ours[..., 1], atol=1e-4, rtol=0)
    # and it reads back into tfbert with its head
    again = BertQuestionAnswerer.from_pretrained(tmp_path)
    np.testing.assert_allclose(np.asarray(again(inputs, training=False)), ours, atol=1e-6)


def test_a_checkpoint_without_a_qa_head_gives_a_fresh_head(tmp_path, caplog):
    BertBackbone(tiny_config()).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        reader = BertQuestionAnswerer.from_pretrained(tmp_path)
    assert "no question-answering head" in caplog.text
    assert reader.output_shape == (None, None, 2)


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_span_loss_equals_torch_cross_entropy(dtype):
    rng = np.random.default_rng(5)
    batch, seq = 6, 13
    logits = (rng.normal(size=(batch, seq, 2)) * 4).astype("float32")
    labels = span_labels(batch, seq, seed=2)
    ours = float(SpanLoss()(labels.astype(dtype), logits))
    ce = torch.nn.CrossEntropyLoss()
    start, end = torch.from_numpy(logits[..., 0]), torch.from_numpy(logits[..., 1])
    expected = (ce(start, torch.from_numpy(labels[:, 0].astype(np.int64)))
                + ce(end, torch.from_numpy(labels[:, 1].astype(np.int64)))) / 2
    np.testing.assert_allclose(ours, float(expected), rtol=1e-5)
    # per-example values (reduction none) are each (CE_start + CE_end) / 2
    per_example = np.asarray(SpanLoss(reduction=None)(labels, logits))
    none = torch.nn.CrossEntropyLoss(reduction="none")
    expected = (none(start, torch.from_numpy(labels[:, 0].astype(np.int64)))
                + none(end, torch.from_numpy(labels[:, 1].astype(np.int64)))) / 2
    np.testing.assert_allclose(per_example, expected.numpy(), rtol=1e-5)


def test_standard_checks(tmp_path):
    run_standard_checks(
        build_model=lambda dtype=None: BertQuestionAnswerer(BertBackbone(tiny_config(), dtype=dtype)),
        make_labels=span_labels,
        expected_output_shape=lambda batch, seq: (batch, seq, 2),
        tmp_path=tmp_path)


def test_minilm_question_answerer_matches_transformers(tmp_path):
    from tfbert.tasks.qa_windows import make_windows
    from tfbert.text import BertTokenizer

    torch.manual_seed(2)
    hf_model = transformers.BertForQuestionAnswering.from_pretrained(minilm_dir()).eval()
    with torch.no_grad():  # a random head, with a bias that is not 0
        hf_model.qa_outputs.weight.normal_(0.0, 0.2)
        hf_model.qa_outputs.bias.copy_(torch.tensor([0.3, -0.7]))
    hf_model.save_pretrained(tmp_path, safe_serialization=True)  # the real encoder with a random head
    reader = BertQuestionAnswerer.from_pretrained(tmp_path)
    tokenizer = BertTokenizer.from_pretrained("minilm-l6")
    context = ("Ada Lovelace, born in London in 1815, wrote the first published algorithm for Charles Babbage's "
               "Analytical Engine; her notes on the engine appeared in 1843. ") * 3
    windows = make_windows(tokenizer, ["When was Ada Lovelace born?", "Who built the engine?"],
                           [context, "Charles Babbage designed it."], 48, 16, 8)
    inputs = {k: np.asarray(v) for k, v in windows.features.items()}
    assert len(inputs["input_ids"]) > 2  # several windows, padded
    with torch.no_grad():
        theirs = hf_model(**torch_inputs(inputs))
    ours = np.asarray(reader(inputs, training=False))
    mask = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[..., 0][mask], theirs.start_logits.numpy()[mask], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours[..., 1][mask], theirs.end_logits.numpy()[mask], atol=1e-4, rtol=0)

    reader.save_pretrained(tmp_path / "out")
    reloaded = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = reloaded(**torch_inputs(inputs))
    np.testing.assert_allclose(back.start_logits.numpy()[mask], ours[..., 0][mask], atol=1e-4, rtol=0)
    np.testing.assert_allclose(back.end_logits.numpy()[mask], ours[..., 1][mask], atol=1e-4, rtol=0)
