"""Readers that turn user data into `Examples`: texts, labels and where each came from.

Supported sources (see `read_examples`):

* ``.csv`` (comma, RFC 4180 quoting, quoted fields may span lines),
* ``.tsv`` / ``.txt`` (tab separated, one record per line, no quoting, as in GLUE),
* ``.jsonl`` / ``.json`` / ``.ndjson`` (JSON Lines: one object per line),
* a directory with one sub-folder per label and one text file per example,
* ``tfds:<name>[/<config>][<split>]``, a prepared TensorFlow Datasets dataset.

Every problem with the data is raised as `DataError` whose message starts with
``path:line: `` (``path: `` when no line applies), so that the user can jump to it in an
editor. With ``skip_bad_rows=True`` row-level problems are recorded in `Examples.skipped`
instead; file-level problems (missing file, missing column, empty file) always raise.

This module is pure Python + numpy; TensorFlow (Datasets) is imported only by `read_tfds`.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from tfbert.errors import TfbertError

TASKS = ("classification", "multi_label", "regression")
FILE_FORMATS = ("csv", "tsv", "jsonl", "folder", "tfds")
DEFAULT_TEXT_COLUMNS = ("text", "sentence")
DEFAULT_LABEL_COLUMN = "label"
TFDS_PREFIX = "tfds:"

Column = str | int | None

_FORMAT_ALIASES = {"csv": "csv", "tsv": "tsv", "txt": "tsv", "jsonl": "jsonl", "json": "jsonl",
                   "ndjson": "jsonl", "folder": "folder", "directory": "folder", "dir": "folder",
                   "tfds": "tfds"}
_EXTENSION_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl",
                      ".json": "jsonl", ".ndjson": "jsonl"}
_INTEGER_LABEL = re.compile(r"[+-]?[0-9]+")
# How many known labels an "unknown label" error lists before it truncates.
_MAX_LABELS_IN_MESSAGE = 20


class DataError(TfbertError):
    """A problem with user data: the message starts with ``path:line: `` or ``path: ``.

    Attributes:
        location: ``"path:line"`` or ``"path"`` (or None when unknown).
        reason: the message without the location prefix.
    """

    def __init__(self, reason: str, location: str | None = None):
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}" if location else reason)


@dataclasses.dataclass
class Examples:
    """Examples read from one source, in file order.

    Attributes:
        texts: the (first) text of each example, stripped of surrounding whitespace.
        labels: one raw label per example: `str` for classification, `list[str]` for
            multi-label, `float` for regression. Empty when the source had no label column
            (prediction input). With ``require_labels=False`` a row whose label is missing
            has `None`.
        text_pairs: the second text of each example for sentence-pair tasks, else None.
        sources: where each example came from, ``"path:line"`` (the line where the record
            starts, 1-based) or ``"tfds:name[split]:#index"`` (0-based record index).
        skipped: ``"path:line: reason"`` for every row dropped under ``skip_bad_rows``.
    """

    texts: list[str]
    labels: list
    text_pairs: list[str] | None = None
    sources: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if not self.sources:
            self.sources = [f"example #{i}" for i in range(n)]
        if len(self.sources) != n:
            raise ValueError(f"Examples: {n} texts but {len(self.sources)} sources")
        if self.labels and len(self.labels) != n:
            raise ValueError(f"Examples: {n} texts but {len(self.labels)} labels "
                             "(labels must be empty or one per text)")
        if self.text_pairs is not None and len(self.text_pairs) != n:
            raise ValueError(f"Examples: {n} texts but {len(self.text_pairs)} text_pairs")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_labels(self) -> bool:
        """True when every example has a label."""
        return bool(self.labels) and all(label is not None for label in self.labels)

    def select(self, indices: Sequence[int]) -> "Examples":
        """Returns the examples at `indices` (in that order); `skipped` is not carried over."""
        indices = [int(i) for i in indices]
        return Examples(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices] if self.labels else [],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            sources=[self.sources[i] for i in indices],
            skipped=[],
        )


# ---- public entry points -------------------------------------------------------------------


def read_examples(
    path: str | os.PathLike,
    *,
    text_column: Column = None,
    text_pair_column: Column = None,
    label_column: Column = None,
    file_format: str | None = None,
    has_header: bool | None = None,
    task: str = "classification",
    label_delimiter: str = ",",
    skip_bad_rows: bool = False,
    require_labels: bool = True,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Examples:
    """Reads text (and text-pair) examples with their labels from a file, folder or TFDS.

    Columns are given by header name (or JSON key, or TFDS feature name) or by 0-based
    index. Defaults: the text is the column named ``text`` or else ``sentence``, the label
    is ``label``. A CSV/TSV file has a header when `has_header` says so or, when it is None,
    when its first row contains one of the named columns (or ``text``/``sentence``/
    ``label`` for the defaults). Without a header the defaults are text = column 0 and
    label = column 1, or text = 0, pair = 1, label = 2 when a pair column is asked for.

    Blank lines are ignored. Texts are stripped of surrounding whitespace.

    Args:
        path: a ``.csv``, ``.tsv``/``.txt``, ``.jsonl``/``.json`` file, a folder with one
            sub-folder per label, or ``"tfds:name[/config][split]"`` (split defaults to
            ``train``, e.g. ``"tfds:glue/sst2[validation]"``).
        text_column: the text column; see above for the default.
        text_pair_column: the second text of a sentence pair, or None for single texts.
        label_column: the label column; see above for the default.
        file_format: one of ``csv``, ``tsv``, ``jsonl``, ``folder``, ``tfds``; inferred
            from the path when None.
        has_header: whether a CSV/TSV file starts with a header row; detected when None.
        task: ``classification`` (labels are strings), ``multi_label`` (labels are split on
            `label_delimiter` into lists of strings) or ``regression`` (labels are floats).
        label_delimiter: separator of the labels in one multi-label cell.
        skip_bad_rows: record bad rows in `Examples.skipped` instead of raising.
        require_labels: a missing label is an error. When False (prediction input), a
            source without a label column gives ``labels == []`` and a missing label in a
            row gives None.
        data_dir: TFDS data directory (``tfds:`` paths only).
        download: let TFDS download and prepare a dataset that is not prepared yet
            (``tfds:`` paths only).

    Returns:
        The examples, in file order.

    Raises:
        DataError: the data cannot be read; the message names the file and line.
        ValueError: an argument is invalid (unknown task or format, ...).

    Example:
        examples = read_examples("train.csv", text_column="review", label_column="stars")
        examples.sources[0]  # "train.csv:2": the first data row, after the header.
    """
    path = os.fspath(path)
    _check_task(task)
    for role, column in (("text_column", text_column), ("text_pair_column", text_pair_column),
                         ("label_column", label_column)):
        _check_column_arg(role, column)
    if task == "multi_label" and not label_delimiter:
        raise ValueError("label_delimiter must be a non-empty string for task='multi_label'")
    fmt = _infer_format(path, file_format)
    options = _RowOptions(task=task, label_delimiter=label_delimiter,
                          skip_bad_rows=skip_bad_rows, require_labels=require_labels)
    if fmt == "tfds":
        name, split = _parse_tfds_path(path)
        return read_tfds(name, split, data_dir, text_column, text_pair_column, label_column,
                         task=task, label_delimiter=label_delimiter, skip_bad_rows=skip_bad_rows,
                         require_labels=require_labels, download=download)
    if fmt == "folder":
        if any(c is not None for c in (text_column, text_pair_column, label_column)):
            raise ValueError(f"{path}: text_column, text_pair_column and label_column do not "
                             "apply to a folder of label sub-folders")
        return _read_folder(path, options)
    if not os.path.exists(path):
        raise DataError("file not found", path)
    if os.path.isdir(path):
        raise DataError(f"is a directory, but file_format is {fmt!r}; use file_format='folder' "
                        "for a folder with one sub-folder per label", path)
    lines = _read_lines(path)
    if not any(text.strip() for text, _ in lines):
        raise DataError("the file is empty (no rows)", path)
    if fmt == "jsonl":
        return _read_jsonl(path, lines, text_column, text_pair_column, label_column, options)
    return _read_delimited(path, lines, fmt, text_column, text_pair_column, label_column,
                           has_header, options)


def open_tfds_builder(name: str, data_dir: str | os.PathLike | None = None, download: bool = False):
    """The prepared TFDS builder of `name` (prepared first when `download`).

    Raises:
        DataError: unknown dataset, or not prepared in `data_dir` (with what to run to prepare it).
    """
    import tensorflow_datasets as tfds  # Lazy: the rest of the module needs no TensorFlow.

    where = f"{TFDS_PREFIX}{name}"
    data_dir = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"no TFDS dataset named {name!r} (neither registered with TFDS nor "
                        f"found in data_dir {data_dir!r}): {first_line}", where) from e
    except (ValueError, KeyError, AssertionError) as e:
        raise DataError(f"cannot construct the TFDS builder: {e}", where) from e
    if not builder.is_prepared():
        if not download:
            shown_dir = data_dir or "the default TFDS data_dir (~/tensorflow_datasets)"
            raise DataError(
                f"the dataset is not prepared in {shown_dir}; prepare it once (needs network) "
                f"with `tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'}` or "
                f"`tfds.builder({name!r}, data_dir=...).download_and_prepare()`, or pass "
                "download=True", where)
        builder.download_and_prepare()
    return builder


def read_tfds(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    text_column: Column = None,
    text_pair_column: Column = None,
    label_column: Column = None,
    *,
    task: str = "classification",
    label_delimiter: str = ",",
    skip_bad_rows: bool = False,
    require_labels: bool = True,
    download: bool = False,
) -> Examples:
    """Reads examples from a prepared TensorFlow Datasets dataset.

    Text features (bytes) are decoded as UTF-8; `ClassLabel` labels become their names
    (``info.features[label].int2str``), a sequence of `ClassLabel` becomes a list of names
    (multi-label); a ClassLabel value of -1 (e.g. GLUE test splits) is a missing label.
    Sources are ``"tfds:name[split]:#i"`` with `i` the 0-based record index.

    Args:
        name: the TFDS name, with an optional config: ``"imdb_reviews"``, ``"glue/sst2"``.
        split: a TFDS split, e.g. ``"train"``, ``"validation"``, ``"train[:10%]"``.
        data_dir: the TFDS data directory; None for TFDS's default.
        text_column: text feature name or index in ``info.features``; default ``text`` or
            ``sentence``.
        text_pair_column: second text feature for sentence pairs, or None.
        label_column: label feature; default ``label`` (optional when not require_labels).
        task: ``classification``, ``multi_label`` or ``regression``.
        label_delimiter: separator for multi-label string features.
        skip_bad_rows: record bad records in `Examples.skipped` instead of raising.
        require_labels: a missing label (or label feature) is an error.
        download: download and prepare the dataset when it is not prepared in `data_dir`.
            Without it nothing is downloaded.

    Returns:
        The examples in the order TFDS yields them (files are not shuffled).

    Raises:
        DataError: unknown dataset, dataset not prepared, unknown split or feature, or a bad
            record.

    Example:
        examples = read_tfds("glue/sst2", "validation", data_dir="~/tensorflow_datasets")
        examples.sources[0]  # "tfds:glue/sst2[validation]:#0"
    """
    _check_task(task)
    for role, column in (("text_column", text_column), ("text_pair_column", text_pair_column),
                         ("label_column", label_column)):
        _check_column_arg(role, column)
    import tensorflow_datasets as tfds  # Lazy: the rest of the module needs no TensorFlow.

    builder = open_tfds_builder(name, data_dir, download)

    where = f"{TFDS_PREFIX}{name}[{split}]"
    features = builder.info.features
    feature_names = list(features.keys())
    found = f"features found: {_join(feature_names)}"

    def resolve(column: Column, role: str, defaults: Sequence[str], required: bool) -> str | None:
        if isinstance(column, int):
            if column >= len(feature_names):
                raise DataError(f"{role} index {column} is out of range; {found}", where)
            return feature_names[column]
        if isinstance(column, str):
            if column not in features:
                raise DataError(f"{role} {column!r} not found; {found}", where)
            return column
        for candidate in defaults:
            if candidate in features:
                return candidate
        if required:
            wanted = " or ".join(repr(d) for d in defaults)
            raise DataError(f"no {role}: expected a feature named {wanted}; {found}; "
                            f"pass {role.replace(' ', '_')}", where)
        return None

    text_key = resolve(text_column, "text column", DEFAULT_TEXT_COLUMNS, True)
    pair_key = None if text_pair_column is None else resolve(text_pair_column, "text pair column",
                                                             (), True)
    label_key = resolve(label_column, "label column", (DEFAULT_LABEL_COLUMN,),
                        require_labels or label_column is not None)
    to_label = _tfds_label_converter(tfds, features[label_key]) if label_key else None

    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except (ValueError, KeyError) as e:
        raise DataError(f"cannot read split {split!r} ({e}); splits found: "
                        f"{_join(list(builder.info.splits.keys()))}", where) from e

    options = _RowOptions(task=task, label_delimiter=label_delimiter,
                          skip_bad_rows=skip_bad_rows, require_labels=require_labels)
    collector = _Collector(where, options, with_labels=label_key is not None,
                           with_pairs=pair_key is not None)
    for index, record in enumerate(tfds.as_numpy(dataset)):
        location = f"{where}:#{index}"
        try:
            text = _tfds_text(record[text_key], text_key)
            pair = _tfds_text(record[pair_key], pair_key) if pair_key else None
            label = to_label(record[label_key]) if to_label else None
            collector.add(location, text, f"feature {text_key!r}", pair,
                          f"feature {pair_key!r}", label, f"feature {label_key!r}")
        except _RowError as e:
            collector.reject(location, str(e))
    return collector.finish(empty_reason=f"split {split!r} has no records")


def train_validation_split(
    examples: Examples,
    validation_fraction: float,
    seed: int,
    stratify: bool = True,
) -> tuple[Examples, Examples]:
    """Splits examples into training and validation sets, deterministically for a seed.

    Single-label classification examples (all labels strings) are split per class when
    `stratify`: every class with at least 2 examples lands in both sets, and the set sizes
    are within the number of classes of the requested fraction. Regression, multi-label or
    unlabelled examples get a plain shuffled split. Both sets are shuffled.

    Args:
        examples: the examples to split.
        validation_fraction: share of examples for validation, in (0, 1).
        seed: seed of the numpy random Generator.
        stratify: keep class proportions for single-label classification.

    Returns:
        ``(train, validation)``; `skipped` stays with the input `examples`.

    Raises:
        ValueError: the fraction is not in (0, 1) or there are fewer than 2 examples.

    Example:
        train, validation = train_validation_split(examples, 0.1, seed=0)
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), found {validation_fraction!r}")
    train, validation = _split(examples, (1.0 - validation_fraction, validation_fraction),
                               seed, stratify)
    return train, validation


def train_validation_test_split(
    examples: Examples,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    stratify: bool = True,
) -> tuple[Examples, Examples, Examples]:
    """Splits examples into training, validation and test sets; see `train_validation_split`.

    Args:
        examples: the examples to split.
        fractions: shares of (train, validation, test); non-negative, summing to 1, with a
            positive train share. A zero share gives an empty set.
        seed: seed of the numpy random Generator.
        stratify: keep class proportions for single-label classification; classes too
            small for every set go to train first, then validation.

    Returns:
        ``(train, validation, test)``.

    Raises:
        ValueError: invalid fractions or too few examples for the non-empty sets.
    """
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, validation, test), found {fractions!r}")
    train, validation, test = _split(examples, tuple(float(f) for f in fractions), seed, stratify)
    return train, validation, test


@dataclasses.dataclass
class LabelVocab:
    """Maps label strings to ids and back.

    Labels are sorted numerically when all are integers (``"2" < "10"``), otherwise
    lexicographically, so the same training labels always give the same ids.

    Attributes:
        labels: the labels; a label's id is its index.

    Example:
        vocab = LabelVocab.build(train_examples, "classification")
        ids = vocab.encode(train_examples, "classification")   # int32 [n]
        vocab.save("model_dir/labels.txt")
        assert LabelVocab.load("model_dir/labels.txt") == vocab
    """

    labels: list[str]

    def __post_init__(self) -> None:
        self.labels = list(self.labels)
        self._ids: dict[str, int] = {}
        for i, label in enumerate(self.labels):
            if not isinstance(label, str):
                raise ValueError(f"LabelVocab: label #{i} must be a string, found {label!r}")
            if not label or "\n" in label or "\r" in label:
                raise ValueError(f"LabelVocab: label #{i} {label!r} is empty or contains a line "
                                 "break; labels are stored one per line")
            if label in self._ids:
                raise ValueError(f"LabelVocab: duplicate label {label!r} at #{self._ids[label]} "
                                 f"and #{i}")
            self._ids[label] = i

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @classmethod
    def build(cls, examples: Examples, task: str) -> "LabelVocab":
        """Builds the vocabulary of the labels in `examples` (the training set).

        Args:
            examples: labelled examples.
            task: ``classification`` or ``multi_label`` (labels flattened).

        Returns:
            The vocabulary, sorted as described in the class docstring.

        Raises:
            ValueError: `task` is regression or unknown.
            DataError: the examples have no labels, a missing label, or a label that cannot
                be stored one per line (empty, or containing a line break).
        """
        _check_task(task)
        if task == "regression":
            raise ValueError("LabelVocab: regression labels are numbers; there is no label "
                             "vocabulary for task='regression'")
        if not examples.labels:
            raise DataError("cannot build a label vocabulary: the examples have no labels")
        seen: set[str] = set()
        for source, label in zip(examples.sources, examples.labels):
            for one in _labels_of(label, task, source):
                if not one or "\n" in one or "\r" in one:
                    raise DataError(f"label {one!r} cannot be stored in a label vocabulary (one "
                                    "label per line): it is empty or contains a line break",
                                    source)
                seen.add(one)
        if not seen:
            raise DataError("cannot build a label vocabulary: no example has a label")
        return cls(_sorted_labels(seen))

    def encode(self, examples: Examples, task: str) -> np.ndarray:
        """Encodes the labels of `examples`.

        Args:
            examples: labelled examples.
            task: ``classification`` or ``multi_label``.

        Returns:
            int32 ids of shape ``[n]`` for classification; float32 multi-hot of shape
            ``[n, num_labels]`` for multi-label.

        Raises:
            DataError: no labels, a missing label, or a label not in the vocabulary (naming
                the example's source and listing the known labels).
        """
        _check_task(task)
        if task == "regression":
            raise ValueError("LabelVocab.encode: task='regression' labels need no vocabulary; "
                             "use np.asarray(examples.labels, np.float32)")
        if not examples.labels:
            raise DataError("cannot encode labels: the examples have no labels")
        n = len(examples.labels)
        if task == "classification":
            ids = np.empty([n], np.int32)
            for i, (source, label) in enumerate(zip(examples.sources, examples.labels)):
                (one,) = _labels_of(label, task, source)
                ids[i] = self._id(one, source)
            return ids
        multi_hot = np.zeros([n, len(self.labels)], np.float32)
        for i, (source, label) in enumerate(zip(examples.sources, examples.labels)):
            for one in _labels_of(label, task, source):
                multi_hot[i, self._id(one, source)] = 1.0
        return multi_hot

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Returns the label strings of integer `ids`."""
        result = []
        for value in np.asarray(ids).reshape([-1]).tolist():
            if not 0 <= int(value) < len(self.labels):
                raise ValueError(f"LabelVocab.decode: id {value} is out of range "
                                 f"[0, {len(self.labels)})")
            result.append(self.labels[int(value)])
        return result

    def save(self, path: str | os.PathLike) -> None:
        """Writes one label per line (UTF-8), creating the parent directory."""
        from tfbert.fileio import atomic_write

        with atomic_write(path, newline="\n") as f:
            f.write("".join(label + "\n" for label in self.labels))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelVocab":
        """Reads a vocabulary written by `save` (one label per line, UTF-8).

        Raises:
            DataError: missing or empty file, invalid UTF-8, an empty or duplicate label.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise DataError("label vocabulary file not found", path)
        labels: list[str] = []
        first_line: dict[str, int] = {}
        lines = _read_lines(path)
        # A final empty line is just the terminator of the last label.
        while lines and lines[-1][0] in ("", "\n", "\r\n"):
            lines.pop()
        for number, (text, bad) in enumerate(lines, start=1):
            location = f"{path}:{number}"
            if bad:
                raise DataError(bad, location)
            label = text.rstrip("\n").rstrip("\r")
            if not label:
                raise DataError("empty label line in the label vocabulary", location)
            if label in first_line:
                raise DataError(f"duplicate label {label!r} (first on line {first_line[label]})",
                                location)
            first_line[label] = number
            labels.append(label)
        if not labels:
            raise DataError("the label vocabulary file is empty", path)
        return cls(labels)

    def _id(self, label: str, source: str) -> int:
        label_id = self._ids.get(label)
        if label_id is None:
            shown = [repr(known) for known in self.labels[:_MAX_LABELS_IN_MESSAGE]]
            if len(self.labels) > _MAX_LABELS_IN_MESSAGE:
                shown.append(f"... ({len(self.labels) - _MAX_LABELS_IN_MESSAGE} more)")
            raise DataError(f"label {label!r} is not in the label vocabulary of "
                            f"{len(self.labels)} labels (known labels: {', '.join(shown)})",
                            source)
        return label_id


# ---- row parsing shared by all formats -----------------------------------------------------


class _RowError(Exception):
    """A problem confined to one row: raised, or recorded under skip_bad_rows."""


@dataclasses.dataclass
class _RowOptions:
    task: str
    label_delimiter: str
    skip_bad_rows: bool
    require_labels: bool


class _Collector:
    """Validates rows into `Examples`, raising or recording the bad ones."""

    def __init__(self, path: str, options: _RowOptions, with_labels: bool, with_pairs: bool):
        self.path = path
        self.options = options
        self.with_labels = with_labels
        self.texts: list[str] = []
        self.labels: list[Any] = []
        self.pairs: list[str] | None = [] if with_pairs else None
        self.sources: list[str] = []
        self.skipped: list[str] = []

    def add(self, location: str, text: Any, text_name: str, pair: Any, pair_name: str,
            label: Any, label_name: str) -> None:
        """Adds one row; raises `_RowError` (adding nothing) when it is bad."""
        text = _clean_text(text, text_name)
        if self.pairs is not None:
            pair = _clean_text(pair, pair_name)
        if self.with_labels:
            label = _parse_label(label, label_name, self.options)
        self.texts.append(text)
        if self.pairs is not None:
            self.pairs.append(pair)
        if self.with_labels:
            self.labels.append(label)
        self.sources.append(location)

    def reject(self, location: str, reason: str) -> None:
        if not self.options.skip_bad_rows:
            raise DataError(reason, location)
        self.skipped.append(f"{location}: {reason}")

    def finish(self, empty_reason: str) -> Examples:
        if not self.texts:
            if self.skipped:
                raise DataError(f"no examples left after skipping {len(self.skipped)} bad rows; "
                                f"the first: {self.skipped[0]}", self.path)
            raise DataError(f"no examples: {empty_reason}", self.path)
        return Examples(texts=self.texts, labels=self.labels, text_pairs=self.pairs,
                        sources=self.sources, skipped=self.skipped)


def _clean_text(value: Any, name: str) -> str:
    if value is None:
        raise _RowError(f"empty text in {name}")
    if not isinstance(value, str):
        raise _RowError(f"expected a string in {name}, found {type(value).__name__} {value!r}")
    value = value.strip()
    if not value:
        raise _RowError(f"empty text in {name}")
    return value


def _parse_label(value: Any, name: str, options: _RowOptions) -> Any:
    """Converts a raw label (str, JSON value, TFDS value) to the task's label type."""
    missing = value is None or (isinstance(value, str) and not value.strip())
    if missing:
        if options.require_labels:
            raise _RowError(f"missing label in {name}")
        return None
    task = options.task
    if task == "regression":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _RowError(f"expected a number as the label in {name} (task='regression'), "
                            f"found {value!r}")
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except ValueError:
            raise _RowError(f"expected a number as the label in {name} (task='regression'), "
                            f"found {value!r}") from None
        if not math.isfinite(number):
            raise _RowError(f"expected a finite number as the label in {name}, found {value!r}")
        return number
    if task == "multi_label":
        if isinstance(value, (list, tuple)):
            # An explicit list (JSON, TFDS) may be empty: an example with no label at all.
            parts = [_scalar_label(part, name) for part in value]
        else:
            parts = _scalar_label(value, name).split(options.label_delimiter)
            if not any(part.strip() for part in parts) and options.require_labels:
                raise _RowError(f"missing label in {name}")
        return list(dict.fromkeys(part.strip() for part in parts if part.strip()))
    if isinstance(value, (list, tuple)):
        raise _RowError(f"expected one label in {name}, found a list {value!r}; use "
                        "task='multi_label' for several labels per example")
    return _scalar_label(value, name).strip()


def _scalar_label(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise _RowError(f"expected a label string or number in {name}, found {value!r}")


# ---- CSV / TSV -----------------------------------------------------------------------------


def _read_delimited(path: str, lines: list[tuple[str, str | None]], fmt: str,
                    text_column: Column, pair_column: Column, label_column: Column,
                    has_header: bool | None, options: _RowOptions) -> Examples:
    records = _csv_records(lines) if fmt == "csv" else _tsv_records(lines)
    first = next(records, None)
    if first is None:
        raise DataError("the file is empty (no rows)", path)
    first_line, first_row, first_bad = first
    stripped_first = [field.strip() for field in first_row]
    if has_header is None:
        candidates = {c for c in (text_column, pair_column, label_column) if isinstance(c, str)}
        if text_column is None:
            candidates.update(DEFAULT_TEXT_COLUMNS)
        if label_column is None:
            candidates.add(DEFAULT_LABEL_COLUMN)
        has_header = any(name in stripped_first for name in candidates)

    header: list[str] | None = None
    if has_header:
        if first_bad:
            raise DataError(f"in the header row: {first_bad}", f"{path}:{first_line}")
        header = stripped_first
        found = f"columns found: {_join(header)}"
        header_at = f"{path}:{first_line}"

        def resolve(column: Column, role: str) -> int:
            if isinstance(column, int):
                if column >= len(header):
                    raise DataError(f"{role} index {column} is out of range: the header has "
                                    f"{len(header)} columns; {found}", header_at)
                return column
            if column not in header:
                raise DataError(f"{role} {column!r} not found in the header; {found}", header_at)
            return header.index(column)

        if text_column is None:
            text_column = next((c for c in DEFAULT_TEXT_COLUMNS if c in header), None)
            if text_column is None:
                raise DataError("no text column: expected a column named 'text' or 'sentence' "
                                f"in the header; {found}; pass text_column", header_at)
        text_index = resolve(text_column, "text column")
        pair_index = None if pair_column is None else resolve(pair_column, "text pair column")
        if label_column is None and DEFAULT_LABEL_COLUMN not in header:
            if options.require_labels:
                raise DataError(f"label column {DEFAULT_LABEL_COLUMN!r} not found in the header; "
                                f"{found}; pass label_column (or require_labels=False for "
                                "prediction input)", header_at)
            label_index = None
        else:
            label_index = resolve(DEFAULT_LABEL_COLUMN if label_column is None else label_column,
                                  "label column")
        records_to_read: Iterator = records
    else:
        for column, role in ((text_column, "text column"), (pair_column, "text pair column"),
                             (label_column, "label column")):
            if isinstance(column, str):
                raise DataError(f"{role} {column!r} is given by name, but the file has no header "
                                f"(first row: {_join(stripped_first)}); pass has_header=True if "
                                "the first row is a header, or give a 0-based column index",
                                f"{path}:{first_line}")
        text_index = 0 if text_column is None else text_column
        pair_index = pair_column
        default_label = 2 if pair_column is not None else 1
        if label_column is None:
            label_index = default_label
            if not options.require_labels and len(first_row) <= label_index:
                label_index = None  # Prediction input without a label column.
        else:
            label_index = label_column

        def chain() -> Iterator:
            yield first
            yield from records
        records_to_read = chain()

    def name_of(index: int) -> str:
        return f"column {header[index]!r}" if header else f"column {index}"

    used = [i for i in (text_index, pair_index, label_index) if i is not None]
    needed = max(used) + 1
    collector = _Collector(path, options, with_labels=label_index is not None,
                           with_pairs=pair_index is not None)
    for line, row, bad in records_to_read:
        location = f"{path}:{line}"
        if bad:
            collector.reject(location, bad)
            continue
        if len(row) < needed:
            expected = f"{len(header)} as in the header" if header else f"at least {needed}"
            reason = (f"too few fields: expected {expected}, found {len(row)} "
                      f"({_describe_delimiter(fmt)})")
            if fmt == "csv" and any("\n" in field for field in row):
                reason += "; the record spans several lines: is a quote left open?"
            collector.reject(location, reason)
            continue
        if header and len(row) > len(header) and any(f.strip() for f in row[len(header):]):
            collector.reject(location, f"too many fields: expected {len(header)} as in the "
                                       f"header, found {len(row)}; "
                                       + ("quote fields that contain commas"
                                          if fmt == "csv" else "a text contains a tab"))
            continue
        try:
            collector.add(location,
                          row[text_index], name_of(text_index),
                          row[pair_index] if pair_index is not None else None,
                          name_of(pair_index) if pair_index is not None else "",
                          row[label_index] if label_index is not None else None,
                          name_of(label_index) if label_index is not None else "")
        except _RowError as e:
            collector.reject(location, str(e))
    return collector.finish(empty_reason="the file has a header but no data rows"
                            if header else "the file has no data rows")


def _csv_records(lines: list[tuple[str, str | None]]) -> Iterator[tuple[int, list[str], str | None]]:
    """Yields (first line number, fields, UTF-8 problem or None) per non-blank CSV record."""
    reader = csv.reader((text for text, _ in lines), delimiter=",")
    end = 0  # Lines consumed so far: the next record starts on line end + 1.
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            reason = f"malformed CSV record: {e}"
            if "field limit" in str(e):
                reason += " (texts this long need csv.field_size_limit raised by the caller)"
            yield start, [], reason
            continue
        end = reader.line_num
        if not any(field.strip() for field in row):
            continue
        bad = next((problem for _, problem in lines[start - 1:end] if problem), None)
        if bad and end > start:
            bad = f"{bad} (in the record spanning lines {start}-{end})"
        yield start, row, bad


def _tsv_records(lines: list[tuple[str, str | None]]) -> Iterator[tuple[int, list[str], str | None]]:
    """Yields (line number, fields, UTF-8 problem or None) per non-blank line; no quoting."""
    for number, (text, bad) in enumerate(lines, start=1):
        text = text.rstrip("\n").rstrip("\r")
        if not text.strip():
            continue
        yield number, text.split("\t"), bad


def _describe_delimiter(fmt: str) -> str:
    return "fields are separated by commas" if fmt == "csv" else "fields are separated by tabs"


# ---- JSON Lines ----------------------------------------------------------------------------


def _read_jsonl(path: str, lines: list[tuple[str, str | None]], text_column: Column,
                pair_column: Column, label_column: Column, options: _RowOptions) -> Examples:
    collector: _Collector | None = None
    keys: dict[str, Column] = {}

    def value_of(obj: dict, key: Column) -> tuple[Any, bool]:
        if isinstance(key, int):
            values = list(obj.values())
            return (values[key], True) if key < len(values) else (None, False)
        return obj.get(key), key in obj

    def name_of(key: Column) -> str:
        return f"key {key!r}" if isinstance(key, str) else f"field {key}"

    pending_skips: list[str] = []
    for number, (text, bad) in enumerate(lines, start=1):
        location = f"{path}:{number}"
        if not text.strip():
            continue
        problem = bad
        obj = None
        if not problem:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                problem = f"invalid JSON at column {e.colno}: {e.msg}"
                if text.lstrip().startswith("[") or text.strip() == "{":
                    problem += (" (tfbert reads JSON Lines: one JSON object per line, not a "
                                "single JSON document)")
            else:
                if not isinstance(obj, dict):
                    problem = (f"expected a JSON object, found {type(obj).__name__} "
                               f"{_short(obj)} (tfbert reads JSON Lines: one JSON object per "
                               "line)")
        if problem:
            if collector is None:
                if not options.skip_bad_rows:
                    raise DataError(problem, location)
                pending_skips.append(f"{location}: {problem}")
            else:
                collector.reject(location, problem)
            continue
        if collector is None:
            keys = _resolve_json_keys(path, location, obj, text_column, pair_column, label_column,
                                      options)
            collector = _Collector(path, options, with_labels=keys["label"] is not None,
                                   with_pairs=keys["pair"] is not None)
            collector.skipped.extend(pending_skips)
        try:
            found = f"keys found: {_join(list(obj))}"
            text_value, present = value_of(obj, keys["text"])
            if not present:
                raise _RowError(f"missing {name_of(keys['text'])}; {found}")
            pair_value = None
            if keys["pair"] is not None:
                pair_value, present = value_of(obj, keys["pair"])
                if not present:
                    raise _RowError(f"missing {name_of(keys['pair'])}; {found}")
            label_value = None
            if keys["label"] is not None:
                label_value, _ = value_of(obj, keys["label"])
            collector.add(location, text_value, name_of(keys["text"]), pair_value,
                          name_of(keys["pair"]), label_value, name_of(keys["label"]))
        except _RowError as e:
            collector.reject(location, str(e))
    if collector is None:
        if pending_skips:
            raise DataError(f"no examples left after skipping {len(pending_skips)} bad rows; "
                            f"the first: {pending_skips[0]}", path)
        raise DataError("the file is empty (no rows)", path)
    return collector.finish(empty_reason="the file has no data rows")


def _resolve_json_keys(path: str, location: str, obj: dict, text_column: Column,
                       pair_column: Column, label_column: Column,
                       options: _RowOptions) -> dict[str, Column]:
    """Checks the requested keys against the first object (file-level errors)."""
    found = f"keys found in the first object: {_join(list(obj))}"

    def check(column: Column, role: str) -> Column:
        if isinstance(column, int):
            if column >= len(obj):
                raise DataError(f"{role} index {column} is out of range; {found}", location)
        elif column not in obj:
            raise DataError(f"{role} {column!r} not found; {found}", location)
        return column

    if text_column is None:
        text_column = next((c for c in DEFAULT_TEXT_COLUMNS if c in obj), None)
        if text_column is None:
            raise DataError(f"no text column: expected a key 'text' or 'sentence'; {found}; pass "
                            "text_column", location)
    keys: dict[str, Column] = {"text": check(text_column, "text column"), "pair": None,
                               "label": None}
    if pair_column is not None:
        keys["pair"] = check(pair_column, "text pair column")
    if label_column is not None:
        keys["label"] = check(label_column, "label column")
    elif DEFAULT_LABEL_COLUMN in obj:
        keys["label"] = DEFAULT_LABEL_COLUMN
    elif options.require_labels:
        raise DataError(f"label column {DEFAULT_LABEL_COLUMN!r} not found; {found}; pass "
                        "label_column (or require_labels=False for prediction input)", location)
    return keys


# ---- folder of label sub-folders -----------------------------------------------------------


def _read_folder(path: str, options: _RowOptions) -> Examples:
    if not os.path.exists(path):
        raise DataError("folder not found", path)
    if not os.path.isdir(path):
        raise DataError("expected a folder with one sub-folder per label, found a file", path)
    label_dirs = sorted(entry for entry in os.listdir(path)
                        if not entry.startswith(".") and os.path.isdir(os.path.join(path, entry)))
    if not label_dirs:
        raise DataError("is a directory with no label sub-folders: expected a data file (.csv, .tsv, .jsonl), "
                        "or a folder with one sub-folder per label, each holding one text file per example", path)
    collector = _Collector(path, options, with_labels=True, with_pairs=False)
    for label in label_dirs:
        for file_path in _walk_files(os.path.join(path, label)):
            with open(file_path, "rb") as f:
                data = f.read()
            text, problem = _decode_document(data)
            if problem:
                line, reason = problem
                collector.reject(f"{file_path}:{line}", reason)
                continue
            location = f"{file_path}:1"
            try:
                collector.add(location, text, "the file", None, "", label,
                              f"the folder name {label!r}")
            except _RowError as e:
                collector.reject(location, str(e))
    return collector.finish(empty_reason="the label sub-folders hold no files")


def _walk_files(folder: str) -> Iterator[str]:
    """Yields the non-hidden files under `folder`, recursively, in sorted order."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(root, name)


def _decode_document(data: bytes) -> tuple[str, tuple[int, str] | None]:
    """Decodes a whole file; on failure returns (1-based line, reason) of the first bad byte."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8"), None
    except UnicodeDecodeError as e:
        offset = start + e.start
        line = data.count(b"\n", 0, offset) + 1
        line_start = data.rfind(b"\n", 0, offset) + 1
        return "", (line, _utf8_reason(data, offset, offset - line_start))


# ---- helpers -------------------------------------------------------------------------------


def _read_lines(path: str) -> list[tuple[str, str | None]]:
    """Reads a text file as lines (ending "\\n" kept) decoded one by one as UTF-8.

    Returns a list of (text, problem) where problem describes invalid UTF-8 on that line
    (the text then has replacement characters), so callers can name line and byte offset.
    Only "\\n" ends a line, as in editors' line numbers ("\\r\\n" lines keep their "\\r").
    """
    with open(path, "rb") as f:
        data = f.read()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:  # Fast path: the whole file is valid.
        pieces = text.split("\n")
        lines = [(piece + "\n", None) for piece in pieces[:-1]]
        if pieces[-1]:
            lines.append((pieces[-1], None))
        return lines
    lines = []
    offset = start
    while offset < len(data):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end + 1
        raw = data[offset:end]
        try:
            lines.append((raw.decode("utf-8"), None))
        except UnicodeDecodeError as e:
            reason = _utf8_reason(data, offset + e.start, e.start)
            lines.append((raw.decode("utf-8", errors="replace"), reason))
        offset = end
    return lines


def _utf8_reason(data: bytes, file_offset: int, line_offset: int) -> str:
    reason = (f"invalid UTF-8: byte 0x{data[file_offset]:02x} at byte offset {line_offset} of "
              f"the line (offset {file_offset} in the file); save the file as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        reason += " (it looks UTF-16 encoded)"
    return reason


def _infer_format(path: str, file_format: str | None) -> str:
    if file_format is not None:
        fmt = _FORMAT_ALIASES.get(file_format.lower().lstrip("."))
        if fmt is None:
            raise ValueError(f"{path}: unknown file_format {file_format!r}; expected one of "
                             f"{', '.join(FILE_FORMATS)}")
        return fmt
    if path.startswith(TFDS_PREFIX):
        return "tfds"
    if not os.path.exists(path):
        raise DataError("file not found", path)
    if os.path.isdir(path):
        return "folder"
    extension = os.path.splitext(path)[1].lower()
    fmt = _EXTENSION_FORMATS.get(extension)
    if fmt is None:
        raise DataError(f"cannot tell the format from the extension {extension!r}; expected "
                        f"{', '.join(_EXTENSION_FORMATS)}, a folder or 'tfds:<name>', or pass "
                        "file_format", path)
    return fmt


def _parse_tfds_path(path: str) -> tuple[str, str]:
    """``"tfds:glue/sst2[validation]"`` -> ``("glue/sst2", "validation")``; split defaults to train."""
    spec = path[len(TFDS_PREFIX):] if path.startswith(TFDS_PREFIX) else path
    if "[" in spec:
        if not spec.endswith("]"):
            raise ValueError(f"{path}: expected 'tfds:<name>[/<config>][<split>]', e.g. "
                             "'tfds:glue/sst2[validation]'")
        name, split = spec[:spec.index("[")], spec[spec.index("[") + 1:-1]
    else:
        name, split = spec, "train"
    if not name or not split:
        raise ValueError(f"{path}: expected 'tfds:<name>[/<config>][<split>]', e.g. "
                         "'tfds:glue/sst2[validation]'")
    return name, split


def _tfds_text(value: Any, key: str) -> str:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _RowError(f"invalid UTF-8 in feature {key!r}: byte 0x{value[e.start]:02x} at "
                            f"byte offset {e.start}") from None
    if isinstance(value, str):
        return value
    raise _RowError(f"expected a text feature in {key!r}, found {type(value).__name__}")


def _tfds_label_converter(tfds: Any, feature: Any) -> Callable[[Any], Any]:
    """Returns a function from a TFDS label value to a raw label for `_parse_label`."""
    class_label = tfds.features.ClassLabel

    def class_name(value: Any) -> str | None:
        value = int(value)
        return None if value < 0 else feature.int2str(value)

    if isinstance(feature, class_label):
        return class_name
    inner = getattr(feature, "feature", None)
    if isinstance(feature, tfds.features.Sequence) and isinstance(inner, class_label):
        return lambda values: [inner.int2str(int(v)) for v in np.asarray(values).reshape([-1])]

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.shape != ():
                return [_tfds_scalar(v) for v in value.reshape([-1])]
            value = value.item()
        return _tfds_scalar(value)

    return plain


def _tfds_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _labels_of(label: Any, task: str, source: str) -> list[str]:
    """The label strings of one example, checked against the task."""
    if label is None:
        raise DataError("missing label", source)
    if task == "multi_label":
        if not isinstance(label, (list, tuple)):
            raise ValueError(f"{source}: expected a list of labels for task='multi_label', found "
                             f"{label!r}; read the examples with task='multi_label'")
        return [str(one) for one in label]
    if not isinstance(label, str):
        raise ValueError(f"{source}: expected one label string for task='classification', "
                         f"found {label!r}; read the examples with task='classification'")
    return [label]


def _sorted_labels(labels: set[str] | list[str]) -> list[str]:
    if all(_INTEGER_LABEL.fullmatch(label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _check_column_arg(role: str, column: Column) -> None:
    if column is None or isinstance(column, str):
        return
    if isinstance(column, bool) or not isinstance(column, int):
        raise TypeError(f"{role} must be a column name, a 0-based index or None, found {column!r}")
    if column < 0:
        raise ValueError(f"{role} must be a 0-based column index (>= 0), found {column}")


def _join(names: Sequence[Any], limit: int = 30) -> str:
    shown = [repr(name) for name in names[:limit]]
    if len(names) > limit:
        shown.append(f"... ({len(names) - limit} more)")
    return ", ".join(shown) if shown else "(none)"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- splitting -----------------------------------------------------------------------------


def _split(examples: Examples, fractions: tuple[float, ...], seed: int,
           stratify: bool) -> tuple[Examples, ...]:
    if any(not math.isfinite(f) or f < 0 for f in fractions) or fractions[0] <= 0:
        raise ValueError(f"split fractions must be non-negative with a positive train share, "
                         f"found {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, found {fractions} (sum {sum(fractions)})")
    n = len(examples)
    wanted = sum(1 for f in fractions if f > 0)
    if n < wanted:
        raise ValueError(f"cannot split {n} examples into {wanted} non-empty sets")
    rng = np.random.default_rng(seed)
    targets = _allocate(n, fractions, minimum=1)
    single_label = (bool(examples.labels)
                    and all(isinstance(label, str) for label in examples.labels))
    if stratify and single_label:
        parts = _stratified_parts(examples.labels, fractions, targets, rng)
    else:
        order = rng.permutation(n)
        bounds = np.cumsum([0] + targets)
        parts = [order[bounds[j]:bounds[j + 1]] for j in range(len(fractions))]
    return tuple(examples.select(rng.permutation(np.asarray(part, np.int64))) for part in parts)


def _allocate(count: int, fractions: Sequence[float], minimum: int) -> list[int]:
    """Largest-remainder rounding of count * fractions, giving each positive share `minimum`.

    The minimum is granted in split order, as far as `count` allows, taking from the share
    that is most over its exact value.
    """
    exact = [count * f for f in fractions]
    sizes = [int(math.floor(x)) for x in exact]
    for j in sorted(range(len(exact)), key=lambda j: (-(exact[j] - sizes[j]), j)):
        if sum(sizes) >= count:
            break
        sizes[j] += 1
    for j, fraction in enumerate(fractions):
        if fraction <= 0 or sizes[j] >= minimum:
            continue
        donors = [k for k in range(len(sizes)) if sizes[k] > minimum]
        if not donors:
            break  # Too few for every share: earlier shares keep theirs.
        donor = max(donors, key=lambda k: (sizes[k] - exact[k], sizes[k], -k))
        sizes[donor] -= 1
        sizes[j] += 1
    return sizes


def _stratified_parts(labels: list[str], fractions: tuple[float, ...], targets: list[int],
                      rng: np.random.Generator) -> list[list[int]]:
    """Per-class allocation whose column sums match `targets` as closely as minimums allow."""
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    classes = sorted(by_class)
    m = len(fractions)
    # Floors (with a per-class minimum of one example per positive share where counts allow).
    counts = {c: len(by_class[c]) for c in classes}
    alloc = {c: _class_floor(counts[c], fractions) for c in classes}
    # Hand out the remaining examples of each class by largest remainder, preferring sets
    # still below their target; ties broken at random (deterministic for the seed).
    deficit = [targets[j] - sum(alloc[c][j] for c in classes) for j in range(m)]
    candidates = []
    for c in classes:
        for j in range(m):
            if fractions[j] > 0:
                candidates.append((-(counts[c] * fractions[j] - alloc[c][j]), rng.random(), c, j))
    candidates.sort()
    left = {c: counts[c] - sum(alloc[c]) for c in classes}
    for _, _, c, j in candidates:
        if left[c] > 0 and deficit[j] > 0:
            alloc[c][j] += 1
            left[c] -= 1
            deficit[j] -= 1
    for c in classes:  # Whatever the remainders did not place goes where room is left.
        while left[c] > 0:
            j = max((j for j in range(m) if fractions[j] > 0), key=lambda j: (deficit[j], -j))
            alloc[c][j] += 1
            left[c] -= 1
            deficit[j] -= 1
    parts: list[list[int]] = [[] for _ in range(m)]
    for c in classes:
        members = rng.permutation(np.asarray(by_class[c], np.int64)).tolist()
        start = 0
        for j in range(m):
            parts[j].extend(members[start:start + alloc[c][j]])
            start += alloc[c][j]
    return parts


def _class_floor(count: int, fractions: tuple[float, ...]) -> list[int]:
    """Floor of count * fractions, raised so that each positive share gets one example
    when the class has enough (at least 2) examples; earlier shares first."""
    exact = [count * f for f in fractions]
    sizes = [int(math.floor(x)) for x in exact]
    if count < 2:
        return sizes
    for j, fraction in enumerate(fractions):
        if fraction <= 0 or sizes[j] >= 1:
            continue
        if sum(sizes) < count:
            sizes[j] = 1
            continue
        donors = [k for k in range(len(sizes)) if sizes[k] > 1]
        if not donors:
            break
        donor = max(donors, key=lambda k: (sizes[k] - exact[k], sizes[k], -k))
        sizes[donor] -= 1
        sizes[j] = 1
    return sizes
