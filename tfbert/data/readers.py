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

This module holds the entry point `read_examples`, which dispatches to the modules that
do the work, and re-exports their public names:

* `tfbert.data.examples`: `Examples`, `DataError` and the shared constants,
* `tfbert.data.files`: CSV, TSV, JSON Lines and folder readers, format inference,
* `tfbert.data.tfds_reader`: `read_tfds`, `open_tfds_builder`,
* `tfbert.data.rows`: row validation shared by all readers,
* `tfbert.data.labels`: `LabelVocab`,
* `tfbert.data.splits`: `train_validation_split`, `train_validation_test_split`.

This module is pure Python + numpy; TensorFlow (Datasets) is imported only by `read_tfds`.
"""

from __future__ import annotations

import os

from tfbert.data.examples import (
    DEFAULT_LABEL_COLUMN,
    DEFAULT_TEXT_COLUMNS,
    FILE_FORMATS,
    TASKS,
    TFDS_PREFIX,
    Column,
    DataError,
    Examples,
    _check_column_arg,
    _check_task,
)
from tfbert.data.files import _infer_format, _read_file, _read_folder
from tfbert.data.labels import LabelVocab
from tfbert.data.rows import _RowOptions
from tfbert.data.splits import train_validation_split, train_validation_test_split
from tfbert.data.tfds_reader import _parse_tfds_path, open_tfds_builder, read_tfds

__all__ = [
    "DEFAULT_LABEL_COLUMN",
    "DEFAULT_TEXT_COLUMNS",
    "FILE_FORMATS",
    "TASKS",
    "TFDS_PREFIX",
    "Column",
    "DataError",
    "Examples",
    "LabelVocab",
    "open_tfds_builder",
    "read_examples",
    "read_tfds",
    "train_validation_split",
    "train_validation_test_split",
]


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
    return _read_file(path, fmt, text_column, text_pair_column, label_column, has_header, options)
