"""`python pipelines/train_qa.py` as a user runs it: SQuAD v1.1 killed and resumed, then every output
checked (metrics, predictions, the transformers directory, the SavedModel in a process with only TF and
TF Text); SQuAD v2.0 with a JSON Lines training file split by title; the errors a user sees."""

import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import kill_after_first_epoch
from serving_checks import replay_warmup_requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "pipelines", "train_qa.py")
# Answers are words of the tiny vocabulary (tests/conftest.py), one or two tokens; filler never holds one.
NAMES = ["foo", "bar", "hello", "world", "hello world", "play", "playing", "unable"]
FILLER = ["it is very good .", "this movie was bad .", "the film is great .", "that was not awful .",
          "a movie and a film .", "it was very very bad !", "this is the film ?", "the movie is not good ."]
QUESTIONS = ["who was the winner ?", "the winner was ?", "who is the winner?"]
LENGTHS = ["--max_seq_length", "48", "--doc_stride", "16", "--max_query_length", "12"]


def check_serving_ops(saved):
    """Every op of the export is one stock TF Serving runs (tfbert/serving_ops_allowlist.txt)."""
    from tfbert.export import read_allowlist, saved_model_op_types

    outside = saved_model_op_types(saved) - read_allowlist()
    assert not outside, f"ops outside serving_ops_allowlist.txt: {sorted(outside)}"


def make_question(rng, qid, long=False, answerable=True):
    """A context of filler sentences with 'the winner was NAME .' somewhere (not in an unanswerable one);
    a long context (some 90 tokens) needs several 48-token windows."""
    parts = [rng.choice(FILLER) for _ in range(rng.randint(1, 4) + (16 if long else 0))]
    qa = {"id": qid, "question": rng.choice(QUESTIONS)}
    if answerable:
        name = rng.choice(NAMES)
        sentence = f"the winner was {name} ."
        parts.insert(rng.randint(0, len(parts)), sentence)
        context = " ".join(parts)
        qa["answers"] = [{"text": name, "answer_start": context.index(sentence) + len("the winner was ")}]
    else:
        context = " ".join(parts)
        qa.update(answers=[], is_impossible=True)
    return context, qa


def squad_document(prefix, articles, per_article, seed, long_every=0, impossible_every=0):
    """SQuAD JSON: `articles` titled articles of `per_article` one-question paragraphs."""
    rng = random.Random(seed)
    data, k = [], 0
    for a in range(articles):
        paragraphs = []
        for _ in range(per_article):
            context, qa = make_question(rng, f"{prefix}{k}", long=bool(long_every) and k % long_every == 0,
                                        answerable=not (impossible_every and k % impossible_every == 1))
            paragraphs.append({"context": context, "qas": [qa]})
            k += 1
        data.append({"title": f"{prefix} article {a}", "paragraphs": paragraphs})
    return {"version": "v2.0" if impossible_every else "1.1", "data": data}


def write_json(path, document):
    path.write_text(json.dumps(document), encoding="utf-8")
    return document


def questions_of(document):
    """id -> (question, context, gold answer texts, title), in file order."""
    return {qa["id"]: (qa["question"], p["context"], [a["text"] for a in qa["answers"]], article["title"])
            for article in document["data"] for p in article["paragraphs"] for qa in p["qas"]}


def run(command, timeout=600):
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check_predictions(out, split, document, version_2=False):
    """`<split>_predictions.json` answers every question with a piece of its context (or "" in v2.0) and
    is the best of `<split>_nbest_predictions.json`, whose probabilities sum to 1."""
    questions = questions_of(document)
    predictions = json.loads((out / f"{split}_predictions.json").read_text())
    nbest = json.loads((out / f"{split}_nbest_predictions.json").read_text())
    assert set(predictions) == set(questions) == set(nbest)
    for qid, answer in predictions.items():
        context = questions[qid][1]
        assert isinstance(answer, str) and answer in context, (qid, answer)
        assert math.isclose(sum(c["probability"] for c in nbest[qid]), 1.0, abs_tol=1e-4), qid
        best = nbest[qid][0]  # the answer is the best candidate (in v2.0 "" when the null score is)
        assert best["text"] == answer, qid
        if answer:
            assert context[best["start"]:best["end"]] == answer, qid
        else:
            assert version_2 and best["start"] == -1, qid
    return predictions, nbest


@pytest.mark.slow
def test_squad_v1_kill_resume_and_serve(tmp_path, tiny_model_dir):
    write_json(tmp_path / "train.json", squad_document("t", 20, 12, seed=1, long_every=3))
    write_json(tmp_path / "dev.json", squad_document("d", 4, 10, seed=2, long_every=3))
    test_document = write_json(tmp_path / "test.json", squad_document("e", 4, 10, seed=3, long_every=3))
    out = tmp_path / "run"
    command = [sys.executable, SCRIPT, "--model", tiny_model_dir, "--train_file", str(tmp_path / "train.json"),
               "--validation_file", str(tmp_path / "dev.json"), "--test_file", str(tmp_path / "test.json"),
               "--epochs", "5", "--batch_size", "16", *LENGTHS, "--learning_rate", "0.003",
               "--output_dir", str(out), "--log_dir", str(tmp_path / "tb"), "--seed", "3"]

    kill_after_first_epoch(command, out)
    result = run(command)
    assert "resuming from the backup" in result.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= 1 and metrics["optimizer_steps"] == 5 * metrics["steps_per_epoch"]
    assert metrics["best_metric"] == "val_f1"
    assert metrics["num_examples"] == {"train": 240, "validation": 40, "test": 40}
    # more windows than questions: every third context is longer than a 48-token window
    assert metrics["steps_per_epoch"] > 240 // 16 and metrics["truncation"]["max_tokens"] > 48
    for split in ("validation", "test"):
        assert {"exact_match", "f1"} <= set(metrics[split]) and "HasAns_f1" not in metrics[split]
        # untrained the span is a random piece of filler (F1 ~5); trained it finds the name (F1 ~95-100)
        assert metrics[split]["f1"] > 75 and metrics[split]["exact_match"] > 60, metrics[split]
    assert not (out / "test_null_odds.json").exists()
    predictions, nbest = check_predictions(out, "test", test_document)
    check_predictions(out, "validation", json.loads((tmp_path / "dev.json").read_text()))
    # evaluated on its test file afterwards, the run gives the same scores and predictions files
    from tfbert.training.evaluation import evaluate_run

    assert evaluate_run(str(out), str(tmp_path / "test.json"))["test"] == metrics["test"]
    # SQuAD v2.0 questions for a v1.1 run: the error says what the run can be scored on (its flag is the run's)
    from tfbert.data.readers import DataError

    v2 = tmp_path / "v2.json"
    write_json(v2, squad_document("f", 2, 4, seed=6, impossible_every=2))
    with pytest.raises(DataError, match=r"The run was trained without unanswerable questions \(SQuAD v1.1\): it is "
                                        r"scored on v1.1 data only"):
        evaluate_run(str(out), str(v2))
    evaluated = out / "evaluations" / "test.json"
    assert json.loads((evaluated / "test_predictions.json").read_text()) == predictions
    again = json.loads((evaluated / "test_nbest_predictions.json").read_text())
    assert {qid: [(c["text"], c["start"], c["end"]) for c in candidates] for qid, candidates in again.items()} == \
        {qid: [(c["text"], c["start"], c["end"]) for c in candidates] for qid, candidates in nbest.items()}

    # the windows of a long test context, as training and serving make them
    import tensorflow as tf

    from tfbert.tasks.qa_windows import FEATURES, make_windows
    from tfbert.text import BertTokenizer

    questions = questions_of(test_document)
    ids = list(questions)
    long_id = max(ids, key=lambda q: len(questions[q][1]))
    windows = make_windows(BertTokenizer.from_pretrained(tiny_model_dir), tf.constant([questions[long_id][0]]),
                           tf.constant([questions[long_id][1]]), 48, 12, 16)
    features = {name: windows.features[name].numpy() for name in FEATURES}
    assert len(features["input_ids"]) >= 3

    # transformers reads the HF directory as a BertForQuestionAnswering with the same logits
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    import keras

    import tfbert.tasks  # noqa: F401  (registers the task models)

    hf = transformers.BertForQuestionAnswering.from_pretrained(out / "hf_model").eval()
    model = keras.models.load_model(out / "model.keras", compile=False)
    ours = np.asarray(model(features))
    with torch.no_grad():
        theirs = hf(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in features.items()})
    np.testing.assert_allclose(ours[..., 0], theirs.start_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours[..., 1], theirs.end_logits.numpy(), atol=1e-4)

    # the SavedModel in a process with only TensorFlow and TF Text: the same answers as the Python decoding
    saved = metrics["saved_model"]
    far = "".join(FILLER[i % len(FILLER)] + " " for i in range(260))
    far += "the winner was hello world . the film is great ."
    assert len(far) > 5000
    texts = [questions[q][0] for q in ids] + ["who was the winner ?", "", "who was the winner ?", ""]
    contexts = [questions[q][1] for q in ids] + [far, "", "", "the winner was foo ."]
    windows_json = json.dumps({k: v.tolist() for k, v in features.items()})
    script = f"""
import json, sys
import numpy as np
import tensorflow as tf, tensorflow_text  # noqa: F401
m = tf.saved_model.load({saved!r})
serve = m.signatures["serving_default"]
out = serve(question=tf.constant({texts!r}), context=tf.constant({contexts!r}))
features = {{k: tf.constant(np.array(v, np.int32)) for k, v in json.loads({windows_json!r}).items()}}
logits = m.signatures["encoded"](**features)
print(json.dumps({{"answer": [a.decode() for a in out["answer"].numpy()], "score": out["score"].numpy().tolist(),
                  "start": out["start"].numpy().tolist(), "end": out["end"].numpy().tolist(),
                  "outputs": sorted(serve.structured_outputs), "inputs": sorted(serve.structured_input_signature[1]),
                  "start_logits": logits["start_logits"].numpy().tolist(),
                  "end_logits": logits["end_logits"].numpy().tolist(),
                  "modules": sorted(m for m in ("tfbert", "torch", "transformers") if m in sys.modules)}}))
"""
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert served.returncode == 0, served.stderr[-3000:]
    got = json.loads(served.stdout.strip().splitlines()[-1])
    assert got["modules"] == []
    assert got["inputs"] == ["context", "question"] and got["outputs"] == ["answer", "end", "score", "start"]
    np.testing.assert_allclose(got["start_logits"], ours[..., 0], atol=1e-4)
    np.testing.assert_allclose(got["end_logits"], ours[..., 1], atol=1e-4)
    for i, qid in enumerate(ids):
        assert got["answer"][i] == predictions[qid], (qid, got["answer"][i], predictions[qid])
        best = nbest[qid][0]
        assert (got["start"][i], got["end"][i]) == (best["start"], best["end"]), qid
        assert contexts[i][got["start"][i]:got["end"][i]] == got["answer"][i]
        assert got["score"][i] == pytest.approx(best["probability"], abs=1e-3), qid
    # a context of some 1,300 tokens (about 50 windows), the answer near its end
    assert got["answer"][-4] == "hello world" and far[got["start"][-4]:got["end"][-4]] == "hello world"
    # nothing to answer from: no answer, start and end -1, no confidence
    for i in (-3, -2):
        assert (got["answer"][i], got["start"][i], got["end"][i], got["score"][i]) == ("", -1, -1, 0.0)
    assert got["answer"][-1] in contexts[-1]  # an empty question still gets a span of the context

    check_serving_ops(saved)  # last: it may xfail


def jsonl_line(title, context, qa):
    """A question as Hugging Face datasets write SQuAD (v2.0: empty answer lists)."""
    return json.dumps({"id": qa["id"], "title": title, "context": context, "question": qa["question"],
                       "answers": {"text": [a["text"] for a in qa["answers"]],
                                   "answer_start": [a["answer_start"] for a in qa["answers"]]}})


@pytest.mark.slow
def test_squad_v2_from_json_lines_split_by_title(tmp_path, tiny_model_dir):
    train = squad_document("t", 16, 10, seed=4, long_every=4, impossible_every=3)
    lines = [jsonl_line(article["title"], p["context"], qa)
             for article in train["data"] for p in article["paragraphs"] for qa in p["qas"]]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test_document = write_json(tmp_path / "test.json", squad_document("e", 3, 10, seed=5, long_every=4,
                                                                      impossible_every=3))
    out = tmp_path / "run"
    run([sys.executable, SCRIPT, "--model", tiny_model_dir, "--train_file", str(tmp_path / "train.jsonl"),
         "--validation_fraction", "0.25", "--test_file", str(tmp_path / "test.json"), "--epochs", "5",
         "--batch_size", "16", *LENGTHS, "--learning_rate", "0.003", "--output_dir", str(out),
         "--log_dir", str(tmp_path / "tb"), "--seed", "3"])

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["version_2_with_negative"] is True  # detected: no flag given
    assert metrics["num_examples"]["train"] + metrics["num_examples"]["validation"] == 160
    assert metrics["num_examples"]["validation"] == 40  # a quarter of the 16 articles of 10 questions and metrics["num_examples"]["test"] == 30
    for split in ("validation", "test"):
        assert {"exact_match", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh", "HasAns_exact",
                "NoAns_exact", "best_exact"} <= set(metrics[split]), metrics[split]
        assert metrics[split]["best_f1"] >= metrics[split]["f1"] - 1e-6
        # a third of the questions have no answer: answering all scores F1 ~0 on those (NoAns), answering
        # none ~0 on the rest (HasAns); trained it does both (F1 ~90, HasAns ~85-96, NoAns 100)
        assert metrics[split]["f1"] > 65 and metrics[split]["HasAns_f1"] > 50 and metrics[split]["NoAns_f1"] > 50, \
            metrics[split]

    # validation held out whole articles (titles), about a quarter of the questions
    train_questions = questions_of(train)
    validation = json.loads((out / "validation_predictions.json").read_text())
    held_out = {train_questions[q][3] for q in validation}
    assert set(validation) == {q for q, value in train_questions.items() if value[3] in held_out}

    predictions, nbest = check_predictions(out, "test", test_document, version_2=True)
    null_odds = json.loads((out / "test_null_odds.json").read_text())
    assert set(null_odds) == set(predictions)
    for qid, answer in predictions.items():  # "" exactly when the null score wins (threshold 0)
        assert (answer == "") == (null_odds[qid] > 0.0), (qid, answer, null_odds[qid])
        assert any(c["start"] == -1 and c["text"] == "" for c in nbest[qid])  # the null candidate
    assert any(a == "" for a in predictions.values()) and any(predictions.values())

    # the export answers as the Python decoding did, with no_answer
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    questions = questions_of(test_document)
    serve = tf.saved_model.load(metrics["saved_model"]).signatures["serving_default"]
    assert sorted(serve.structured_outputs) == ["answer", "end", "no_answer", "score", "start"]
    got = serve(question=tf.constant([questions[q][0] for q in questions]),
                context=tf.constant([questions[q][1] for q in questions]))
    answers = [a.decode() for a in got["answer"].numpy()]
    assert answers == [predictions[q] for q in questions]
    np.testing.assert_array_equal(got["no_answer"].numpy(), [a == "" for a in answers])
    np.testing.assert_array_equal(got["start"].numpy() == -1, got["no_answer"].numpy())
    empty = serve(question=tf.constant(["who was the winner ?"]), context=tf.constant([""]))
    assert empty["no_answer"].numpy().tolist() == [True] and empty["start"].numpy().tolist() == [-1]
    assert empty["answer"].numpy().tolist() == [b""] and empty["score"].numpy()[0] == pytest.approx(1.0)
    assert replay_warmup_requests(metrics["saved_model"], serve) == 2  # question and context, as a server does
    check_serving_ops(metrics["saved_model"])  # last: it may xfail


def test_bad_input_and_bad_lengths_fail_before_training(tmp_path):
    document = squad_document("t", 2, 3, seed=1)
    qa = document["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    write_json(tmp_path / "train.json", document)
    path = tmp_path / "train.json"
    result = subprocess.run([sys.executable, SCRIPT, "--model", "unused", "--train_file", str(path)],
                            capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path)
    assert result.returncode == 1 and not (tmp_path / "runs").exists()  # no empty run folder left
    assert "Traceback" not in result.stderr and "absl::InitializeLog" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"train_qa.py: error: {path}: data[0].paragraphs[0].qas[0] (id t0): answer "
                               f"{qa['answers'][0]['text']!r} is not at answer_start "
                               f"{qa['answers'][0]['answer_start']} of the context"), lines[0]
    assert "--skip_bad_rows" in lines[0]

    result = subprocess.run([sys.executable, SCRIPT, "--model", "unused", "--train_file", str(path),
                             "--doc_stride", "400", "--max_seq_length", "384"],
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "train_qa.py: error: run config: max_seq_length 384 leaves 317 context tokens per window after a question "
        "of max_query_length 64 and 3 special tokens; doc_stride (400) must be smaller, or the windows would not "
        "move forward")

    help_text = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, check=False,
                               timeout=300).stdout
    for flag in ("--doc_stride", "--max_query_length", "--n_best_size", "--max_answer_length",
                 "--version_2_with_negative", "--null_score_diff_threshold", "--train_file"):
        assert flag in help_text, flag
    for flag in ("--tag_scheme", "--tag_column", "--label_all_subtokens", "--text_pair_column", "--threshold "):
        assert flag not in help_text, flag
