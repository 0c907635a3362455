"""Row validation shared by all readers: clean texts, parse labels by task, raise or skip bad rows.

A reader hands each row to a `_Collector`, which turns it into an example or, under
``skip_bad_rows``, records why it was dropped; `_Collector.finish` builds the `Examples`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from tfbert.data.examples import DataError, Examples


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
        return list(dict.fromkeys(_class_name(part) for part in parts if part.strip()))
    if isinstance(value, (list, tuple)):
        raise _RowError(f"expected one label in {name}, found a list {value!r}; for several labels per "
                        "example read it with task='multi_label' (train_cls.py: --multi_label)")
    return _class_name(_scalar_label(value, name))


def _class_name(label: str) -> str:
    """A label as the class it names: stripped, and "1.0" (a CSV written from a float column) is the
    class of "1", as JSON's 1.0 is."""
    label = label.strip()
    whole = _WHOLE_NUMBER.fullmatch(label)
    return whole.group(1) if whole else label  # (the digits as written: "01.0" is "01", as "01" is)


_WHOLE_NUMBER = re.compile(r"(-?\d+)\.0+")


def _scalar_label(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 (pandas writes integer labels as floats) is the class of 1
    if isinstance(value, (int, float)):
        return str(value)
    raise _RowError(f"expected a label string or number in {name}, found {value!r}")
