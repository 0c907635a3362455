"""Helpers shared by the reader tests in `tests/data/` (pytest's "prepend" import mode puts this
directory on `sys.path`): `from reader_helpers import error_of, write`."""

from __future__ import annotations

import os

import pytest

from tfbert.data.examples import DataError
from tfbert.data.readers import read_examples


def write(directory, name: str, content: str | bytes) -> str:
    path = os.path.join(str(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    with open(path, "wb") as f:
        f.write(data)
    return path


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_examples(path, **kwargs)
    return str(info.value)
