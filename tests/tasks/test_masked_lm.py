"""BertMaskedLM: logits parity with transformers' BertForMaskedLM at every position (a random tiny
model and the real MiniLM encoder with a random head), the save round trip, the fresh-head warning,
and the tied output layer."""

import json
import logging

import numpy as np
import pytest

from task_harness import TINY, check_config_round_trip, check_saving, make_inputs, tiny_config
from tfbert import BertBackbone
from tfbert.tasks.masked_lm import BertMaskedLM

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def all_positions(inputs):
    """`inputs` with `masked_positions` = every position of every row (logits [b, seq, vocab])."""
    batch, seq = inputs["input_ids"].shape
    return {**inputs, "masked_positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1))}


def hf_logits(hf_model, inputs):
    with torch.no_grad():
        return hf_model(**{k: torch.from_numpy(np.asarray(inputs[k]).astype(np.int64))
                           for k in ("input_ids", "token_type_ids", "attention_mask")}).logits.numpy()


def randomize_head(hf_model, seed=0):
    """A non-trivial MLM head: random transform, LayerNorm away from 1/0 and a non-zero output bias."""
    generator = torch.Generator().manual_seed(seed)
    head = hf_model.cls.predictions
    with torch.no_grad():
        for param in (head.transform.dense.weight, head.transform.dense.bias, head.transform.LayerNorm.weight,
                      head.transform.LayerNorm.bias, head.bias):
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    assert float(head.bias.detach().abs().min()) > 0


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf_mlm")
    config = transformers.BertConfig(**TINY)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():  # the word embeddings once (the decoder is the same tensor)
            param.add_(0.05 * torch.randn_like(param))
    randomize_head(model)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(directory, safe_serialization=True)
    return directory, model


def test_tiny_parity_at_every_position(hf_tiny, caplog):
    directory, hf_model = hf_tiny
    inputs = all_positions(make_inputs(batch=3, seq=9))
    with caplog.at_level(logging.INFO, logger="tfbert"):
        mlm = BertMaskedLM.from_pretrained(directory)
    assert "loaded the masked-LM head" in caplog.text and "starts fresh" not in caplog.text
    ours = np.asarray(mlm(inputs, training=False))
    assert ours.shape == (3, 9, TINY["vocab_size"]) and ours.dtype == np.float32
    theirs = hf_logits(hf_model, inputs)
    mask = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-4, rtol=0)
    # the output bias is really the checkpoint's (not 0): subtracting it breaks the parity
    bias = hf_model.cls.predictions.bias.detach().numpy()
    assert np.abs(bias).max() > 0.1
    np.testing.assert_allclose(np.asarray(mlm.output_layer.bias.numpy()), bias, atol=1e-7)


def test_logits_at_chosen_positions_are_the_rows_of_all_positions(hf_tiny):
    directory, _ = hf_tiny
    mlm = BertMaskedLM.from_pretrained(directory)
    inputs = make_inputs(batch=2, seq=8)
    everything = np.asarray(mlm(all_positions(inputs), training=False))
    positions = np.array([[3, 1, 1], [0, 6, 2]], np.int32)
    picked = np.asarray(mlm({**inputs, "masked_positions": positions}, training=False))
    assert picked.shape == (2, 3, TINY["vocab_size"])
    np.testing.assert_allclose(picked, np.take_along_axis(everything, positions[..., None], axis=1), atol=1e-5)


def test_save_pretrained_round_trip_through_transformers(hf_tiny, tmp_path):
    directory, _ = hf_tiny
    mlm = BertMaskedLM.from_pretrained(directory)
    inputs = all_positions(make_inputs(batch=3, seq=9, seed=4))
    ours = np.asarray(mlm(inputs, training=False))
    mlm.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    reloaded, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    reloaded.eval()
    assert not info["missing_keys"], info
    assert not info["mismatched_keys"], info
    # only the pooler (kept on purpose for later fine-tuning) is unused by BertForMaskedLM
    assert info["unexpected_keys"] and all(k.startswith("bert.pooler.") for k in info["unexpected_keys"]), info
    mask = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(hf_logits(reloaded, inputs)[mask], ours[mask], atol=1e-4, rtol=0)
    # and back into tfbert: identical
    again = BertMaskedLM.from_pretrained(tmp_path)
    np.testing.assert_allclose(np.asarray(again(inputs, training=False)), ours, atol=1e-6, rtol=0)


@pytest.mark.parametrize("head", ["BertClassifier", "BertTokenClassifier", "BertQuestionAnswerer"])
def test_every_task_head_starts_from_a_saved_masked_lm(hf_tiny, tmp_path, head):
    """What train_cls/train_ner/train_qa --model <pretrain_mlm's hf_model> do: the encoder and pooler are
    the adapted ones, the task head starts fresh."""
    import tfbert.tasks

    directory, _ = hf_tiny
    mlm = BertMaskedLM.from_pretrained(directory)
    mlm.save_pretrained(tmp_path)
    cls = getattr(tfbert.tasks, head)
    sizes = {"BertClassifier": dict(num_classes=3), "BertTokenClassifier": dict(num_labels=3)}.get(head, {})
    model = cls.from_pretrained(tmp_path, **sizes)
    adapted = {v.path: v.numpy() for v in mlm.backbone.weights}
    assert {v.path for v in model.backbone.weights} == set(adapted)
    for v in model.backbone.weights:
        np.testing.assert_array_equal(v.numpy(), adapted[v.path], err_msg=v.path)


@pytest.mark.slow
def test_minilm_with_a_random_head_matches_transformers(tmp_path, caplog):
    from tfbert.checkpoints import resolve
    from tfbert.text import BertTokenizer

    torch.manual_seed(1)
    hf_model = transformers.BertForMaskedLM.from_pretrained(resolve("minilm-l6")).eval()  # MiniLM has no MLM head
    randomize_head(hf_model, seed=1)
    hf_model.save_pretrained(tmp_path, safe_serialization=True)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        mlm = BertMaskedLM.from_pretrained(tmp_path)
    assert "loaded the masked-LM head" in caplog.text
    tokenizer = BertTokenizer.from_pretrained("minilm-l6")
    inputs = {k: np.asarray(v) for k, v in tokenizer(["The capital of France is [MASK].",
                                                      "a short one"], max_length=32).items()}
    inputs = all_positions({k: inputs[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
    assert (inputs["input_ids"] == tokenizer.mask_id).sum() == 1
    ours = np.asarray(mlm(inputs, training=False))
    assert ours.shape[-1] == 30522
    mask = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[mask], hf_logits(hf_model, inputs)[mask], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_minilm_preset_has_no_head_and_starts_fresh(caplog):
    with caplog.at_level(logging.INFO, logger="tfbert"):
        mlm = BertMaskedLM.from_pretrained("minilm-l6")
    assert "no masked-LM head" in caplog.text and "starts fresh" in caplog.text
    assert np.all(mlm.output_layer.bias.numpy() == 0)


def test_a_checkpoint_without_the_head_starts_fresh_with_a_warning(tmp_path, caplog):
    BertBackbone(tiny_config()).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="tfbert"):
        mlm = BertMaskedLM.from_pretrained(tmp_path)
    warnings = [r for r in caplog.records if r.name == "tfbert" and r.levelno == logging.WARNING]
    assert any("starts fresh" in r.getMessage() and "no masked-LM head" in r.getMessage() for r in warnings), \
        caplog.text
    assert np.all(mlm.output_layer.bias.numpy() == 0)
    inputs = all_positions(make_inputs(batch=2, seq=6))
    assert np.isfinite(np.asarray(mlm(inputs))).all()


def test_output_layer_is_tied_to_the_word_embeddings():
    backbone = BertBackbone(tiny_config())
    mlm = BertMaskedLM(backbone)
    vocab, hidden = TINY["vocab_size"], TINY["hidden_size"]
    # no separate decoder kernel: the only [vocab, hidden] (or [hidden, vocab]) weight is the word embedding
    big = [w for w in mlm.weights if tuple(w.shape) in ((vocab, hidden), (hidden, vocab))]
    assert len(big) == 1 and big[0] is backbone.embeddings.word_embeddings.embeddings, [w.path for w in big]
    # the head adds exactly transform kernel + bias, LayerNorm gamma + beta and the output bias
    assert len(mlm.weights) == len(backbone.weights) + 5
    assert sum(int(np.prod(w.shape)) for w in mlm.weights) == \
        sum(int(np.prod(w.shape)) for w in backbone.weights) + (hidden * hidden + hidden) + 2 * hidden + vocab

    # Scaling the embedding row of a token absent from the input changes that token's logit and no other.
    inputs = all_positions(make_inputs(batch=2, seq=7, seed=1))
    absent = next(t for t in range(5, vocab) if t not in inputs["input_ids"])
    before = np.asarray(mlm(inputs, training=False))
    table = backbone.embeddings.word_embeddings.embeddings
    values = table.numpy()
    values[absent] *= 3.0
    table.assign(values)
    after = np.asarray(mlm(inputs, training=False))
    others = np.arange(vocab) != absent
    np.testing.assert_allclose(after[..., others], before[..., others], atol=1e-6)
    assert np.abs(after[..., absent] - before[..., absent]).max() > 1e-3


def test_keras_config_and_saving(tmp_path):
    mlm = BertMaskedLM(BertBackbone(tiny_config()))
    check_config_round_trip(mlm)
    inputs = {**make_inputs(batch=2, seq=6), "masked_positions": np.array([[1, 2], [3, 0]], np.int32)}
    check_saving(mlm, inputs, tmp_path)
    import keras

    restored = keras.models.load_model(tmp_path / "model.keras")
    big = [w for w in restored.weights if tuple(w.shape) == (TINY["vocab_size"], TINY["hidden_size"])]
    assert len(big) == 1  # still tied after reloading


def test_training_step_with_ignored_labels():
    import keras

    mlm = BertMaskedLM(BertBackbone(tiny_config()))
    inputs = {**make_inputs(batch=4, seq=8), "masked_positions": np.array([[1, 2], [3, 0], [4, 5], [1, 0]], np.int32)}
    labels = np.array([[7, 8], [9, -100], [10, 11], [12, -100]])
    mlm.compile(optimizer=keras.optimizers.Adam(1e-3), loss=mlm.default_loss())
    before = mlm.backbone.embeddings.word_embeddings.embeddings.numpy().copy()
    history = mlm.fit(inputs, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert not np.array_equal(before, mlm.backbone.embeddings.word_embeddings.embeddings.numpy())
    # the loss ignores -100 exactly as torch's CrossEntropyLoss(ignore_index=-100)
    logits = np.asarray(mlm(inputs, training=False))
    ours = float(mlm.default_loss()(labels, logits))
    theirs = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits).reshape(-1, TINY["vocab_size"]),
                                                     torch.from_numpy(labels).reshape(-1), ignore_index=-100))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_a_trained_vocabulary_goes_to_the_process_own_folder_whole(tmp_path):
    # a multi-worker run's other workers train theirs in their own folder (only the chief writes the
    # run's outputs), and the file appears whole (trained aside, moved into place) or not at all
    from tfbert.tasks.masked_language_modeling import MaskedLanguageModelingTask
    from tfbert.training.run_config import MaskedLMRunConfig

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"the cat number {i} sat on the mat and looked at dog {i % 7}" for i in range(40)),
                      encoding="utf-8")
    config = MaskedLMRunConfig(model_config=str(tmp_path / "config.json"), train_vocab=60, train_file=str(corpus),
                               output_dir=str(tmp_path / "run"))
    task = MaskedLanguageModelingTask()
    data = task.load_data(config)
    worker = tmp_path / "run" / "worker-1"
    tokenizer = task.load_tokenizer(config, data, str(worker))
    assert sorted(p.name for p in worker.iterdir()) == ["vocab"] and not (tmp_path / "run" / "vocab").exists()
    vocab = (worker / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tokenizer.vocab_size == len(vocab) and vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # a resumed run keeps the vocabulary it has
    (worker / "vocab" / "vocab.txt").write_text("\n".join(vocab[:-1]) + "\n", encoding="utf-8")
    assert task.load_tokenizer(config, data, str(worker)).vocab_size == len(vocab) - 1
