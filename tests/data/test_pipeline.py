"""Tests for tfbert.data.pipeline: padding modes, bucketing, determinism, pairs, labels, counts."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from tfbert.data.pipeline import (
    count_batches,
    default_bucket_boundaries,
    make_dataset,
    batch_sequences,
    sequence_lengths,
    padding_efficiency,
    static_lengths,
    steps_per_epoch,
    truncation_report,
)
from tfbert.data.readers import Examples
from tfbert.text.tokenizer import BertTokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "dog"]
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["label", "id"]
         + [f"##{d}" for d in range(10)] + ["##s"])
NUM_EXAMPLES = 150
MAX_SEQ_LENGTH = 64
BATCH_SIZE = 8
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizer:
    vocab_path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab_path.write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    return BertTokenizer(str(vocab_path))


def corpus(num_examples: int = NUM_EXAMPLES, seed: int = 0) -> tuple[Examples, np.ndarray]:
    """Texts "label<c> id<i> w w w ..." of 0-90 filler words: the id and the label can be
    read back from the tokens of every batch (they come first, so truncation keeps them)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, num_examples).astype(np.int32)
    texts = []
    for i, label in enumerate(labels):
        # A mix of lengths that spans every bucket of 64 (16, 32, 64) and some truncation.
        num_words = int(rng.choice([rng.integers(0, 12), rng.integers(12, 30), rng.integers(30, 90)]))
        filler = " ".join(rng.choice(WORDS + ["dogs", "cats"], num_words))
        texts.append(f"label{label} id{i} {filler}".strip())
    return Examples(texts=texts, labels=[str(label) for label in labels]), labels


def words_of(ids) -> list[str]:
    """Token ids back to words, WordPiece continuations merged, special tokens dropped."""
    words: list[str] = []
    for token in (VOCAB[i] for i in ids):
        if token.startswith("##") and words:
            words[-1] += token[2:]
        elif not token.startswith("["):
            words.append(token)
    return words


def read_back(features) -> list[tuple[int, int]]:
    """(id, label) encoded in each row of a batch."""
    rows = []
    for ids, mask in zip(np.asarray(features["input_ids"]), np.asarray(features["attention_mask"])):
        text = " ".join(words_of(ids[mask == 1]))
        rows.append((int(re.search(r"\bid(\d+)", text).group(1)), int(re.search(r"\blabel(\d+)", text).group(1))))
    return rows


@pytest.fixture(scope="module")
def data():
    return corpus()


@pytest.fixture(scope="module")
def bucketed(tokenizer, data):
    examples, labels = data
    return make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH,
                        shuffle=True, seed=1, padding="bucket")


@pytest.fixture(scope="module")
def per_batch(tokenizer, data):
    examples, labels = data
    return make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH,
                        shuffle=True, seed=1, padding="batch")


@pytest.fixture(scope="module")
def fixed(tokenizer, data):
    examples, labels = data
    return make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH,
                        shuffle=True, seed=1, padding="max_length", drop_remainder=True)


# ---- shapes, padding, counts ---------------------------------------------------------------


def test_default_bucket_boundaries():
    assert default_bucket_boundaries(128) == [16, 32, 64]
    assert default_bucket_boundaries(512) == [16, 32, 64, 128, 256]
    assert default_bucket_boundaries(100) == [16, 32, 64]
    assert default_bucket_boundaries(16) == []


@pytest.mark.parametrize("mode", ["bucket", "batch", "max_length"])
def test_shapes_dtypes_and_padding_per_mode(mode, bucketed, per_batch, fixed, tokenizer):
    dataset = {"bucket": bucketed, "batch": per_batch, "max_length": fixed}[mode]
    features_spec, labels_spec = dataset.element_spec
    assert sorted(features_spec) == ["attention_mask", "input_ids", "token_type_ids"]
    expected_shape = [BATCH_SIZE, MAX_SEQ_LENGTH] if mode == "max_length" else [None, None]
    for spec in features_spec.values():
        assert spec.dtype == tf.int32 and spec.shape.as_list() == expected_shape
    assert labels_spec.dtype == tf.int32 and labels_spec.shape.rank == 1
    sizes = []
    for features, labels in dataset:
        ids, types, mask = (features[name].numpy() for name in ("input_ids", "token_type_ids", "attention_mask"))
        assert ids.shape == types.shape == mask.shape and labels.shape == (ids.shape[0],)
        lengths = mask.sum(axis=1)
        # Real tokens first, then padding: pad id, type 0, mask 0.
        assert np.array_equal(mask, (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int32))
        assert np.all(ids[mask == 0] == tokenizer.pad_id) and np.all(types == 0)
        assert np.all(ids[:, 0] == tokenizer.cls_id)
        assert np.all(ids[np.arange(len(ids)), lengths - 1] == tokenizer.sep_id)
        assert lengths.max() <= MAX_SEQ_LENGTH
        if mode == "max_length":
            assert ids.shape[1] == MAX_SEQ_LENGTH
        else:
            assert ids.shape[1] == lengths.max()  # padded to the longest of the batch
        if mode == "bucket":
            buckets = np.searchsorted([16, 32], lengths, side="left")
            assert len(set(buckets)) == 1, f"a batch mixes buckets: lengths {lengths}"
        sizes.append(len(ids))
    if mode == "max_length":  # drop_remainder
        assert sizes == [BATCH_SIZE] * (NUM_EXAMPLES // BATCH_SIZE)


def test_bucketing_pads_less_and_yields_every_example_once_per_epoch(bucketed, per_batch, fixed, data):
    _, labels = data
    efficiency = {name: padding_efficiency(dataset)
                  for name, dataset in (("bucket", bucketed), ("batch", per_batch), ("max_length", fixed))}
    assert efficiency["bucket"] > efficiency["batch"] > efficiency["max_length"], efficiency
    assert efficiency["bucket"] > 0.8

    for dataset in (bucketed, per_batch):  # every example exactly once, with its own label
        seen = []
        for features, batch_labels in dataset:
            rows = read_back(features)
            # The label of each row is the one encoded in its text, and the one given for it.
            assert [label for _, label in rows] == batch_labels.numpy().tolist()
            assert [labels[i] for i, _ in rows] == batch_labels.numpy().tolist()
            seen += [i for i, _ in rows]
        assert sorted(seen) == list(range(NUM_EXAMPLES))


def test_batch_counts_are_exact_and_known_in_advance(tokenizer, bucketed, per_batch, fixed, data):
    examples, _ = data
    lengths = np.minimum(tokenizer.tokenize(examples.texts).row_lengths().numpy() + 2, MAX_SEQ_LENGTH)
    # Buckets of at most 16, 32 and 64 (= MAX_SEQ_LENGTH) tokens.
    bucket_sizes = np.bincount(np.searchsorted([16, 32], lengths, side="left"), minlength=3)
    assert np.count_nonzero(bucket_sizes) == 3  # the corpus fills every bucket
    expected_bucket_batches = int(sum(math.ceil(size / BATCH_SIZE) for size in bucket_sizes))

    def iterated(dataset):
        return sum(1 for _ in dataset)

    assert len(bucketed) == iterated(bucketed) == count_batches(bucketed) == expected_bucket_batches
    assert steps_per_epoch(examples, tokenizer, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH) \
        == expected_bucket_batches
    assert len(per_batch) == iterated(per_batch) == math.ceil(NUM_EXAMPLES / BATCH_SIZE)
    assert len(fixed) == iterated(fixed) == NUM_EXAMPLES // BATCH_SIZE
    assert steps_per_epoch(examples, tokenizer, batch_size=BATCH_SIZE, padding="max_length",
                           drop_remainder=True) == NUM_EXAMPLES // BATCH_SIZE


# ---- determinism, order, labels ------------------------------------------------------------


def test_every_padding_mode_switches_tf_data_autotuning_off(bucketed, per_batch, fixed, tokenizer, data):
    # With autotuning on, TF 2.21 deletes an iterator (Keras does after every epoch) only at the
    # autotuning thread's next scheduled pass: up to tens of seconds per epoch. Every pipeline that
    # `fit`, `evaluate` or `predict` iterates must come with it off, the repeated one too.
    examples, labels = data
    repeated = make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, repeat=True)
    for dataset in (bucketed, per_batch, fixed, repeated):
        assert dataset.options().autotune.enabled is False
    # A user's own options on top keep it off.
    options = tf.data.Options()
    options.deterministic = True
    assert bucketed.with_options(options).options().autotune.enabled is False


def test_sequence_lengths_of_any_element_structure_and_of_no_elements():
    # The MLM task counts its (ids, word starts) blocks with it; an empty corpus must give no lengths
    # (its "no tokens" error), not a failure inside numpy.
    lengths = [3, 1, 5]
    blocks = tf.data.Dataset.from_generator(
        lambda: ((np.arange(n, dtype=np.int32), np.ones([n], np.int32)) for n in lengths),
        output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)))
    counted = sequence_lengths(blocks, lambda ids, _: ids)
    assert counted.tolist() == lengths and counted.dtype == np.int64
    assert sequence_lengths(blocks.take(0), lambda ids, _: ids).shape == (0,)


def test_same_seed_same_epochs_other_seed_other_order_and_repeat_keeps_epochs_whole(tokenizer, data):
    examples, labels = data
    lengths = np.minimum(tokenizer.tokenize(examples.texts).row_lengths().numpy() + 2, MAX_SEQ_LENGTH)
    steps = int(sum(math.ceil(size / BATCH_SIZE)
                    for size in np.bincount(np.searchsorted([16, 32, 48], lengths, side="left"))))

    def epochs(seed, count=2):
        """`count` epochs of a repeated dataset: lists of (features, labels) numpy batches."""
        dataset = make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE,
                               max_seq_length=MAX_SEQ_LENGTH, shuffle=True, seed=seed, repeat=True,
                               bucket_boundaries=[16, 32, 48])
        with pytest.raises(ValueError, match="infinite"):
            count_batches(dataset)
        batches = [({name: value.numpy() for name, value in features.items()}, labels.numpy())
                   for features, labels in dataset.take(count * steps)]
        return [batches[i * steps:(i + 1) * steps] for i in range(count)]

    def order(epoch):
        return [i for features, _ in epoch for i, _ in read_back(features)]

    first, again, other = epochs(1), epochs(1), epochs(2, count=1)
    for epoch_a, epoch_b in zip(first, again):  # the same batches, epoch after epoch
        assert len(epoch_a) == len(epoch_b) == steps
        for (features_a, labels_a), (features_b, labels_b) in zip(epoch_a, epoch_b):
            assert np.array_equal(labels_a, labels_b)
            for name in features_a:
                assert np.array_equal(features_a[name], features_b[name])
    for epoch in first + other:  # each run of `steps` batches is one whole epoch
        assert sorted(order(epoch)) == list(range(NUM_EXAMPLES))
    assert order(first[0]) != order(first[1])  # shuffled again every epoch
    assert order(first[0]) != order(other[0])  # another seed, another order


def test_batch_padding_without_shuffle_keeps_order_and_regression_labels(tokenizer, data):
    examples, _ = data
    targets = np.linspace(-1.0, 1.0, NUM_EXAMPLES).astype(np.float32)
    dataset = make_dataset(examples, tokenizer, labels=targets, batch_size=BATCH_SIZE,
                           max_seq_length=MAX_SEQ_LENGTH, padding="batch")
    assert dataset.element_spec[1] == tf.TensorSpec([None], tf.float32)
    ids, values, first = [], [], None
    for features, labels in dataset:
        first = features if first is None else first
        ids += [i for i, _ in read_back(features)]
        values += labels.numpy().tolist()
    assert ids == list(range(NUM_EXAMPLES))
    assert np.array_equal(np.asarray(values, np.float32), targets)
    # The same ids as the tokenizer gives for the batch directly.
    direct = tokenizer(examples.texts[:BATCH_SIZE], max_length=MAX_SEQ_LENGTH)
    for name in direct:
        assert np.array_equal(first[name].numpy(), direct[name].numpy())


def test_bucket_without_labels_and_with_drop_remainder(tokenizer):
    examples, _ = corpus(40, seed=5)
    lengths = np.minimum(tokenizer.tokenize(examples.texts).row_lengths().numpy() + 2, MAX_SEQ_LENGTH)
    full_batches = int(np.sum(np.bincount(np.searchsorted([16, 32], lengths, side="left")) // 4))
    with pytest.warns(UserWarning, match="padding='batch'"):
        dataset = make_dataset(examples, tokenizer, labels=None, batch_size=4, max_seq_length=MAX_SEQ_LENGTH,
                               drop_remainder=True)
    assert isinstance(dataset.element_spec, dict)  # features only
    batches = [read_back(features) for features in dataset]
    assert len(dataset) == len(batches) == full_batches
    assert all(len(batch) == 4 for batch in batches)  # only full batches, one bucket's rest dropped
    ids = [i for batch in batches for i, _ in batch]
    assert len(set(ids)) == len(ids) > 40 - 3 * 4


def test_pairs_multi_hot_labels_stay_aligned(tokenizer):
    rng = np.random.default_rng(7)
    n, num_labels = 60, 4
    examples, _ = corpus(n, seed=7)
    pairs = [" ".join(rng.choice(WORDS, rng.integers(1, 40))) for _ in range(n)]
    examples = Examples(texts=examples.texts, labels=[], text_pairs=pairs)
    multi_hot = (rng.random([n, num_labels]) < 0.5).astype(np.float32)
    dataset = make_dataset(examples, tokenizer, labels=multi_hot, batch_size=BATCH_SIZE,
                           max_seq_length=MAX_SEQ_LENGTH, shuffle=True, seed=3)
    assert dataset.element_spec[1].shape.as_list() == [None, num_labels]
    assert dataset.element_spec[1].dtype == tf.float32
    direct = {name: value.numpy() for name, value in tokenizer(examples.texts, pairs, max_length=MAX_SEQ_LENGTH).items()}
    direct_lengths = direct["attention_mask"].sum(axis=1)
    seen = []
    for features, labels in dataset:
        ids, types, mask = (features[name].numpy() for name in ("input_ids", "token_type_ids", "attention_mask"))
        labels = labels.numpy()
        for row, (i, _) in enumerate(read_back(features)):
            seen.append(i)
            assert np.array_equal(labels[row], multi_hot[i])
            length = direct_lengths[i]
            assert mask[row].sum() == length
            assert np.array_equal(ids[row, :length], direct["input_ids"][i, :length])
            assert np.array_equal(types[row, :length], direct["token_type_ids"][i, :length])
            # Type 1 exactly from the token after the first [SEP] through the last [SEP].
            first_sep = int(np.argmax(ids[row] == tokenizer.sep_id))
            expected_types = np.zeros_like(types[row])
            expected_types[first_sep + 1:length] = 1
            assert np.array_equal(types[row], expected_types)
            assert 0 < first_sep < length - 2
    assert sorted(seen) == list(range(n))


# ---- truncation report and errors ----------------------------------------------------------


def test_truncation_report_counts_packed_lengths(tokenizer):
    # "cat" * k is k tokens, "dogs" is two (dog ##s); packed adds [CLS] and [SEP].
    texts = ["cat " * 8, "cat " * 9, "cat", "dogs " * 10, ""]  # 10, 11, 3, 22, 2 tokens packed
    report = truncation_report(Examples(texts=texts, labels=[]), tokenizer, max_seq_length=10)
    assert report == {"examples": 5, "truncated": 2, "max_tokens": 22, "mean_tokens": pytest.approx(48 / 5)}
    # Pairs add [CLS] and two [SEP]: 3 + 4 + 3 = 10, 1 + 6 + 3 = 10 and 2 + 8 + 3 = 13 tokens.
    pairs = Examples(texts=["cat " * 3, "cat", "dogs"], labels=[], text_pairs=["cat " * 4, "cat " * 6, "mat " * 8])
    assert truncation_report(pairs, tokenizer, 10) == {"examples": 3, "truncated": 1, "max_tokens": 13,
                                                       "mean_tokens": pytest.approx(33 / 3)}
    assert truncation_report(Examples(texts=[], labels=[]), tokenizer, 10) == {
        "examples": 0, "truncated": 0, "max_tokens": 0, "mean_tokens": 0.0}


def test_invalid_arguments_raise_before_any_work(tokenizer, data):
    examples, labels = data
    kwargs = dict(batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH)
    with pytest.raises(ValueError, match="padding must be one of"):
        make_dataset(examples, tokenizer, labels=labels, padding="longest", **kwargs)
    with pytest.raises(ValueError, match=r"one label per example \(150\), found shape \(149,\)"):
        make_dataset(examples, tokenizer, labels=labels[:-1], **kwargs)
    with pytest.raises(ValueError, match="LabelVocab.encode"):
        make_dataset(examples, tokenizer, labels=np.array(examples.labels), **kwargs)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_dataset(examples, tokenizer, labels=labels, bucket_boundaries=[32, 16], **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(examples, tokenizer, labels=labels, batch_size=0, max_seq_length=MAX_SEQ_LENGTH)
    with pytest.raises(ValueError, match="no room for the 3 special tokens"):
        make_dataset(Examples(texts=["a"], labels=[], text_pairs=["b"]), tokenizer, labels=None, batch_size=1,
                     max_seq_length=2, padding="batch")
    with pytest.raises(ValueError, match="no examples"):
        make_dataset(Examples(texts=[], labels=[]), tokenizer, labels=None, batch_size=1, padding="batch")


@pytest.mark.parametrize("padding", ["bucket", "batch", "max_length"])
def test_static_shapes_evaluation_pads_the_last_batches_and_loses_no_example(tokenizer, data, padding):
    examples, labels = data
    dataset = make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH,
                           padding=padding, static_shapes=True)
    allowed = static_lengths(MAX_SEQ_LENGTH, padding)
    assert allowed == ([MAX_SEQ_LENGTH] if padding == "max_length" else [16, 32, 64])
    plain = make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH,
                         padding=padding)
    assert len(dataset) == len(plain)  # the same batches, filled up
    features_spec, _, weights_spec = dataset.element_spec
    assert features_spec["input_ids"].shape[0] == BATCH_SIZE and weights_spec.shape == [BATCH_SIZE]
    seen, shapes, padding_rows = [], set(), 0
    for (features, batch_labels, weights), (plain_features, plain_labels) in zip(dataset, plain):
        shapes.add(tuple(features["input_ids"].shape))
        weights = weights.numpy()
        real = weights == 1
        assert set(np.unique(weights)) <= {0.0, 1.0} and real[: int(real.sum())].all()  # padding rows last
        rows = read_back({k: v.numpy()[real] for k, v in features.items()})
        assert rows == read_back(plain_features)  # the same examples, in the same order
        assert [label for _, label in rows] == batch_labels.numpy()[real].tolist() == plain_labels.numpy().tolist()
        # a padding row is all padding; longer rows are padded, never cut
        assert (features["attention_mask"].numpy()[~real] == 0).all()
        assert (features["input_ids"].numpy()[~real] == tokenizer.pad_id).all()
        assert features["attention_mask"].numpy()[real].sum() == plain_features["attention_mask"].numpy().sum()
        length = plain_features["input_ids"].shape[1]
        assert features["input_ids"].shape[1] == min(n for n in allowed if n >= length)
        seen += [i for i, _ in rows]
        padding_rows += int((~real).sum())
    assert sorted(seen) == list(range(NUM_EXAMPLES))
    assert {shape[0] for shape in shapes} == {BATCH_SIZE}
    lengths_seen = {shape[1] for shape in shapes}
    # (the length of each batch was checked above; unsorted batches of 8 rarely all fit in 16 or 32 tokens)
    assert lengths_seen == set(allowed) if padding != "batch" else lengths_seen <= set(allowed)
    assert padding_rows == len(dataset) * BATCH_SIZE - NUM_EXAMPLES


@pytest.mark.parametrize("padding", ["bucket", "batch"])
def test_static_shapes_training_takes_whole_batches_of_fixed_lengths(tokenizer, data, padding):
    examples, labels = data
    dataset = make_dataset(examples, tokenizer, labels=labels, batch_size=BATCH_SIZE, max_seq_length=MAX_SEQ_LENGTH,
                           padding=padding, static_shapes=True, drop_remainder=True, shuffle=True, seed=4)
    assert len(dataset.element_spec) == 2  # no weights: every row is an example
    epochs = [[(tuple(f["input_ids"].shape), read_back(f)) for f, _ in dataset] for _ in range(2)]
    for epoch in epochs:
        assert len(epoch) == len(dataset) == steps_per_epoch(examples, tokenizer, batch_size=BATCH_SIZE,
                                                             max_seq_length=MAX_SEQ_LENGTH, padding=padding,
                                                             drop_remainder=True)
        assert {shape for shape, _ in epoch} <= {(BATCH_SIZE, n) for n in (16, 32, 64)}
        ids = [i for _, rows in epoch for i, _ in rows]
        assert len(set(ids)) == len(ids) > NUM_EXAMPLES - 4 * BATCH_SIZE
    assert epochs[0] != epochs[1]  # reshuffled every epoch


def test_static_shapes_pad_token_labels_with_their_own_value():
    # Per-token labels (NER) get the labels' padding value on padded positions and on padding rows.
    lengths = [3, 7, 20, 5, 2]
    elements = [({"input_ids": np.arange(1, n + 1, dtype=np.int32)}, np.full([n], 2, np.int32)) for n in lengths]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(elements), output_signature=({"input_ids": tf.TensorSpec([None], tf.int32)},
                                                  tf.TensorSpec([None], tf.int32)))
    batches = list(batch_sequences(dataset, len(lengths), ({"input_ids": 0}, -100), batch_size=4, max_seq_length=32,
                                   padding="batch", static_shapes=True, lengths=np.array(lengths)))
    assert [tuple(f["input_ids"].shape) for f, _, _ in batches] == [(4, 32), (4, 16)]
    first_labels = batches[0][1].numpy()
    assert (first_labels[0, :3] == 2).all() and (first_labels[0, 3:] == -100).all()
    last_features, last_labels, last_weights = (t.numpy() if not isinstance(t, dict) else t for t in batches[1])
    assert last_weights.tolist() == [1, 0, 0, 0]
    assert (last_labels[1:] == -100).all() and (last_features["input_ids"].numpy()[1:] == 0).all()


def test_static_shapes_without_labels_need_drop_remainder(tokenizer, data):
    examples, _ = data
    with pytest.raises(ValueError, match=r"needs \(features, labels\) elements"):
        make_dataset(examples, tokenizer, labels=None, batch_size=BATCH_SIZE, padding="batch", static_shapes=True)
    dataset = make_dataset(examples, tokenizer, labels=None, batch_size=BATCH_SIZE, padding="batch",
                           static_shapes=True, drop_remainder=True)
    assert dataset.element_spec["input_ids"].shape.as_list() == [BATCH_SIZE, None]
