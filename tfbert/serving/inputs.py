"""The texts a prediction reads, as `pipelines/predict.py` takes them: command-line arguments, a UTF-8
file with one text per line, or stdin; sentence pairs as `text<TAB>text_pair` lines; questions for a
question-answering export as --question/--context pairs or `{"question", "context"}` JSON lines; pre-split
sentences for a token classifier as `{"tokens": [...]}` JSON lines.

Each text keeps where it came from ("argument 2", "reviews.txt:14", "<stdin>:3"), which errors name.
"""

from __future__ import annotations

import codecs
import json
import sys
from typing import IO, Sequence

from tfbert.data.readers import DataError
from tfbert.serving.base import preview

STDIN_NAME = "<stdin>"


def load_texts(texts: Sequence[str] | None = None, file: str | None = None, stdin: IO | None = None) -> list[str]:
    """The texts to predict: the given ones, then one per line of `file`, else of `stdin`.

    Lines are decoded as UTF-8 (a leading byte-order mark is dropped); the line end ("\\n" or
    "\\r\\n") is removed and blank lines are skipped (with a warning naming them on stderr). `stdin`
    is read only when neither `texts` nor `file` gives anything and it is not a terminal.

    For sentence-pair models each line holds the text, a TAB, then the text pair
    (`"A man sleeps.\\tA person rests."`); `load_text_pairs` splits them at the first TAB.
    `load_texts` keeps such lines whole.

    Args:
        texts: texts given directly (e.g. command-line arguments).
        file: a UTF-8 text file with one text per line.
        stdin: a stream read like `file` when nothing else is given (e.g. `sys.stdin`).

    Returns:
        The texts in order; empty when nothing was given.

    Raises:
        DataError: the file cannot be read, or a line is not valid UTF-8 (names `file:line`).
    """
    return [text for _, text in read_sources(texts, file, stdin)]


def load_text_pairs(texts: Sequence[str] | None = None, file: str | None = None,
                    stdin: IO | None = None) -> tuple[list[str], list[str]]:
    """Like `load_texts`, for sentence-pair models: each text or line is `text<TAB>text_pair`.

    Returns:
        (texts, text_pairs), split at the first TAB of each line.

    Raises:
        DataError: as `load_texts`, or a line without a TAB (names `file:line`).
    """
    return pairs_of(read_sources(texts, file, stdin))


def pairs_of(sources: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(texts, text_pairs) of `read_sources` lines `text<TAB>text_pair`, split at the first TAB.

    Raises:
        DataError: a line without a TAB (names `file:line`).
    """
    firsts, seconds = [], []
    for location, line in sources:
        if "\t" not in line:
            raise DataError(f"expected a text, a TAB and its text pair, found no TAB in {preview(line)!r}", location)
        first, second = line.split("\t", 1)
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def read_sources(texts, file, stdin) -> list[tuple[str, str]]:
    """(location, text) for every text `load_texts` reads: its location is "argument N", "file:line" or
    "<stdin>:line", for messages about a text."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    found = [(f"argument {i + 1}", text) for i, text in enumerate(texts or [])]
    if file is not None:
        try:
            with open(file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise DataError("no such file", file) from None
        except IsADirectoryError:
            raise DataError("is a folder; expected a text file with one text per line", file) from None
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", file) from None
        found += _decode_lines(data, file)
    elif not found and stdin is not None and not _is_terminal(stdin):
        data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        found += _decode_lines(data, STDIN_NAME)
    return found


def _decode_lines(data: bytes, name: str) -> list[tuple[str, str]]:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines, blank = [], []
    rows = data.split(b"\n")
    if rows and not rows[-1]:
        rows.pop()  # the final line end
    for number, raw in enumerate(rows, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"invalid UTF-8: byte 0x{raw[e.start]:02x} at byte offset {e.start} of the line; "
                            "save the file as UTF-8", f"{name}:{number}") from None
        if line.strip():
            lines.append((f"{name}:{number}", line))
        else:
            blank.append(number)
    if blank:  # the outputs are one per text: say which lines have none
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        print(f"warning: {name}: skipped {len(blank)} blank line(s) ({shown}); the outputs follow the other "
              "lines", file=sys.stderr)
    return lines


def words_of(sources: Sequence[tuple[str, str]]) -> list[list[str]] | None:
    """The pre-split sentences of JSON Lines `{"tokens": ["Ada", "met", ...]}` (what train_ner.py reads,
    tags optional), or None when the first line is not such an object (the lines are raw texts then).

    Raises:
        DataError: a later line is not such an object, or its tokens are not a list of non-empty strings
            (names `file:line` and the field).
    """
    if not sources or not _is_words_line(sources[0][1]):
        return None
    sentences = []
    for location, record in _json_objects(sources, '{"tokens": [...]} (as on the first line)'):
        if "tokens" not in record:
            others = ", ".join(repr(k) for k in record)
            raise DataError('no "tokens" field' + (f" (found {others})" if others else ""), location)
        words = record["tokens"]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w and _encodable(w)
                                                                for w in words):
            raise DataError('"tokens" must be a list of non-empty UTF-8 strings, found '
                            f"{preview(json.dumps(words), 60)}", location)
        sentences.append(words)
    return sentences


def _encodable(text: str) -> bool:
    """Whether `text` is valid Unicode (JSON's \\ud800 escapes give lone surrogates, which UTF-8 cannot hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_objects(sources: Sequence[tuple[str, str]], expected: str):
    """(location, object) of each line, a JSON object.

    Raises:
        DataError: a line that is not JSON, or not an object (names `file:line` and what was `expected`).
    """
    for location, line in sources:
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(f"expected a JSON object {expected}: {getattr(e, 'msg', e)}", location) from None
        if not isinstance(record, dict):
            found = {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(type(record),
                                                                                              "a number")
            raise DataError(f"expected {expected}, found {found}", location)
        yield location, record


def texts_of(sources: Sequence[tuple[str, str]]) -> tuple[list[str], list[str] | None] | None:
    """(texts, text_pairs or None) of JSON Lines `{"text": ..., ["text_pair": ...]}` (what train_cls.py reads,
    labels ignored), or None when the first line is not such an object (the lines are raw texts then).

    Raises:
        DataError: a later line is not such an object, or a field is not a string (names `file:line`).
    """
    first = _json_object(sources[0][1]) if sources else None
    if first is None or "text" not in first:
        return None
    with_pairs = "text_pair" in first
    texts, pairs = [], []
    for location, record in _json_objects(sources, '{"text": ...} (as on the first line)'):
        for key in ("text", "text_pair") if with_pairs else ("text",):
            if not isinstance(record.get(key), str) or not _encodable(record[key]):
                found = json.dumps(record[key]) if key in record else "none"
                raise DataError(f'"{key}" must be a UTF-8 string (as on the first line), found {found}', location)
        texts.append(record["text"])
        pairs.append(record.get("text_pair"))
    return texts, (pairs if with_pairs else None)


def _json_object(line: str) -> dict | None:
    """`line` as a JSON object, else None."""
    if not line.lstrip().startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _is_words_line(line: str) -> bool:
    record = _json_object(line)
    return record is not None and "tokens" in record


def _is_squad_json(sources: Sequence[tuple[str, str]]) -> bool:
    """Whether the lines make one SQuAD JSON document (an object with a "data" list)."""
    try:
        document = json.loads("\n".join(line for _, line in sources))
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("data"), list)


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def load_questions(questions: Sequence[str] | None, contexts: Sequence[str] | None, file: str | None = None,
                   stdin: IO | None = None) -> tuple[list[str], list[str]]:
    """(questions, contexts) for a question-answering export: from --question/--context pairs, else one
    JSON object per line of `file` (or stdin) with "question" and "context" strings.

    Raises:
        DataError: unequal --question/--context counts (but one --context for every question), or a
            line that is not such an object (names `file:line` and the field).
    """
    questions, contexts = list(questions or []), list(contexts or [])
    if len(contexts) == 1 and len(questions) > 1:  # several questions about one text
        contexts = contexts * len(questions)
    if len(questions) != len(contexts):
        raise DataError(f"{len(questions)} --question but {len(contexts)} --context; give a context for each "
                        "question, or one for all")
    sources = read_sources(None, file, stdin) if file is not None or not questions else []
    if sources and _is_squad_json(sources):
        raise DataError('is SQuAD JSON ({"data": [...]}); predict.py reads one {"question": ..., "context": ...} '
                        "object per line; pipelines/evaluate.py --checkpoint <run> --test_file <file> answers a SQuAD "
                        "file's questions (its test_predictions.json) and scores them",
                        sources[0][0].rsplit(":", 1)[0])
    for location, record in _json_objects(sources, '{"question": "...", "context": "..."}'):
        for key in ("question", "context"):
            if key not in record:
                others = ", ".join(repr(k) for k in record if k not in ("question", "context"))
                raise DataError(f'no "{key}" field' + (f" (found {others})" if others else ""), location)
            if not isinstance(record[key], str) or not _encodable(record[key]):
                raise DataError(f'"{key}" must be a UTF-8 string, found {json.dumps(record[key])}', location)
        questions.append(record["question"])
        contexts.append(record["context"])
    return questions, contexts
