"""Label encoding: `LabelVocab` maps label strings to ids and back, and saves them one per line."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

import numpy as np

from tfbert.data.examples import DataError, Examples, _check_task
from tfbert.data.files import _read_lines

_INTEGER_LABEL = re.compile(r"[+-]?[0-9]+")
# How many known labels an "unknown label" error lists before it truncates.
_MAX_LABELS_IN_MESSAGE = 20


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
