"""Unlabelled text for masked-LM pre-training: documents from plain text files or folders, JSON Lines,
CSV/TSV columns, or TFDS text datasets.

Plain text (`.txt`, `.text`, `.md`, any file of a folder, read recursively in name order): with
`line_by_line` every non-blank line is a document; otherwise documents are separated by blank lines
(one paragraph block each). JSON Lines, CSV and TSV files give the `text_column` of each row (see
`tfbert.data.readers.read_examples`); `tfds:<name>[split]` a TFDS dataset's text feature.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

from tfbert.data.examples import TFDS_PREFIX, DataError
from tfbert.data.files import _decode_document, _read_lines, _walk_files

logger = logging.getLogger("tfbert")

PLAIN_TEXT_EXTENSIONS = (".txt", ".text", ".md", "")


@dataclasses.dataclass
class Documents:
    """Texts with where each came from (`path:line` of its first line)."""

    texts: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Sequence[int]) -> "Documents":
        return Documents([self.texts[i] for i in indices], [self.sources[i] for i in indices])


def read_documents(path: str, line_by_line: bool = False, text_column: str | int | None = None,
                   data_dir: str | None = None, skip_bad_rows: bool = False,
                   has_header: bool | None = None) -> Documents:
    """The documents of a file, folder or `tfds:` dataset (see the module docstring). In JSON Lines,
    CSV or TSV, a row with an empty or missing text is passed over (as a blank line of a text file),
    with a warning; any other bad row (invalid JSON, a text that is not a string) is an error, or,
    with `skip_bad_rows`, skipped with a warning. `has_header` is `read_examples`' (CSV/TSV).

    Raises:
        DataError: a missing path, a file that is not UTF-8 (names file and line), a missing text
            column, a bad row (names file and line), or no text at all.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        documents = Documents([], [])
        for file in _walk_files(path):
            part = _read_plain(file, line_by_line, skip_bad_rows)
            documents.texts += part.texts
            documents.sources += part.sources
    elif not os.path.exists(path) and not path.startswith(TFDS_PREFIX):
        raise DataError("no such file or folder", path)
    elif not path.startswith(TFDS_PREFIX) and os.path.splitext(path)[1].lower() in PLAIN_TEXT_EXTENSIONS:
        documents = _read_plain(path, line_by_line, skip_bad_rows)
    else:
        from tfbert.data.readers import read_examples

        # Rows without text are skipped (as blank lines of a text file are), and reported.
        examples = read_examples(path, text_column=text_column, require_labels=False, data_dir=data_dir,
                                 skip_bad_rows=True, has_header=has_header)
        for skipped in examples.skipped:
            # "<path>:<line>: <reason>", where the path itself may hold ": "
            head, reason = (skipped[len(path):] if skipped.startswith(path) else skipped).split(": ", 1)
            location = path + head if skipped.startswith(path) else head
            if not (skip_bad_rows or reason.startswith("empty text in ")):
                raise DataError(reason + "; --skip_bad_rows skips such rows", location)
            logger.warning("skipped %s", skipped)
        kept = [i for i, text in enumerate(examples.texts) if text.strip()]
        documents = Documents([examples.texts[i] for i in kept], [examples.sources[i] for i in kept])
    if not documents.texts:
        raise DataError("no text found" + (" (the folder has no readable files)" if os.path.isdir(path) else ""),
                        path)
    return documents


def _read_plain(path: str, line_by_line: bool, skip_bad_rows: bool = False) -> Documents:
    """A plain text file's documents; a line that is not UTF-8 is an error, or with `skip_bad_rows` left
    out of its document with a warning."""
    with open(path, "rb") as f:
        data = f.read()
    text, problem = _decode_document(data)
    if problem is None:
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    elif not skip_bad_rows:
        line, reason = problem
        raise DataError(f"{reason}; --skip_bad_rows skips such lines", f"{path}:{line}")
    else:
        lines = []
        for number, (line, reason) in enumerate(_read_lines(path), start=1):
            if reason is not None:
                logger.warning("skipped %s:%d: %s", path, number, reason)
            lines.append(None if reason is not None else line.removesuffix("\n").removesuffix("\r"))
    documents = Documents([], [])
    block, block_start = [], None
    for number, line in enumerate(lines + [""], start=1):
        if line is None:  # a line skipped: neither text nor the blank line that ends a document
            continue
        if line_by_line:
            if line.strip():
                documents.texts.append(line.strip())
                documents.sources.append(f"{path}:{number}")
            continue
        if line.strip():
            block_start = block_start or number
            block.append(line.strip())
        elif block:
            documents.texts.append(" ".join(block))
            documents.sources.append(f"{path}:{block_start}")
            block, block_start = [], None
    return documents
