"""`python pipelines/pretrain_mlm.py` as a user runs it: continued pre-training of a tiny model killed
and resumed, then every output checked (metrics.json before/after, the BertForMaskedLM directory in
transformers and as train_cls.py's --model, the fill-mask SavedModel in a TF + TF Text process); and a
from-scratch run with a trained WordPiece vocabulary that transformers' tokenizer reads the same way."""

import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import kill_after_first_epoch, write_sentiment_csv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "pipelines", "pretrain_mlm.py")


def write_tiny_corpus(path, n_docs, seed):
    """Documents (blank-line separated) of patterned sentences in the tiny vocabulary (conftest.TINY_WORDS):
    a masked LM learns them quickly, so the held-out perplexity falls."""
    rng = random.Random(seed)

    def sentence():
        return rng.choice([
            "hello world !", f"the movie was very {rng.choice(['good', 'bad'])} .",
            f"this film is not {rng.choice(['great', 'awful'])} .", "foo bar .", "it plays", "unable to play",
            " ".join(str(rng.randint(0, 9)) for _ in range(3))])

    docs = [" ".join(sentence() for _ in range(rng.randint(2, 5))) for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return str(path)


def write_english_corpus(path, n_docs, seed):
    """Varied words with shared stems and suffixes, for training a WordPiece vocabulary."""
    rng = random.Random(seed)
    stems = ("walk talk jump play read work paint climb cook clean open start watch listen visit answer "
             "travel order finish help call learn teach build print need").split()
    suffixes = ["", "s", "ed", "ing", "er", "ers", "able"]
    fillers = "the a an of to and in on with for it this that is was they we you she he".split()
    docs = []
    for _ in range(n_docs):
        words = []
        for _ in range(rng.randint(8, 20)):
            if rng.random() < 0.5:
                words.append(rng.choice(stems) + rng.choice(suffixes))
            else:
                words.append(rng.choice(fillers))
            if rng.random() < 0.1:
                words[-1] = words[-1].capitalize() + rng.choice([",", ".", "!", "?"])
        docs.append(" ".join(words))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return str(path)


def _run(command, timeout=600):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _all_positions(inputs):
    batch, seq = inputs["input_ids"].shape
    return {**inputs, "masked_positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1))}


@pytest.mark.slow
def test_pretrain_kill_resume_fine_tune_and_serve(tmp_path, tiny_model_dir):
    corpus = write_tiny_corpus(tmp_path / "corpus.txt", 400, seed=1)
    out = tmp_path / "run"
    command = [sys.executable, SCRIPT, "--model", tiny_model_dir, "--train_file", corpus, "--epochs", "4",
               "--batch_size", "8", "--max_seq_length", "32", "--learning_rate", "0.002", "--output_dir", str(out),
               "--log_dir", str(tmp_path / "tb"), "--seed", "3"]

    kill_after_first_epoch(command, out)
    recorded = json.loads((out / "backup" / "before_training.json").read_text())
    result = _run(command)
    assert "resuming from the backup" in result.stdout
    assert "before training, validation" not in result.stdout  # not measured again on the trained weights

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= 1 and metrics["optimizer_steps"] == 4 * metrics["steps_per_epoch"]
    assert metrics["best_metric"] == "val_loss"
    before, after = metrics["before_training"], metrics["validation"]
    assert before == recorded  # the killed run's figures, kept
    assert set(before) == set(after) == {"loss", "accuracy", "perplexity"}
    for figures in (before, after):
        assert math.isclose(figures["perplexity"], math.exp(figures["loss"]), rel_tol=1e-6)
        assert 0 <= figures["accuracy"] <= 1
    assert before["perplexity"] > 30  # an untrained head over ~50 tokens: close to uniform
    assert after["perplexity"] < 0.8 * before["perplexity"], (before, after)
    assert after["accuracy"] > before["accuracy"]

    # hf_model/ is a BertForMaskedLM directory for transformers, with the logits of model.keras
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    import keras

    import tfbert.tasks  # noqa: F401  (registers the task models)
    from tfbert.text import BertTokenizer

    hf_dir = out / "hf_model"
    assert json.loads((hf_dir / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    hf, info = transformers.BertForMaskedLM.from_pretrained(hf_dir, output_loading_info=True)
    hf.eval()
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    assert all(k.startswith("bert.pooler.") for k in info["unexpected_keys"]), info
    model = keras.models.load_model(out / "model.keras", compile=False)
    tokenizer = BertTokenizer.from_pretrained(hf_dir)
    texts = ["the movie was very [MASK] .", "hello [MASK] ! this film is not [MASK] ."]
    encoded = {k: np.asarray(v) for k, v in tokenizer(texts, max_length=32).items()
               if k in ("input_ids", "token_type_ids", "attention_mask")}
    logits = np.asarray(model(_all_positions(encoded), training=False))
    with torch.no_grad():
        theirs = hf(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in encoded.items()}).logits.numpy()
    mask = encoded["attention_mask"].astype(bool)
    np.testing.assert_allclose(logits[mask], theirs[mask], atol=1e-4, rtol=0)

    # the fill-mask SavedModel, in a process with only TensorFlow and TF Text
    saved = metrics["saved_model"]
    script = f"""
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401
m = tf.saved_model.load({saved!r})
out = m.signatures["serving_default"](text=tf.constant({texts!r} + ["no mask here"]))
print(json.dumps({{"num_masks": out["num_masks"].numpy().tolist(), "token_ids": out["token_ids"].numpy().tolist(),
                  "tokens": [[[t.decode() for t in k] for k in row] for row in out["tokens"].numpy()],
                  "scores": out["scores"].numpy().tolist(), "start": out["mask_start"].numpy().tolist(),
                  "end": out["mask_end"].numpy().tolist(),
                  "modules": sorted(m for m in ("tfbert", "torch") if m in sys.modules)}}))
"""
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert served.returncode == 0, served.stderr[-3000:]
    got = json.loads(served.stdout.strip().splitlines()[-1])
    assert got["modules"] == []
    assert got["num_masks"] == [1, 2, 0]
    for row, text in enumerate(texts):
        positions = np.flatnonzero(encoded["input_ids"][row] == tokenizer.mask_id)
        assert len(positions) == got["num_masks"][row]
        for k, position in enumerate(positions):
            probabilities = np.exp(logits[row, position] - logits[row, position].max())
            probabilities /= probabilities.sum()
            order = np.argsort(-probabilities, kind="stable")
            top = 5 if probabilities[order[4]] - probabilities[order[5]] > 1e-6 else 4  # no near-tie at the cut
            assert got["token_ids"][row][k][:top] == order[:top].tolist(), (row, k)
            np.testing.assert_allclose(got["scores"][row][k], probabilities[got["token_ids"][row][k]], atol=1e-5)
            assert got["tokens"][row][k] == [tokenizer.vocab[i] for i in got["token_ids"][row][k]]
            assert text[got["start"][row][k]:got["end"][row][k]] == "[MASK]"
        assert got["token_ids"][row][len(positions):] == [[-1] * 5] * (2 - len(positions))
    assert got["token_ids"][2] == [[-1] * 5] * 2 and got["start"][2] == [-1, -1]

    from tfbert.export import read_allowlist, saved_model_op_types

    assert not saved_model_op_types(saved) - read_allowlist(), sorted(saved_model_op_types(saved) - read_allowlist())

    # the adapted model is a --model for fine-tuning; its pooler comes along (not reported missing)
    train = write_sentiment_csv(tmp_path / "sentiment.csv", 60, seed=5)
    fine_tuned = _run([sys.executable, os.path.join(ROOT, "pipelines", "train_cls.py"), "--model", str(hf_dir),
                       "--train_file", train, "--epochs", "1", "--batch_size", "8", "--max_seq_length", "24",
                       "--output_dir", str(tmp_path / "cls"), "--log_dir", str(tmp_path / "tb_cls"), "--seed", "3"])
    log = fine_tuned.stdout + fine_tuned.stderr
    assert not [line for line in log.splitlines() if "missing" in line.lower()], log[-3000:]
    assert json.loads((tmp_path / "cls" / "metrics.json").read_text())["label_vocab"] == ["neg", "pos"]


@pytest.mark.slow
def test_from_scratch_with_a_trained_vocabulary(tmp_path, tiny_model_dir):
    corpus = write_english_corpus(tmp_path / "corpus.txt", 150, seed=2)
    model_config = tmp_path / "tiny_bert.json"
    model_config.write_text(json.dumps({"model_type": "bert", "vocab_size": 30, "hidden_size": 32,
                                        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                                        "max_position_embeddings": 64}), encoding="utf-8")
    out = tmp_path / "scratch"
    validation = write_english_corpus(tmp_path / "dev.txt", 20, seed=5)
    # --model only names the run here: the tokenizer is the trained vocabulary, the weights are random
    result = _run([sys.executable, SCRIPT, "--model", tiny_model_dir, "--model_config", str(model_config),
                   "--train_vocab", "200", "--train_file", corpus, "--validation_file", validation,
                   "--epochs", "1", "--batch_size", "8",
                   "--max_seq_length", "32", "--output_dir", str(out), "--log_dir", str(tmp_path / "tb"),
                   "--seed", "3"])
    assert "trained a WordPiece vocabulary" in result.stdout + result.stderr

    vocab = (out / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert 60 < len(vocab) <= 200
    assert {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} <= set(vocab[:5])
    assert any(token.startswith("##") for token in vocab)
    hf_dir = out / "hf_model"
    assert (hf_dir / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
    with open(os.path.join(tiny_model_dir, "vocab.txt"), encoding="utf-8") as f:
        tiny_vocab = f.read().splitlines()
    assert vocab != tiny_vocab
    assert json.loads((hf_dir / "config.json").read_text())["vocab_size"] == len(vocab)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["before_training"]) == set(metrics["validation"]) == {"loss", "accuracy", "perplexity"}
    assert metrics["before_training"]["perplexity"] > 0.5 * len(vocab)  # a random model: about uniform
    # evaluated on its validation file afterwards, the run scores it as it did (the trained vocabulary, the same
    # seeded masks)
    from tfbert.training.evaluation import evaluate_run

    assert evaluate_run(str(out), validation)["test"] == metrics["validation"]
    # TensorBoard: the untrained figures one step before the first epoch's, on the same tag
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def perplexities(run):
        events = EventAccumulator(str(tmp_path / "tb" / run), size_guidance={"tensors": 0})
        events.Reload()
        return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors("epoch_perplexity")]

    [(step, value)] = perplexities("before_training")
    assert step == -1 and value == pytest.approx(metrics["before_training"]["perplexity"], rel=1e-6)
    assert [step for step, _ in perplexities("validation")] == [0]

    transformers = pytest.importorskip("transformers")
    from tfbert.text import BertTokenizer

    hf_model = transformers.BertForMaskedLM.from_pretrained(hf_dir)
    assert hf_model.config.vocab_size == len(vocab)
    theirs = transformers.BertTokenizerFast.from_pretrained(hf_dir)
    ours = BertTokenizer.from_pretrained(hf_dir)
    sentences = ["They walked and talked, then Jumped!", "The painters were cleaning it.",
                 "Zebras visit Café Naïve?", "unreadable printers; helpers & teachers", "xyzzy qwv 123",
                 "watchers [MASK] listening"]
    expected = theirs(sentences)["input_ids"]
    encoded = ours(sentences, max_length=64)
    for row, sentence in enumerate(sentences):
        length = int(np.asarray(encoded["attention_mask"])[row].sum())
        assert np.asarray(encoded["input_ids"])[row][:length].tolist() == expected[row], sentence
    assert ours.mask_id in expected[-1]  # [MASK] written in the text is the mask token for both


def test_a_model_config_smaller_than_the_vocabulary_is_refused_clearly(tmp_path, tiny_model_dir):
    # --model_config without --train_vocab: the tokenizer is --model's (49 tokens), the config has 10 rows
    corpus = write_tiny_corpus(tmp_path / "corpus.txt", 30, seed=3)
    model_config = tmp_path / "too_small.json"
    model_config.write_text(json.dumps({"model_type": "bert", "vocab_size": 10, "hidden_size": 32,
                                        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                                        "max_position_embeddings": 64}), encoding="utf-8")
    result = subprocess.run([sys.executable, SCRIPT, "--model", tiny_model_dir, "--model_config", str(model_config),
                             "--train_file", corpus, "--epochs", "1", "--batch_size", "8", "--max_seq_length", "32",
                             "--output_dir", str(tmp_path / "out"), "--log_dir", str(tmp_path / "tb")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "vocab_size" in result.stderr and str(model_config) in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
def test_bad_flags_fail_with_a_clear_message(tmp_path):
    cases = {("--train_vocab", "100"): "field 'train_vocab' must be at least 10, and given with model_config",
             ("--mlm_probability", "1.5"): "field 'mlm_probability' must be in (0, 1)",
             ("--dropout", "0.1"): "field 'dropout' must be unset"}
    for flags, message in cases.items():
        result = subprocess.run([sys.executable, SCRIPT, *flags, "--output_dir", str(tmp_path / "x")],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and message in result.stderr, (flags, result.stderr[-2000:])
    missing = tmp_path / "nope.txt"
    result = subprocess.run([sys.executable, SCRIPT, "--train_file", str(missing), "--model", str(tmp_path),
                             "--output_dir", str(tmp_path / "y")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"pretrain_mlm.py: error: {missing}: no such file or folder"
    help_text = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=300).stdout
    for flag in ("--line_by_line", "--text_column", "--mlm_probability", "--whole_word_masking", "--model_config",
                 "--train_vocab"):
        assert flag in help_text
