"""`python pipelines/train_ner.py` as a user runs it: killed and resumed, then every output checked
(metrics, the transformers directory, the SavedModel in a process with only TF and TF Text)."""

import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import kill_after_first_epoch
from tfbert.data.readers import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILLER = "the a movie film good bad was is very it this that".split()


def write_conll(path, n, seed, long_every=0):
    """Learnable toy NER: 'hello world' is a person, 'foo' or 'bar' a location."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        words = []
        for _ in range(rng.randint(2, 6) + (30 if long_every and i % long_every == 0 else 0)):
            r = rng.random()
            if r < 0.2:
                words += [("hello", "B-PER"), ("world", "I-PER")]
            elif r < 0.35:
                words += [(rng.choice(["foo", "bar"]), "B-LOC")]
            else:
                words += [(rng.choice(FILLER), "O")]
        sentences.append(words)
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n", encoding="utf-8")
    return sentences


def _command(model_dir, tmp_path, out):
    return [sys.executable, os.path.join(ROOT, "pipelines", "train_ner.py"), "--model", model_dir,
            "--train_file", str(tmp_path / "train.conll"), "--validation_file", str(tmp_path / "dev.conll"),
            "--test_file", str(tmp_path / "test.conll"), "--epochs", "4", "--batch_size", "8",
            "--max_seq_length", "24", "--learning_rate", "0.002", "--output_dir", str(out),
            "--log_dir", str(tmp_path / "tb"), "--seed", "3"]


@pytest.mark.slow
def test_train_kill_resume_and_serve(tmp_path, tiny_model_dir):
    write_conll(tmp_path / "train.conll", 200, seed=1)
    write_conll(tmp_path / "dev.conll", 40, seed=2)
    test_sentences = write_conll(tmp_path / "test.conll", 40, seed=3, long_every=10)  # some over 24 tokens
    out = tmp_path / "run"
    command = _command(tiny_model_dir, tmp_path, out)

    kill_after_first_epoch(command, out)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming from the backup" in result.stdout
    assert "micro avg" in result.stdout  # the per-type report

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= 1 and metrics["optimizer_steps"] == 4 * metrics["steps_per_epoch"]
    assert metrics["best_metric"] == "val_f1"
    assert metrics["validation"]["f1"] > 0.9, metrics["validation"]
    assert set(metrics["test"]["per_type"]) == {"PER", "LOC"}
    assert metrics["truncation"]["truncated"] == 0 and metrics["label_vocab"] == ["O", "B-LOC", "B-PER", "I-PER"]
    # evaluate.py on its test file afterwards: the same scores; a tag the model never learnt is named
    evaluated = subprocess.run([sys.executable, os.path.join(ROOT, "pipelines", "evaluate.py"), "--checkpoint",
                                str(out), "--test_file", str(tmp_path / "test.conll")],
                               capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "micro avg" in evaluated.stdout
    assert json.loads((out / "evaluations" / "test.conll" / "metrics.json").read_text())["test"] == metrics["test"]
    from tfbert.training.evaluation import evaluate_run

    unknown = tmp_path / "unknown.conll"
    unknown.write_text("Ada B-PER\nmet O\n\nParis B-ORG\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{unknown}:4: tag 'B-ORG' of token 1 ('Paris') of the sentence "
                                                  "does not occur in the training data")):
        evaluate_run(str(out), str(unknown))

    # transformers reads the HF directory as a BertForTokenClassification with the tag names
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    import keras

    import tfbert.tasks  # noqa: F401  (registers the task models)

    hf = transformers.BertForTokenClassification.from_pretrained(out / "hf_model").eval()
    assert hf.config.id2label == {0: "O", 1: "B-LOC", 2: "B-PER", 3: "I-PER"}
    model = keras.models.load_model(out / "model.keras", compile=False)
    # with its compile settings too (NER's token accuracy metric, unregistered, could not be found by name)
    import tfbert

    assert type(tfbert.load_model(out).optimizer).__name__ == "BertAdamW"
    ids = np.array([[2, 25, 26, 29, 3, 0]], np.int32)
    inputs = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": (ids > 0).astype(np.int32)}
    with torch.no_grad():
        theirs = hf(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in inputs.items()}).logits.numpy()
    np.testing.assert_allclose(np.asarray(model(inputs)), theirs, atol=1e-4)

    # Python decoding of the test split, as metrics.json was computed
    from tfbert.tasks.token_classification import TokenClassificationTask
    from tfbert.text import BertTokenizer
    from tfbert.training.run_config import TokenClassifierRunConfig

    config = TokenClassifierRunConfig(model=tiny_model_dir, train_file=str(tmp_path / "train.conll"),
                                      test_file=str(tmp_path / "test.conll"),
                                      validation_file=str(tmp_path / "dev.conll"), max_seq_length=24, batch_size=8)
    task, tokenizer = TokenClassificationTask(), BertTokenizer.from_pretrained(tiny_model_dir)
    data = task.load_data(config)
    python_tags, _ = task.predict_tags(model, task.make_dataset(data, "test", tokenizer, config, training=False),
                                       data, "test", tokenizer, config)
    windowed = task.encoded(data, "test", tokenizer, 24).windowed
    assert windowed >= 4  # the long test sentences are run as several windows, in Python and in the graph

    saved = metrics["saved_model"]
    texts = [" ".join(w for w, _ in sentence) for sentence in test_sentences]
    script = f"""
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401
m = tf.saved_model.load({saved!r})
out = m.signatures["serving_default"](text=tf.constant({texts!r} + ["", "H\\u00e9llo  WORLD!! foo"]))
words = m.signatures["tokens"](tokens=tf.ragged.constant({[[w for w, _ in s] for s in test_sentences]!r}).to_tensor(""))
dec = lambda t: [[x.decode() for x in row] for row in t.numpy()]
print(json.dumps({{"tags": dec(out["tags"]), "words": dec(out["words"]), "entity_type": dec(out["entity_type"]),
                  "entity_text": dec(out["entity_text"]), "start": out["entity_start"].numpy().tolist(),
                  "end": out["entity_end"].numpy().tolist(), "n": out["num_entities"].numpy().tolist(),
                  "word_start": out["word_start"].numpy().tolist(), "token_tags": dec(words["tags"]),
                  "modules": sorted(m for m in ("tfbert", "torch") if m in sys.modules)}}))
"""
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert served.returncode == 0, served.stderr[-3000:]
    got = json.loads(served.stdout.strip().splitlines()[-1])
    assert got["modules"] == []
    from tfbert.data.conll import iob2_to_entities

    for i, (sentence, expected) in enumerate(zip(test_sentences, python_tags)):
        words = [w for w, _ in sentence]
        assert got["tags"][i][:len(words)] == expected, i  # raw text in the graph == Python decoding
        assert got["token_tags"][i][:len(words)] == expected, i  # pre-split words too
        assert got["words"][i][:len(words)] == words
        entities = iob2_to_entities(words, expected)
        assert got["n"][i] == len(entities)
        starts = got["word_start"][i]
        for k, (kind, first, end) in enumerate(entities):
            assert got["entity_type"][i][k] == kind
            assert got["entity_text"][i][k] == " ".join(words[first:end])
            assert texts[i][got["start"][i][k]:got["end"][i][k]] == got["entity_text"][i][k]
            assert got["start"][i][k] == starts[first]
    assert got["n"][-2] == 0 and got["tags"][-2] == [""] * len(got["tags"][-2])
    accented = got["words"][-1]
    assert accented[:5] == ["Héllo", "WORLD", "!", "!", "foo"]  # cut from the original text

    # predict.py prints the entities; a REST answer (JSON rows) formats exactly like the local outputs
    predicted = subprocess.run([sys.executable, os.path.join(ROOT, "pipelines", "predict.py"), "--export_dir",
                                os.path.dirname(saved), "--format", "jsonl", *texts[:5]],
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0 and predicted.stderr == "", predicted.stderr[-2000:]
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    for i, record in enumerate(records):
        assert record["tags"] == python_tags[i] and record["words"] == texts[i].split()
        assert [(e["text"], e["type"], e["start"], e["end"]) for e in record["entities"]] == [
            (got["entity_text"][i][k], got["entity_type"][i][k], got["start"][i][k], got["end"][i][k])
            for k in range(got["n"][i])]
    from tfbert.serving import LocalPredictor, format_jsonl, format_table, parse_rest_predictions

    rows = LocalPredictor(saved).predict(texts[:5])
    as_rest = parse_rest_predictions(json.loads(json.dumps({"predictions": rows})), 5)
    assert format_jsonl(texts[:5], as_rest) == predicted.stdout.strip()
    table = format_table(texts[:5], rows)
    assert table.splitlines()[0].split() == ["text", "entities"] and "[PER]" in table

    from tfbert.export import read_allowlist, saved_model_op_types

    assert not saved_model_op_types(saved) - read_allowlist(), sorted(saved_model_op_types(saved) - read_allowlist())


def test_bad_input_fails_before_training_naming_the_line(tmp_path):
    write_conll(tmp_path / "train.conll", 20, seed=1)
    (tmp_path / "dev.conll").write_text("hello\tB-PER\nParis\tB-CITY\n", encoding="utf-8")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "pipelines", "train_ner.py"), "--model", "unused",
                             "--train_file", str(tmp_path / "train.conll"), "--validation_file",
                             str(tmp_path / "dev.conll")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1 and not (tmp_path / "runs").exists()
    assert f"{tmp_path / 'dev.conll'}:1: tag 'B-CITY' of token 2 ('Paris') of the sentence does not occur in " \
           "the training data" in result.stderr
    assert "Traceback" not in result.stderr
    # quiet by default: none of TensorFlow's native log lines (oneDNN, cuda drivers, absl's banner)
    assert "absl::InitializeLog" not in result.stderr and "cuda" not in result.stderr.lower()
    assert result.stderr.strip().splitlines() == [
        f"train_ner.py: error: {tmp_path / 'dev.conll'}:1: tag 'B-CITY' of token 2 ('Paris') of the sentence does not "
        "occur in the training data (known: O, B-LOC, B-PER, I-PER)"]
    help_text = subprocess.run([sys.executable, os.path.join(ROOT, "pipelines", "train_ner.py"), "--help"],
                               capture_output=True, text=True, timeout=300).stdout
    assert "--tag_column" in help_text and "--label_all_subtokens" in help_text
    assert "--text_pair_column" not in help_text and "--threshold" not in help_text  # classification's own
