"""The data types every reader returns: `Examples`, `DataError`, and the constants they share.

Every problem with the data is raised as `DataError` whose message starts with
``path:line: `` (``path: `` when no line applies), so that the user can jump to it in an
editor. With ``skip_bad_rows=True`` row-level problems are recorded in `Examples.skipped`
instead; file-level problems (missing file, missing column, empty file) always raise.

Also holds the small argument checks and message helpers that several reader modules
share. Imports nothing of tfbert but `tfbert.errors`, so every other module of
`tfbert.data` can import it without cycles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from tfbert.errors import TfbertError

TASKS = ("classification", "multi_label", "regression")
FILE_FORMATS = ("csv", "tsv", "jsonl", "folder", "tfds")
DEFAULT_TEXT_COLUMNS = ("text", "sentence")
DEFAULT_LABEL_COLUMN = "label"
TFDS_PREFIX = "tfds:"

Column = str | int | None


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


# ---- shared helpers ------------------------------------------------------------------------


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
