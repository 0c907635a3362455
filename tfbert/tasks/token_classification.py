"""Token classification (named-entity recognition) as a task on the one runner.

Reads tagged sentences (CoNLL or JSON Lines, IOB1/IOB2/BIOES; WNUT-17 by default, shipped in the
package), tokenizes the given words with the in-graph tokenizer (transformers'
`is_split_into_words=True`) and labels the FIRST sub-token of each word with its IOB2 tag; the other
sub-tokens, [CLS], [SEP] and padding get -100 and are skipped by the loss and the metrics, as in
transformers' `run_ner.py` (`--label_all_subtokens` labels every sub-token instead, B- becoming I-
after the first). A word's prediction is the tag at its first sub-token. Entity-level precision,
recall and F1 are computed over whole sentences (`tfbert.metrics.ner_metrics`, checked against
seqeval's default mode; `strict_f1` as its strict IOB2 mode). A sentence longer than `max_seq_length`
becomes overlapping windows, in training and at prediction (in the SavedModel too), so every word gets
exactly one tag.
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np
import tensorflow as tf

from tfbert import datasets
from tfbert import metrics as metric_fns
from tfbert.data import conll, pipeline
from tfbert.data.readers import DataError
from tfbert.export import export_saved_model
from tfbert.tasks.base import Task, TaskData, predict_batches, read_file_splits, report_skipped
from tfbert.tasks.ner_serving import tagging_signatures
from tfbert.tasks.token_classifier import IGNORE_LABEL, BertTokenClassifier

logger = logging.getLogger("tfbert")

TOKENIZE_BATCH_SIZE = 256


def window_layout(num_tokens: int, budget: int) -> tuple[int, int]:
    """(number of windows, stride) of a sentence of `num_tokens` sub-tokens when a window holds
    `budget` (= max_seq_length - 2). Window k covers tokens [k * stride, k * stride + budget)."""
    stride = max(1, budget // 2)
    if num_tokens <= budget:
        return 1, stride
    return 1 + -(-(num_tokens - budget) // stride), stride


def window_of_token(tokens: np.ndarray, windows: int, stride: int, budget: int) -> np.ndarray:
    """The window each token's prediction comes from: the one whose centre is nearest (integer
    arithmetic, so `ner_serving` computes the same in the graph)."""
    return np.clip((2 * tokens - budget + stride) // (2 * stride), 0, windows - 1)


@dataclasses.dataclass
class Encoded:
    """A split's sentences as model features: windows of at most max_seq_length tokens (numpy).

    A sentence longer than `max_seq_length - 2` sub-tokens becomes overlapping windows (stride half a
    window); each token is predicted in the window whose centre is nearest, so every word gets exactly
    one tag (that of its first sub-token) and none is lost to the length limit.

    Attributes:
        input_ids / labels: per window, the packed [CLS] ... [SEP] sequence and its label ids (-100 where
            unlabelled).
        window_sentence: the sentence of each window; windows of a sentence are consecutive.
        first_tokens: per sentence, each word's first sub-token (index into the sentence's tokens), -1 for
            a word that gives no token.
        num_tokens: per sentence, its number of sub-tokens.
        budget: tokens per window (max_seq_length - 2).
        windowed: sentences split into more than one window.
    """

    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    window_sentence: np.ndarray
    first_tokens: list[np.ndarray]
    num_tokens: np.ndarray
    budget: int
    windowed: int


@dataclasses.dataclass
class TaggedData(TaskData):
    _encoded: dict = dataclasses.field(default_factory=dict, repr=False)


def encode_sentences(sentences: conll.TaggedSentences, tokenizer, max_seq_length: int, tag_ids: dict[str, int],
                     label_all_subtokens: bool = False) -> Encoded:
    """Tokenizes the words of every sentence (in batches, in the graph), aligns the tags and cuts long
    sentences into windows.

    Raises:
        DataError: a tag that the label set does not know (e.g. a type seen only in validation),
            naming the sentence's file and line.
    """
    ids_out, labels_out, window_sentence, first_out, num_tokens, windowed = [], [], [], [], [], 0
    budget = max_seq_length - 2
    for start in range(0, len(sentences), TOKENIZE_BATCH_SIZE):
        words = sentences.words[start:start + TOKENIZE_BATCH_SIZE]
        tokens = tokenizer.tokenize_words(tf.ragged.constant(words, dtype=tf.string))
        splits = tokens.ids.row_splits.numpy()
        flat_ids, flat_words = tokens.ids.flat_values.numpy(), tokens.word_ids.flat_values.numpy()
        for row, sentence_words in enumerate(words):
            index = start + row
            ids = flat_ids[splits[row]:splits[row + 1]]
            word_ids = flat_words[splits[row]:splits[row + 1]]
            first = np.full(len(sentence_words), -1, np.int32)
            is_first = np.ones(len(word_ids), bool)
            is_first[1:] = word_ids[1:] != word_ids[:-1]
            first[word_ids[is_first]] = np.nonzero(is_first)[0]
            labels = np.full(len(ids), IGNORE_LABEL, np.int32)
            if sentences.tags:
                try:
                    tags = np.array([tag_ids[tag] for tag in sentences.tags[index]], np.int32)
                except KeyError as e:
                    raise DataError(f"tag {e.args[0]!r} does not occur in the training data (known: "
                                    f"{', '.join(tag_ids)})", sentences.sources[index]) from None
                token_tags = tags[word_ids]
                if label_all_subtokens:
                    inside = np.array([tag_ids.get("I-" + tag[2:], tag_ids[tag]) if tag.startswith("B-") else
                                       tag_ids[tag] for tag in sentences.tags[index]], np.int32)
                    labels = np.where(is_first, token_tags, inside[word_ids]).astype(np.int32)
                else:
                    labels = np.where(is_first, token_tags, IGNORE_LABEL).astype(np.int32)
            windows, stride = window_layout(len(ids), budget)
            windowed += windows > 1
            for k in range(windows):
                cut = slice(k * stride, k * stride + budget)
                ids_out.append(np.concatenate([[tokenizer.cls_id], ids[cut], [tokenizer.sep_id]]).astype(np.int32))
                labels_out.append(np.concatenate([[IGNORE_LABEL], labels[cut], [IGNORE_LABEL]]).astype(np.int32))
                window_sentence.append(index)
            first_out.append(first)
            num_tokens.append(len(ids))
    return Encoded(ids_out, labels_out, np.array(window_sentence, np.int64), first_out,
                   np.array(num_tokens, np.int64), budget, int(windowed))


def sentence_predictions(encoded: Encoded, window_predictions: dict, sentence: int,
                         windows: np.ndarray) -> np.ndarray:
    """Per word of a sentence: its first sub-token's prediction, taken from the window nearest to
    centring it (-1 for a word without tokens). `window_predictions[w]` holds window w's per-position
    predictions (position 0 is [CLS]); `windows` are the sentence's window indices, in order."""
    first = encoded.first_tokens[sentence]
    count, stride = window_layout(int(encoded.num_tokens[sentence]), encoded.budget)
    present = first >= 0
    chosen = window_of_token(first[present], count, stride, encoded.budget)
    out = np.full(len(first), -1, np.int64)
    out[present] = [window_predictions[windows[k]][token - k * stride + 1]
                    for token, k in zip(first[present], chosen)]
    return out


def _ragged(rows: list[np.ndarray]) -> tf.RaggedTensor:
    lengths = np.array([len(row) for row in rows], np.int64)
    flat = np.concatenate(rows) if rows else np.zeros([0], np.int32)
    return tf.RaggedTensor.from_row_lengths(flat, lengths)


def features_dataset(encoded: Encoded, order: np.ndarray | None = None) -> tf.data.Dataset:
    """Unpadded (features, labels) per sentence, in `order` (default: the split's order)."""
    order = np.arange(len(encoded.input_ids)) if order is None else order
    ids = _ragged([encoded.input_ids[i] for i in order])
    labels = _ragged([encoded.labels[i] for i in order])

    def features(input_ids, label_ids):
        ones = tf.ones_like(input_ids)
        return {"input_ids": input_ids, "token_type_ids": tf.zeros_like(input_ids), "attention_mask": ones}, label_ids

    # Slices of a ragged tensor are ragged specs; inside `map` they are plain 1-D tensors.
    return tf.data.Dataset.from_tensor_slices((ids, labels)).map(features)


@keras.saving.register_keras_serializable(package="tfbert")
class MaskedTokenAccuracy(keras.metrics.Mean):
    """Accuracy over the labelled tokens only (labels != -100): the progress-bar metric of NER."""

    def __init__(self, name: str = "token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        mask = keras.ops.cast(keras.ops.not_equal(y_true, IGNORE_LABEL), "float32")
        correct = keras.ops.cast(keras.ops.equal(keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32"), y_true),
                                 "float32")
        return super().update_state(correct, sample_weight=mask)


class TokenClassificationTask(Task):
    """`train_ner.py`'s task: `TokenClassifierRunConfig` -> `BertTokenClassifier`."""

    name = "token_classification"

    def read_file(self, config, path: str) -> conll.TaggedSentences:
        sentences = conll.read_tagged(path, token_column=config.token_column, tag_column=config.tag_column,
                                      scheme=config.tag_scheme, skip_bad_rows=config.skip_bad_rows)
        if sentences.scheme != "iob2":
            logger.info("%s: %s tags, read as IOB2", path, sentences.scheme.upper())
        return sentences

    def check_labels(self, config, examples: conll.TaggedSentences, data: TaskData) -> None:
        """An unknown tag fails naming its line (not after training, nor as a wrong score)."""
        tags = data.label_names
        unknown = next(((tag, k, words[k], source) for sentence, words, source in
                        zip(examples.tags, examples.words, examples.sources)
                        for k, tag in enumerate(sentence) if tag not in tags), None)
        if unknown:
            tag, k, word, source = unknown
            raise DataError(f"tag {tag!r} of token {k + 1} ({word!r}) of the sentence does not occur in the "
                            f"training data (known: {', '.join(tags)})", source)

    def load_data(self, config) -> TaggedData:
        if config.dataset:
            name = config.dataset[len("tfds:"):] if config.dataset.startswith("tfds:") else config.dataset
            tfds_read = dict(data_dir=config.tfds_data_dir, scheme=config.tag_scheme)
            train = report_skipped(conll.read_tfds_tagged(name, "train", **tfds_read))
            validation = test = None
            for split in ("validation", "dev"):
                try:
                    validation = report_skipped(conll.read_tfds_tagged(name, split, **tfds_read))
                    break
                except DataError as e:
                    if "no split" not in str(e):
                        raise
            try:
                test = report_skipped(conll.read_tfds_tagged(name, "test", **tfds_read))
            except DataError as e:
                if "no split" not in str(e):
                    raise
            held_out = validation is None
            if held_out:
                train, validation = _split(train, config.validation_fraction, config.seed, config.dataset)
            description = f"tfds:{name}"
        elif config.train_file:
            train, validation, test = read_file_splits(
                config, lambda path: self.read_file(config, path),
                lambda sentences: _split(sentences, config.validation_fraction, config.seed, config.train_file))
            held_out = not config.validation_file
            description = config.train_file
        else:
            held_out = False
            train, validation, test = (report_skipped(self.read_file(config, datasets.path("wnut17", f"{split}.conll")))
                                       for split in ("train", "validation", "test"))
            description = "WNUT-17 (emerging entities, CC BY 4.0, shipped with tfbert)"
        # The label set is that of the whole training file (before --max_train_examples), and of a
        # validation split held out of it (a rare tag may land only there); a validation file of its
        # own must not bring tags the model never trains on.
        held_out = held_out and validation is not None
        tags = conll.TaggedSentences(train.words + (validation.words if held_out else []),
                                     train.tags + (validation.tags if held_out else [])).tag_names()
        if config.max_train_examples and len(train) > config.max_train_examples:
            keep = np.random.default_rng(config.seed).permutation(len(train))[: config.max_train_examples]
            train = train.select(np.sort(keep))
        if len(tags) < 2:
            raise DataError(f"the training data has only the tag(s) {tags}; token classification needs at "
                            "least two (e.g. O and B-PER)", config.train_file or "train")
        # the tag scheme read (detected, or --tag_scheme), which metrics.json's "data" and the log say too
        schemes = list(dict.fromkeys(split.scheme.upper() for split in (train, validation, test) if split is not None))
        description += f" ({', '.join(schemes)} tags" + (", trained as IOB2)" if schemes != ["IOB2"] else ")")
        data = TaggedData(train, validation, test, tags, description)
        for split in (validation, test):
            if split is not None:
                self.check_labels(config, split, data)
        return data

    @staticmethod
    def encoded(data: TaggedData, split: str, tokenizer, max_seq_length: int,
                label_all_subtokens: bool = False) -> Encoded:
        """A split's features, encoded once per (max_seq_length, label_all_subtokens)."""
        key = (split, max_seq_length, label_all_subtokens)
        if key not in data._encoded:
            tag_ids = {tag: i for i, tag in enumerate(data.label_names)}
            data._encoded[key] = encode_sentences(data.split(split), tokenizer, max_seq_length, tag_ids,
                                                  label_all_subtokens)
        return data._encoded[key]

    def eval_order(self, data: TaggedData, split: str, tokenizer, config) -> np.ndarray:
        """Evaluation batches go shortest first, in a known order (so that predictions map back to
        their sentences) and with little padding."""
        encoded = self.encoded(data, split, tokenizer, config.max_seq_length, config.label_all_subtokens)
        return np.argsort([len(ids) for ids in encoded.input_ids], kind="stable")

    def make_dataset(self, data: TaggedData, split: str, tokenizer, config, training: bool):
        encoded = self.encoded(data, split, tokenizer, config.max_seq_length, config.label_all_subtokens)
        order = None if training else self.eval_order(data, split, tokenizer, config)
        lengths = np.array([len(encoded.input_ids[i]) for i in (order if order is not None else
                                                                 range(len(encoded.input_ids)))])
        padding_values = ({"input_ids": tokenizer.pad_id, "token_type_ids": 0, "attention_mask": 0}, IGNORE_LABEL)
        return pipeline.batch_sequences(features_dataset(encoded, order).cache(), len(lengths), padding_values,
                                        lengths=lengths, **config.batching(training, keep_order=True))

    def truncation_report(self, data: TaggedData, tokenizer, max_seq_length: int) -> dict:
        encoded = self.encoded(data, "train", tokenizer, max_seq_length)
        lengths = encoded.num_tokens + 2  # packed lengths before windowing
        # Nothing is truncated: a longer sentence is split into windows (see `Encoded`).
        return {"examples": len(lengths), "truncated": 0, "windowed": encoded.windowed,
                "max_tokens": int(lengths.max()) if len(lengths) else 0,
                "mean_tokens": float(lengths.mean()) if len(lengths) else 0.0}

    def build_model(self, config, data: TaggedData, dtype) -> BertTokenClassifier:
        return BertTokenClassifier.from_pretrained(config.model, num_labels=len(data.label_names), dtype=dtype,
                                                   dropout=config.dropout, label_names=data.label_names)

    def train_metrics(self, config) -> list:
        return [MaskedTokenAccuracy()]

    def metric_names(self, config) -> list[str]:
        return ["accuracy", "f1", "precision", "recall", "strict_f1"]

    def default_best_metric(self, config) -> str:
        return "val_f1"

    def predict_tags(self, model, dataset, data: TaggedData, split: str, tokenizer, config,
                     with_loss: bool = False):
        """Per sentence of the split (in its order): the predicted tag of each word; and, with
        `with_loss`, the mean loss over the labelled tokens of all windows (else None)."""
        encoded = self.encoded(data, split, tokenizer, config.max_seq_length, config.label_all_subtokens)
        order = self.eval_order(data, split, tokenizer, config)
        names = np.array(data.label_names + ["O"])  # index -1 (a word without tokens) -> "O"
        window_predictions = {}
        position = 0
        loss_sum, loss_count = 0.0, 0
        loss_fn = model.default_loss()
        for _, labels, logits in predict_batches(model, dataset):
            count = int(np.sum(labels != IGNORE_LABEL)) if with_loss else 0
            if count:
                loss_sum += float(loss_fn(labels, logits)) * count
                loss_count += count
            for row in logits.argmax(-1):
                window_predictions[order[position]] = row
                position += 1
        starts = np.searchsorted(encoded.window_sentence, np.arange(len(encoded.first_tokens)))
        ends = np.searchsorted(encoded.window_sentence, np.arange(len(encoded.first_tokens)), side="right")
        predicted = [list(names[sentence_predictions(encoded, window_predictions, sentence,
                                                     np.arange(starts[sentence], ends[sentence]))])
                     for sentence in range(len(encoded.first_tokens))]
        return predicted, ((loss_sum / loss_count if loss_count else 0.0) if with_loss else None)

    def evaluate(self, model, dataset, data: TaggedData, split: str, tokenizer, config,
                 with_loss: bool = False) -> dict:
        predicted, loss = self.predict_tags(model, dataset, data, split, tokenizer, config, with_loss)
        truth = data.split(split).tags
        result = metric_fns.ner_metrics(truth, predicted)
        words = sum(len(sentence) for sentence in truth)
        correct = sum(t == p for ts, ps in zip(truth, predicted) for t, p in zip(ts, ps))
        strict = metric_fns.ner_metrics(truth, predicted, mode="strict")  # seqeval's mode="strict", IOB2
        out = {"precision": result["precision"], "recall": result["recall"], "f1": result["f1"],
               "strict_f1": strict["f1"],
               "accuracy": correct / words if words else 0.0, "per_type": result["per_type"],
               "report": format_entity_report(result)}
        if with_loss:
            out["loss"] = loss
        return out

    def data_for_export(self, run_dir: str, config) -> TaggedData:
        return TaggedData(None, None, None, super().data_for_export(run_dir, config).label_names, run_dir)

    def export(self, model, tokenizer, data: TaskData, config, base_dir: str, version: int | None = None,
               overwrite: bool = False) -> str:
        return export_saved_model(model, tokenizer, base_dir, version, max_seq_length=config.max_seq_length,
                                  signatures=tagging_signatures(data.label_names), overwrite=overwrite,
                                  metadata={"task": "token_classification", "labels": data.label_names})


def format_entity_report(result: dict) -> str:
    """The per-type scores of `ner_metrics` as a table, as seqeval's classification_report prints it."""
    rows = [(name, scores["precision"], scores["recall"], scores["f1"], scores["support"])
            for name, scores in result["per_type"].items()]
    rows.append(("micro avg", result["precision"], result["recall"], result["f1"], result["support"]))
    width = max(len(row[0]) for row in rows)
    lines = [f"{'':>{width}}  precision  recall  f1-score  support"]
    lines += [f"{name:>{width}}  {p:9.4f}  {r:6.4f}  {f:8.4f}  {s:7d}" for name, p, r, f, s in rows]
    return "\n".join(lines)


def _split(sentences: conll.TaggedSentences, fraction: float, seed: int, path: str):
    if fraction <= 0:
        return sentences, None  # --validation_fraction 0: train on every sentence, keep the last epoch
    order = np.random.default_rng(seed).permutation(len(sentences))
    cut = max(1, int(round(len(sentences) * fraction)))
    if cut >= len(sentences):
        raise DataError(f"{len(sentences)} sentence(s) are too few to hold out {fraction:.0%} for validation", path)
    train, validation = sentences.select(np.sort(order[cut:])), sentences.select(np.sort(order[:cut]))
    return train, validation
