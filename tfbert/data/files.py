"""Readers of local files: CSV, TSV, JSON Lines and folders of label sub-folders.

* ``.csv`` (comma, RFC 4180 quoting, quoted fields may span lines),
* ``.tsv`` / ``.txt`` (tab separated, one record per line, no quoting, as in GLUE),
* ``.jsonl`` / ``.json`` / ``.ndjson`` (JSON Lines: one object per line),
* a directory with one sub-folder per label and one text file per example.

Also decodes files as UTF-8 line by line (naming the line and byte of invalid UTF-8) and
infers the format of a path from its extension. Pure Python; no TensorFlow.
"""

from __future__ import annotations

import codecs
import collections
import csv
import json
import logging
import os
from typing import Any, Iterator

from tfbert.data.examples import (
    DEFAULT_LABEL_COLUMN,
    DEFAULT_TEXT_COLUMNS,
    FILE_FORMATS,
    TFDS_PREFIX,
    Column,
    DataError,
    Examples,
    _join,
)
from tfbert.data.rows import _Collector, _RowError, _RowOptions

logger = logging.getLogger(__name__)

_FORMAT_ALIASES = {"csv": "csv", "tsv": "tsv", "txt": "tsv", "jsonl": "jsonl", "json": "jsonl",
                   "ndjson": "jsonl", "folder": "folder", "directory": "folder", "dir": "folder",
                   "tfds": "tfds"}
_EXTENSION_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl",
                      ".json": "jsonl", ".ndjson": "jsonl"}


def _read_file(path: str, fmt: str, text_column: Column, text_pair_column: Column,
               label_column: Column, has_header: bool | None, options: _RowOptions) -> Examples:
    """Reads a ``csv``, ``tsv`` or ``jsonl`` file (`fmt` as returned by `_infer_format`)."""
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
    detected = has_header is None
    if has_header is None:
        # A column given as digits is an index: it finds a header only at that index ("0,1", as pandas
        # writes unnamed columns), not a data cell "1" elsewhere in the first row.
        candidates = {c for c in (text_column, pair_column, label_column) if isinstance(c, str) and not c.isdigit()}
        if text_column is None:
            candidates.update(DEFAULT_TEXT_COLUMNS)
        if label_column is None:
            candidates.add(DEFAULT_LABEL_COLUMN)
        has_header = (any(_column_index(stripped_first, name) is not None for name in candidates)
                      or any(isinstance(c, str) and c.isdigit() and int(c) < len(stripped_first)
                             and stripped_first[int(c)] == c for c in (text_column, pair_column, label_column)))

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
            index = _column_index(header, column)
            if index is None and column.isdigit():  # "1" from a command line: the column's index
                return resolve(int(column), role)
            if index is None:
                raise DataError(f"{role} {column!r} not found in the header; {found}", header_at)
            same = [i for i, name in enumerate(header) if name == header[index]]
            if len(same) > 1:  # which one is meant? (the first was taken without a word)
                raise DataError(f"{role} {header[index]!r} is in the header {len(same)} times (columns "
                                f"{', '.join(map(str, same))}, from 0): rename one, or give the column's index",
                                header_at)
            return index

        if text_column is None:
            text_column = next((c for c in DEFAULT_TEXT_COLUMNS if _column_index(header, c) is not None), None)
            if text_column is None:
                raise DataError("no text column: expected a column named 'text' or 'sentence' "
                                f"in the header; {found}; pass text_column", header_at)
        text_index = resolve(text_column, "text column")
        pair_index = None if pair_column is None else resolve(pair_column, "text pair column")
        if label_column is None and _column_index(header, DEFAULT_LABEL_COLUMN) is None:
            if options.require_labels:
                raise DataError(f"label column {DEFAULT_LABEL_COLUMN!r} not found in the header; "
                                f"{found}; pass label_column (or require_labels=False for "
                                "prediction input)", header_at)
            label_index = None
        else:
            label_index = resolve(DEFAULT_LABEL_COLUMN if label_column is None else label_column,
                                  "label column")
        records_to_read = records
    else:
        # "1" from a command line is the column's index (a file without a header has no names)
        text_column, pair_column, label_column = (int(c) if isinstance(c, str) and c.isdigit() else c
                                                  for c in (text_column, pair_column, label_column))
        for column, role in ((text_column, "text column"), (pair_column, "text pair column"),
                             (label_column, "label column")):
            if isinstance(column, str):
                raise DataError(f"{role} {column!r} is given by name, but the file has no header "
                                f"(first row: {_join(stripped_first)}); pass has_header=True (--has_header) "
                                "if the first row is a header, or give a 0-based column index",
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

        records_to_read = [first, *records]

    def name_of(index: int) -> str:
        return f"column {header[index]!r}" if header else f"column {index}"

    used = [i for i in (text_index, pair_index, label_index) if i is not None]
    needed = max(used) + 1
    # Without a header the width is that of most rows: a row wider than them has a text with an unquoted
    # comma (a tab), whose pieces would be read as other columns, the label among them
    width = len(header) if header else _usual_width(records_to_read)
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
        if width and len(row) > width and any(f.strip() for f in row[width:]):
            collector.reject(location, f"too many fields: expected {width} as in the "
                                       f"{'header' if header else 'other rows'}, found {len(row)}; "
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
    examples = collector.finish(empty_reason="the file has a header but no data rows"
                                if header else "the file has no data rows")
    first_label = examples.labels[0] if label_index is not None and examples.labels else None
    rest = examples.labels[1:]
    if (header is None and detected and isinstance(first_label, str) and len(rest) >= 2
            and len(set(rest)) < len(rest)  # the other rows share labels (all different: too few to tell)
            and examples.sources[0] == f"{path}:{first_line}" and examples.labels.count(first_label) == 1):
        logger.warning("%s:%d: the first row was read as data, and its label %r occurs in no other row: if it is a "
                       "header, pass has_header=True (--has_header) or name the columns (text_column, label_column)",
                       path, first_line, first_label)
    return examples


def _usual_width(records: list) -> int | None:
    """The number of fields most rows have (trailing empty fields not counted), or None without rows."""
    widths = collections.Counter()
    for _, row, bad in records:
        if not bad:
            kept = len(row)
            while kept and not row[kept - 1].strip():
                kept -= 1
            widths[kept] += 1
    return widths.most_common(1)[0][0] if widths else None


def _column_index(header: list[str], name: str) -> int | None:
    """Where column `name` is in a header row: the exact name, else the one name that differs only in
    case ("Text", "LABEL"); None when neither."""
    if name in header:
        return header.index(name)
    folded = [i for i, field in enumerate(header) if field.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


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
                line, reason = problem  # (one file, one example: the whole file is left out)
                collector.reject(f"{file_path}:{line}", f"{reason} (the whole file, one example)")
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
                        f"{', '.join(_EXTENSION_FORMATS)}, a folder or 'tfds:<name>' (rename the file; in Python, "
                        "read_examples(file_format=...) reads it as another format)", path)
    return fmt


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."
