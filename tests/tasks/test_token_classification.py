"""The NER task's features: labels aligned to sub-tokens exactly as transformers' run_ner.py aligns
them (first sub-token, or every sub-token with B- -> I-), truncation, batching with -100 padding."""

import os

import numpy as np
import pytest

from tfbert.data.conll import TaggedSentences
from tfbert.data.readers import DataError
from tfbert.tasks.token_classification import IGNORE_LABEL, encode_sentences, features_dataset, sentence_predictions
from tfbert.text import BertTokenizer

transformers = pytest.importorskip("transformers")

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = TaggedSentences(
    words=[["hello", "world", "playing", "unable"], ["Héllo", "xyzzy", "foo", "bar"], ["good"],
           ["the", "movie", "was", "unplayable", "in", "the", "world"]],
    tags=[["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"], ["O"],
          ["O", "O", "O", "B-LOC", "O", "O", "B-PER"]],
    sources=[f"s.conll:{i}" for i in range(4)])


def reference_labels(hf, words, tags, max_length, label_all):
    """transformers' examples/pytorch/token-classification/run_ner.py tokenize_and_align_labels."""
    tag_ids = {t: i for i, t in enumerate(TAGS)}
    b_to_i = {i: tag_ids.get("I-" + t[2:], i) if t.startswith("B-") else i for t, i in tag_ids.items()}
    encoding = hf(words, is_split_into_words=True, truncation=True, max_length=max_length)
    labels, previous = [], None
    for word in encoding.word_ids():
        if word is None:
            labels.append(-100)
        elif word != previous:
            labels.append(tag_ids[tags[word]])
        else:
            labels.append(b_to_i[tag_ids[tags[word]]] if label_all else -100)
        previous = word
    return encoding["input_ids"], labels


@pytest.mark.parametrize("max_length", [32, 6])
@pytest.mark.parametrize("label_all", [False, True])
def test_labels_align_like_run_ner_and_long_sentences_become_windows(tiny_vocab_file, max_length, label_all):
    tokenizer = BertTokenizer(tiny_vocab_file)
    hf = transformers.BertTokenizerFast.from_pretrained(os.path.dirname(tiny_vocab_file))
    encoded = encode_sentences(SENTENCES, tokenizer, max_length, {t: i for i, t in enumerate(TAGS)}, label_all)
    budget, stride = max_length - 2, max(1, (max_length - 2) // 2)
    for index, (words, tags) in enumerate(zip(SENTENCES.words, SENTENCES.tags)):
        windows = np.nonzero(encoded.window_sentence == index)[0]
        # the first window is what transformers gives with truncation
        ids, labels = reference_labels(hf, words, tags, max_length, label_all)
        assert encoded.input_ids[windows[0]].tolist() == ids
        assert encoded.labels[windows[0]].tolist() == labels
        # all windows together: every token of the untruncated sequence, half a window apart
        full_ids, full_labels = reference_labels(hf, words, tags, 512, label_all)
        assert len(windows) == (1 if len(full_ids) - 2 <= budget else 1 + -(-(len(full_ids) - 2 - budget) // stride))
        for k, window in enumerate(windows):
            assert encoded.input_ids[window].tolist() == [2] + full_ids[1:-1][k * stride:k * stride + budget] + [3]
            assert encoded.labels[window].tolist() == [-100] + full_labels[1:-1][k * stride:k * stride + budget] + [-100]
        word_ids = hf(words, is_split_into_words=True).word_ids()[1:-1]
        expected = [word_ids.index(w) if w in word_ids else -1 for w in range(len(words))]
        assert encoded.first_tokens[index].tolist() == expected
        # each word's prediction is read at its first token, in the window that centres it best
        positions = {w: np.arange(len(encoded.input_ids[w])) - 1 + k * stride for k, w in enumerate(windows)}
        assert sentence_predictions(encoded, positions, index, windows).tolist() == expected
    assert encoded.windowed == (2 if max_length == 6 else 0)  # the 6- and 7-token sentences


def test_unknown_tag_names_the_sentence(tiny_vocab_file):
    with pytest.raises(DataError, match="s.conll:1: tag 'I-LOC' does not occur"):
        encode_sentences(TaggedSentences([["a"], ["b"]], [["O"], ["I-LOC"]], ["s.conll:0", "s.conll:1"]),
                         BertTokenizer(tiny_vocab_file), 16, {"O": 0, "B-LOC": 1})


def test_batches_pad_labels_with_ignore(tiny_vocab_file):
    from tfbert.data import pipeline

    tokenizer = BertTokenizer(tiny_vocab_file)
    encoded = encode_sentences(SENTENCES, tokenizer, 32, {t: i for i, t in enumerate(TAGS)})
    dataset = pipeline.batch_sequences(
        features_dataset(encoded), len(SENTENCES), ({"input_ids": tokenizer.pad_id, "token_type_ids": 0,
                                                     "attention_mask": 0}, IGNORE_LABEL),
        batch_size=4, max_seq_length=32, padding="batch")
    features, labels = next(iter(dataset))
    lengths = [len(ids) for ids in encoded.input_ids][:4]
    assert features["input_ids"].shape == (4, max(lengths)) and labels.shape == (4, max(lengths))
    for row, length in enumerate(lengths):
        assert np.all(labels[row, length:] == IGNORE_LABEL)
        assert np.all(features["attention_mask"][row, :length] == 1)
        assert np.all(features["attention_mask"][row, length:] == 0)


def test_a_ten_thousand_word_sentence_is_windowed_not_lost(tiny_vocab_file):
    words = ["hello", "world", "the", "film"] * 2500
    tags = ["B-PER", "I-PER", "O", "O"] * 2500
    encoded = encode_sentences(TaggedSentences([words], [tags], ["long.conll:1"]), BertTokenizer(tiny_vocab_file), 32,
                               {t: i for i, t in enumerate(TAGS)})
    windows = np.arange(len(encoded.input_ids))
    assert len(windows) == 1 + -(-(10_000 - 30) // 15) and encoded.windowed == 1
    assert max(len(ids) for ids in encoded.input_ids) == 32
    # reading each window's labels back gives every word its own tag
    labels = {w: encoded.labels[w] for w in windows}
    assert [TAGS[i] for i in sentence_predictions(encoded, labels, 0, windows)] == tags


def test_label_set_is_the_whole_training_files(tmp_path):
    from tfbert.tasks.token_classification import TokenClassificationTask
    from tfbert.training.run_config import TokenClassifierRunConfig

    sentences = [f"the\tO\nfilm{i}\tB-PER" for i in range(9)] + ["foo\tB-RARE"]
    (tmp_path / "train.conll").write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    data = TokenClassificationTask().load_data(TokenClassifierRunConfig(
        train_file=str(tmp_path / "train.conll"), validation_fraction=0.3, max_train_examples=2, seed=0))
    # the rare tag is known wherever the split and the subset put its sentence
    assert data.label_names == ["O", "B-PER", "B-RARE"] and len(data.train) == 2 and len(data.validation) == 3


def test_the_tag_scheme_read_is_said(tmp_path):
    # IOB1 or BIOES files were converted without a word: the log and metrics.json now say what was found
    from tfbert.tasks.token_classification import TokenClassificationTask
    from tfbert.training.run_config import TokenClassifierRunConfig

    files = {"iob2.conll": "Ada B-PER\nLovelace I-PER\n", "bioes.conll": "Ada B-PER\nLovelace E-PER\n\nBob S-PER\n",
             "iob1.conll": "Ada I-PER\nLovelace I-PER\n"}
    for name, text in files.items():
        (tmp_path / name).write_text((text + "\nmet O\n") * 3, encoding="utf-8")
        data = TokenClassificationTask().load_data(TokenClassifierRunConfig(train_file=str(tmp_path / name),
                                                                            validation_fraction=0))
        assert data.description == {"iob2.conll": f"{tmp_path / name} (IOB2 tags)",
                                    "bioes.conll": f"{tmp_path / name} (BIOES tags, trained as IOB2)",
                                    "iob1.conll": f"{tmp_path / name} (IOB1 tags, trained as IOB2)"}[name]


def test_tensorflows_retracing_warning_about_the_evaluation_functions_is_dropped(caplog):
    # a search printed it while exporting its best model: one trace per batch length and per trial's model is
    # the design (bucket padding), not the mistake the warning is about
    import logging

    import tfbert.tasks.base  # noqa: F401  (installs the filter)

    tensorflow_logger = logging.getLogger("tensorflow")
    ours = ("5 out of the last 8 calls to <function _predictions.<locals>.<lambda> at 0x7f> triggered tf.function "
            "retracing. Tracing is expensive")
    theirs = "5 out of the last 5 calls to <function user_step at 0x7f> triggered tf.function retracing."
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        tensorflow_logger.warning(ours)
        tensorflow_logger.warning(theirs)
    assert [r.getMessage() for r in caplog.records] == [theirs]
