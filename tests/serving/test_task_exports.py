"""Every task's export as TF Serving loads it: its warm-up requests fit its `serving_default` signature
(TF Serving replays them at load, and one that fails fails the load), and a batch in which no text has a
word is answered."""

import pytest
import tensorflow as tf

from conftest import TINY_WORDS, tiny_config
from serving_checks import replay_warmup_requests

NER_LABELS = ["O", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """export(task, text_pair=False) -> the version folder of a tiny random model's export, written once."""
    tmp_path = tmp_path_factory.mktemp("task_exports")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]) + "\n", encoding="utf-8")
    done = {}

    def export(task, text_pair=False):
        if (task, text_pair) not in done:
            done[task, text_pair] = _export(task, tmp_path / f"{task}-{text_pair}", str(vocab), text_pair)
        return done[task, text_pair]
    return export


def _export(task, tmp_path, tiny_vocab_file, text_pair=False):
    import keras

    from tfbert import BertBackbone
    from tfbert.export import export_saved_model
    from tfbert.tasks import BertClassifier
    from tfbert.tasks.fill_mask_serving import fill_mask_signatures
    from tfbert.tasks.masked_lm import BertMaskedLM
    from tfbert.tasks.ner_serving import tagging_signatures
    from tfbert.tasks.qa_serving import qa_signatures
    from tfbert.tasks.question_answerer import BertQuestionAnswerer
    from tfbert.tasks.token_classifier import BertTokenClassifier
    from tfbert.text import BertTokenizer

    keras.utils.set_random_seed(0)
    backbone = BertBackbone(tiny_config())
    tokenizer = BertTokenizer(tiny_vocab_file)
    base = str(tmp_path / task)
    if task == "classification":
        return export_saved_model(BertClassifier(backbone, num_classes=2), tokenizer, base, label_names=["a", "b"],
                                  text_pair=text_pair, max_seq_length=32)
    if task == "regression":
        return export_saved_model(BertClassifier(backbone, num_classes=1, task="regression"), tokenizer, base,
                                  task="regression", text_pair=text_pair, max_seq_length=32)
    model, signatures = {
        "token_classification": lambda: (BertTokenClassifier(backbone, num_labels=3), tagging_signatures(NER_LABELS)),
        "question_answering": lambda: (BertQuestionAnswerer(backbone), qa_signatures(8, 8, 10, 5, True)),
        "masked_lm": lambda: (BertMaskedLM(backbone), fill_mask_signatures()),
    }[task]()
    return export_saved_model(model, tokenizer, base, max_seq_length=32, signatures=signatures,
                              metadata={"task": task}, skip_padding=task != "question_answering")


@pytest.mark.parametrize("task, text_pair, inputs", [
    ("classification", False, ["text"]),
    ("classification", True, ["text", "text_pair"]),
    ("token_classification", False, ["text"]),
    ("question_answering", False, ["context", "question"]),
    ("masked_lm", False, ["text"]),
])
def test_warmup_requests_fit_the_signature(task, text_pair, inputs, exported):
    version_dir = exported(task, text_pair)
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    assert sorted(serve.structured_input_signature[1]) == inputs
    assert replay_warmup_requests(version_dir, serve) == 2  # a batch of one and one of several
    from tfbert.export import read_allowlist, saved_model_op_types

    assert not saved_model_op_types(version_dir) - read_allowlist()  # ops a stock TF Serving runs


def test_tagger_answers_a_batch_without_words(exported):
    # all-empty batches failed in the graph ("data.shape = [1,0] does not start with segment_ids.shape")
    loaded = tf.saved_model.load(exported("token_classification"))
    for texts in ([""], ["", "   "], ["\u200b"]):
        out = loaded.signatures["serving_default"](text=tf.constant(texts))
        assert out["num_entities"].numpy().tolist() == [0] * len(texts)
        assert out["tags"].numpy().tolist() == [[b""]] * len(texts)
        assert out["word_start"].numpy().tolist() == [[-1]] * len(texts)
        assert out["entity_start"].numpy().tolist() == [[-1]] * len(texts)
    mixed = loaded.signatures["serving_default"](text=tf.constant(["", "hello world"]))
    assert mixed["num_entities"].shape == [2] and mixed["words"].numpy().tolist()[1] == [b"hello", b"world"]
    for tokens in ([[""]], [["", ""], ["", ""]]):
        out = loaded.signatures["tokens"](tokens=tf.constant(tokens))
        assert out["num_entities"].numpy().tolist() == [0] * len(tokens)
        assert out["entity_text"].numpy().tolist() == [[b""]] * len(tokens)
    empty_row = loaded.signatures["tokens"](tokens=tf.zeros([1, 0], tf.string))
    assert empty_row["num_entities"].numpy().tolist() == [0]


@pytest.mark.parametrize("text_pair", [False, True])
def test_classify_refuses_an_example_without_its_text_features(text_pair, exported):
    # a misspelt feature name was answered as an empty text, with plausible scores
    from tfbert.serving import make_example

    classify = tf.saved_model.load(exported("classification", text_pair)).signatures["classify"]
    good = make_example("good movie", "a film" if text_pair else None)
    assert classify(inputs=tf.constant([good.SerializeToString()]))["scores"].shape == [1, 2]
    misspelt = tf.train.Example(features=tf.train.Features(feature={
        "sentence": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"good movie"]))}))
    cases = [("text", misspelt)] + ([("text_pair", make_example("good movie"))] if text_pair else [])
    for feature, example in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"Feature: {feature} .*required"):
            classify(inputs=tf.constant([good.SerializeToString(), example.SerializeToString()]))


def test_warmup_inputs_are_the_signature_texts_or_refused(tmp_path):
    from tfbert.export import ExportError, signature_string_inputs

    module = tf.Module()
    module.serve = tf.function(lambda text, ids: {"n": tf.size(text) + tf.size(ids)}, input_signature=[
        tf.TensorSpec([None], tf.string, name="text"), tf.TensorSpec([None], tf.int32, name="ids")])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    # an int input would be missing from the warm-up requests, and TF Serving's load would fail on them
    with pytest.raises(ExportError, match=r"signature 'serving_default' takes inputs other than texts \(ids\)"):
        signature_string_inputs(str(tmp_path))


def test_predict_reads_pre_split_sentences_for_a_tagger(exported, tmp_path, capsys):
    # {"tokens": [...]} lines (what train_ner.py reads) were predicted as raw text, JSON punctuation and all
    import json

    from serving_checks import load_predict_cli

    from tfbert.serving import LocalPredictor

    version_dir = exported("token_classification")
    sentences = [["hello", "world", "is", "good"], ["the", "movie"], ["a", "very", "bad", "film", "0", "1"]]
    lines = tmp_path / "sentences.jsonl"
    lines.write_text("".join(json.dumps({"tokens": words, "tags": ["O"] * len(words)}) + "\n"
                             for words in sentences), encoding="utf-8")
    cli = load_predict_cli()
    assert cli.main(["--export_dir", version_dir, "--input_file", str(lines), "--format", "jsonl",
                     "--batch_size", "2"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["tokens"] for r in records] == sentences
    # a tag per word, the `tokens` signature's; words without punctuation get the raw text's tags too
    signature = tf.saved_model.load(version_dir).signatures["tokens"]
    padded = [words + [""] * (6 - len(words)) for words in sentences]
    tags = signature(tokens=tf.constant(padded))["tags"].numpy().tolist()
    assert [r["tags"] for r in records] == [[t.decode() for t in row[:len(words)]] for row, words in zip(tags, sentences)]
    texts = LocalPredictor(version_dir).predict([" ".join(words) for words in sentences])
    assert [r["tags"] for r in records] == [[t for t in text["tags"] if t] for text in texts]
    assert sum(len(r["entities"]) for r in records) > 0  # (a random tagger: the check below checks something)
    for record in records:
        for entity in record["entities"]:  # word indices, end exclusive; the text is the words joined
            assert entity["text"] == " ".join(record["tokens"][entity["start"]:entity["end"]])
    # the table shows each sentence as its words joined
    assert cli.main(["--export_dir", version_dir, "--input_file", str(lines)]) == 0
    assert "hello world is good" in capsys.readouterr().out

    bad = tmp_path / "bad.jsonl"
    for second, message in (('{"tokens": ["a", ""]}', r'"tokens" must be a list of non-empty UTF-8 strings'),
                            ('{"tokens": ["a", "\\ud800"]}', r'"tokens" must be a list of non-empty UTF-8 strings'),
                            ('{"words": ["a"]}', r"no \"tokens\" field \(found 'words'\)"),
                            ('["a"]', r'expected \{"tokens": \[...\]\} \(as on the first line\), found an array'),
                            ("the movie", r"expected a JSON object")):
        bad.write_text('{"tokens": ["the", "movie"]}\n' + second + "\n", encoding="utf-8")
        assert cli.main(["--export_dir", version_dir, "--input_file", str(bad)]) == 1
        assert capsys.readouterr().err.startswith(f"predict.py: error: {bad}:2: ")
    classifier = exported("classification")  # a classifier reads raw text: such lines are a mistake
    assert cli.main(["--export_dir", classifier, "--input_file", str(lines)]) == 1
    assert capsys.readouterr().err.startswith(f'predict.py: error: {lines}: {{"tokens": [...]}} lines are pre-split '
                                              f"sentences for a token classifier (NER); the export {classifier} is a "
                                              "classification model")
    # TEXT arguments beside such a file: the lines were tagged as raw JSON text
    assert cli.main(["--export_dir", version_dir, "--input_file", str(lines), "hello world"]) == 1
    assert f'TEXT arguments and {{"tokens": [...]}} lines in {lines}:3: the one or the other' in capsys.readouterr().err


def test_predict_refuses_what_a_question_answerer_would_not_read(exported, tmp_path, capsys):
    import json

    from serving_checks import load_predict_cli

    cli = load_predict_cli()
    version_dir = exported("question_answering")
    # positional texts were dropped silently, answering the --question alone
    assert cli.main(["--export_dir", version_dir, "--question", "who?", "--context", "it is good", "extra"]) == 1
    assert "a question answerer reads no TEXT arguments (found 'extra')" in capsys.readouterr().err
    # a SQuAD file failed on its first line as broken JSON Lines
    squad = tmp_path / "dev.json"
    squad.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": "it is good", "qas": [{"id": "1", "question": "what?", "answers": []}]}]}]}, indent=2),
        encoding="utf-8")
    assert cli.main(["--export_dir", version_dir, "--input_file", str(squad)]) == 1
    assert capsys.readouterr().err.startswith(f'predict.py: error: {squad}: is SQuAD JSON ({{"data": [...]}}); ')
    # --context is a question answerer's: with a classifier it was ignored
    assert cli.main(["--export_dir", exported("classification"), "--context", "c", "good movie"]) == 1
    assert "--context without --question: this export is a classification model" in capsys.readouterr().err


@pytest.mark.parametrize("text_pair", [False, True])
def test_a_regression_export_answers_the_regress_api_as_its_serving_default(text_pair, exported, capsys):
    # predict.py offered classify only, and named `regress` among the export's signatures
    import json

    from serving_checks import load_predict_cli

    from tfbert.serving import LocalPredictor

    version_dir = exported("regression", text_pair)
    texts, pairs = ["good film", "a bad film", "hello world"], (["yes", "no", "maybe"] if text_pair else None)
    predictor = LocalPredictor(version_dir, batch_size=2)
    scores = [row["score"] for row in predictor.predict(texts, pairs)]
    assert predictor.regress(texts, pairs) == pytest.approx(scores, abs=1e-6) and len(set(scores)) == 3
    lines = [f"{t}\t{p}" for t, p in zip(texts, pairs)] if text_pair else texts
    cli = load_predict_cli()
    assert cli.main(["--export_dir", version_dir, "--signature", "regress", "--format", "jsonl", *lines]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["score"] for r in records] == pytest.approx(scores, abs=1e-6)
    assert cli.main(["--export_dir", version_dir, "--signature", "regress", *lines]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["text", *(["text_pair"] if text_pair else []), "score"]
    assert cli.main(["--export_dir", exported("classification"), "--signature", "regress", "good film"]) == 1
    assert "no signature 'regress'; the export has" in capsys.readouterr().err



@pytest.mark.parametrize("text_pair", [False, True])
def test_predict_reads_the_json_lines_a_classifier_trains_on(text_pair, exported, tmp_path, capsys):
    # {"text": ...} lines were predicted as raw text, braces and all
    import json

    from serving_checks import load_predict_cli

    from tfbert.serving import LocalPredictor

    version_dir = exported("classification", text_pair)
    texts, pairs = ["good film", "a bad film"], ["yes", "no"]
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps({"text": t, "label": "a", **({"text_pair": p} if text_pair else {})}) + "\n"
                             for t, p in zip(texts, pairs)), encoding="utf-8")
    cli = load_predict_cli()
    assert cli.main(["--export_dir", version_dir, "--input_file", str(lines), "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = LocalPredictor(version_dir).predict(texts, pairs if text_pair else None)
    assert [r["text"] for r in records] == texts and [r["label_id"] for r in records] == [e["label_id"] for e in
                                                                                         expected]
    for record, want in zip(records, expected):
        assert record["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    lines.write_text('{"text": "good film"}\n{"text": 3}\n', encoding="utf-8")
    assert cli.main(["--export_dir", version_dir, "--input_file", str(lines)]) == 1
    assert f'{lines}:2: "text" must be a UTF-8 string (as on the first line), found 3' in capsys.readouterr().err
