"""Reads a prepared TensorFlow Datasets dataset (``tfds:<name>[/<config>][<split>]``) as `Examples`.

TensorFlow Datasets is imported only inside `open_tfds_builder` and `read_tfds`, so this
module imports without loading TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from tfbert.data.examples import (
    DEFAULT_LABEL_COLUMN,
    DEFAULT_TEXT_COLUMNS,
    TFDS_PREFIX,
    Column,
    DataError,
    Examples,
    _check_column_arg,
    _check_task,
    _join,
)
from tfbert.data.rows import _Collector, _RowError, _RowOptions


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
