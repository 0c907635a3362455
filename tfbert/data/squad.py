"""Extractive question answering data: SQuAD v1.1 / v2.0 JSON, JSON Lines and TFDS SQuAD-style datasets.

Every question becomes one entry of `QAExamples`: its id, question, context, the gold answers
(text and `answer_start`, a character offset into the context) and whether it is unanswerable
(SQuAD v2.0's `is_impossible`). Problems are `DataError`s naming the file and the entry
(`path: data[3].paragraphs[1].qas[2] (id 5733...)`, or `path:line` in JSON Lines); an answer whose
`answer_start` does not point at its text is an error, or, with `skip_bad_rows`, the question is
dropped and reported in `skipped`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Sequence

import numpy as np

from tfbert import fileio
from tfbert.data.examples import DataError


@dataclasses.dataclass
class QAExamples:
    """Questions on contexts, in file order.

    Attributes:
        ids: each question's id (unique).
        questions / contexts: the texts, as in the file (answers index the context as is).
        answers: per question, its gold answers as (text, answer_start) pairs; [] when unanswerable
            (and for unlabelled input).
        titles: the article each question comes from ("" when the format has none).
        sources: where each question is, for messages.
        version_2: the data has unanswerable questions (SQuAD v2.0).
        skipped: "location: reason" of each question dropped under `skip_bad_rows`.
    """

    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answers: list[list[tuple[str, int]]]
    titles: list[str]
    sources: list[str]
    version_2: bool = False
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, indices: Sequence[int]) -> "QAExamples":
        indices = [int(i) for i in indices]
        return QAExamples(*([getattr(self, f)[i] for i in indices] for f in
                            ("ids", "questions", "contexts", "answers", "titles", "sources")),
                          version_2=self.version_2)

    @property
    def has_answers(self) -> list[bool]:
        return [bool(a) for a in self.answers]


def read_squad(path: str, version_2: bool | None = None, skip_bad_rows: bool = False) -> QAExamples:
    """Reads SQuAD JSON (`{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`) or JSON Lines
    (`{"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}` per line, as
    Hugging Face datasets write SQuAD; `title` optional).

    Args:
        path: the file (`.jsonl` / `.ndjson` are JSON Lines; anything else is tried as SQuAD JSON).
        version_2: the data may hold unanswerable questions; None detects it (`is_impossible`
            anywhere, or a question without answers).
        skip_bad_rows: drop (and report) questions whose answers do not match their context.

    Raises:
        DataError: missing file, invalid JSON, a missing field, a duplicate id, an answer that is
            not at its `answer_start`, an unanswerable question in v1.1 data, or no questions.
    """
    if os.path.isdir(path):
        raise DataError("is a directory; expected a SQuAD JSON file or a JSON Lines file", path)
    if not os.path.isfile(path):
        raise DataError("no such file", path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"invalid UTF-8 at byte {e.start}; save the file as UTF-8", path) from None
    rows = _jsonl_rows(path, text) if path.endswith((".jsonl", ".ndjson")) else _squad_rows(path, text)
    return _collect(path, rows, version_2, skip_bad_rows)


def read_tfds_squad(name: str, split: str, data_dir: str | None = None, version_2: bool | None = None,
                    skip_bad_rows: bool = False) -> QAExamples:
    """A prepared TFDS SQuAD-style dataset (features id, title, context, question, answers{text, answer_start})."""
    from tfbert.data.tfds_reader import open_tfds_builder

    builder = open_tfds_builder(name, data_dir)
    if split not in builder.info.splits:
        raise DataError(f"no split {split!r}; it has {', '.join(builder.info.splits)}", f"tfds:{name}")
    missing = [k for k in ("question", "context", "answers") if k not in builder.info.features]
    if missing:
        raise DataError(f"not a SQuAD-style dataset: no feature {', '.join(missing)}", f"tfds:{name}")

    def text(value):
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    rows = []
    for i, record in enumerate(builder.as_dataset(split=split).as_numpy_iterator()):
        answers = record["answers"]
        rows.append((f"tfds:{name}[{split}]:#{i}", {
            "id": text(record.get("id", str(i))), "title": text(record.get("title", b"")),
            "question": text(record["question"]), "context": text(record["context"]),
            "answers": [(text(t), int(s)) for t, s in zip(np.atleast_1d(answers["text"]),
                                                          np.atleast_1d(answers["answer_start"]))],
            "is_impossible": bool(record.get("is_impossible", False))}))
    return _collect(f"tfds:{name}", rows, version_2, skip_bad_rows)


def split_by_title(examples: QAExamples, fractions: Sequence[float], seed: int) -> list[QAExamples]:
    """Splits questions by article (title), so no article is in two splits; the articles are shuffled
    with `seed` and dealt out until each split has its fraction of the questions."""
    titles = list(dict.fromkeys(examples.titles))
    order = np.random.default_rng(seed).permutation(len(titles))
    counts = {t: 0 for t in titles}
    for t in examples.titles:
        counts[t] += 1
    targets = np.cumsum(fractions) / np.sum(fractions) * len(examples)
    part_of, done, part = {}, 0, 0
    for index in order:
        title = titles[index]
        while part < len(fractions) - 1 and done >= targets[part]:
            part += 1
        part_of[title] = part
        done += counts[title]
    return [examples.select([i for i, t in enumerate(examples.titles) if part_of[t] == p])
            for p in range(len(fractions))]


# ---- formats ---------------------------------------------------------------------------------


def _squad_rows(path: str, text: str) -> list[tuple[str, dict]]:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise DataError(f"invalid JSON at {fileio.json_position(e) or '?'}: {getattr(e, 'msg', e)}", path) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError('expected SQuAD JSON, an object with a "data" list of articles (or a .jsonl file)', path)
    rows = []
    for a, article in enumerate(document["data"]):
        where = f"data[{a}]"
        paragraphs = _field(path, where, article, "paragraphs", list)
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(paragraphs):
            at = f"{where}.paragraphs[{p}]"
            context = _field(path, at, paragraph, "context", str)
            for q, qa in enumerate(_field(path, at, paragraph, "qas", list)):
                here = f"{at}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{here}: expected an object, found {type(qa).__name__}", path)
                here += f" (id {qa.get('id')})" if "id" in qa else ""
                answers = []
                for k, answer in enumerate(_field(path, here, qa, "answers", list)):
                    answers.append((_field(path, f"{here}.answers[{k}]", answer, "text", str),
                                    _field(path, f"{here}.answers[{k}]", answer, "answer_start", int)))
                rows.append((f"{path}: {here}", {
                    "id": str(_field(path, here, qa, "id", (str, int))), "title": str(title),
                    "question": _field(path, here, qa, "question", str), "context": context,
                    "answers": answers, "is_impossible": bool(qa.get("is_impossible", False))}))
    return rows


def _jsonl_rows(path: str, text: str) -> list[tuple[str, dict]]:
    rows = []
    # Lines end at \n, \r\n or \r (a raw \r is never inside a JSON string), not at U+2028 or U+0085, which
    # a JSON string may hold and where str.splitlines() would split.
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(f"invalid JSON: {getattr(e, 'msg', e)}", where) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, found {type(record).__name__}", where)
        answers = record.get("answers", {"text": [], "answer_start": []})
        if isinstance(answers, dict):
            texts = _field(where, "answers", answers, "text", list)
            starts = _field(where, "answers", answers, "answer_start", list)
            if len(texts) != len(starts):
                raise DataError(f"answers has {len(texts)} texts but {len(starts)} answer_start values", where)
            pairs = list(zip(texts, starts))
        elif isinstance(answers, list):  # [{"text", "answer_start"}, ...] as in SQuAD JSON
            pairs = [(a.get("text"), a.get("answer_start")) if isinstance(a, dict) else (None, None) for a in answers]
        else:
            raise DataError(f'"answers" must be an object {{"text": [...], "answer_start": [...]}}, found '
                            f"{type(answers).__name__}", where)
        for answer_text, start in pairs:
            if not isinstance(answer_text, str) or isinstance(start, bool) or not isinstance(start, int):
                raise DataError(f"each answer needs a text (string) and an answer_start (integer), found "
                                f"{answer_text!r}, {start!r}", where)
        rows.append((where, {
            "id": str(record.get("id", f"line-{number}")), "title": str(record.get("title", "")),
            "question": _field(where, "", record, "question", str), "context": _field(where, "", record, "context", str),
            "answers": pairs, "is_impossible": bool(record.get("is_impossible", False))}))
    return rows


def _field(path: str, where: str, obj: Any, key: str, kind) -> Any:
    location = f"{path}: {where}" if where else path
    if not isinstance(obj, dict):
        raise DataError(f"expected an object with {key!r}, found {type(obj).__name__}", location)
    if key not in obj:
        raise DataError(f"missing field {key!r}", location)
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise DataError(f"field {key!r} must be {names}, found {type(value).__name__}", location)
    return value


def _empty_fields(row: dict) -> list[str]:
    return [name for name in ("question", "context") if not row[name].strip()]


def _collect(path: str, rows: list[tuple[str, dict]], version_2: bool | None, skip_bad_rows: bool) -> QAExamples:
    if not rows:
        raise DataError("no questions in this file", path)
    # (a question refused for an empty question or context does not make the data v2.0)
    detected = any((row["is_impossible"] or not row["answers"]) and not _empty_fields(row) for _, row in rows)
    version_2 = detected if version_2 is None else version_2
    out = QAExamples([], [], [], [], [], [], version_2=version_2)
    seen: dict[str, str] = {}
    for where, row in rows:
        problem = None
        if row["id"] in seen:
            raise DataError(f"duplicate question id {row['id']!r} (first at {seen[row['id']]})", where)
        seen[row["id"]] = where
        answers = [] if row["is_impossible"] else row["answers"]
        empty = _empty_fields(row)
        if empty:
            problem = f"an empty {' and an empty '.join(empty)}"
        elif not answers and not version_2:
            problem = ("a question without answers in SQuAD v1.1 data; pass --version_2_with_negative for data "
                       "with unanswerable questions")
        for answer_text, start in ([] if problem else answers):
            if not answer_text.strip():
                problem = (f"an empty answer text (at answer_start {start}): an answer is a span of the context; "
                           "an unanswerable question has no answers (SQuAD v2.0, --version_2_with_negative)")
                break
            if start < 0 or row["context"][start:start + len(answer_text)] != answer_text:
                found = row["context"][max(start, 0):max(start, 0) + len(answer_text)]
                problem = (f"answer {answer_text!r} is not at answer_start {start} of the context (found {found!r} "
                           "there)")
                break
        if problem:
            if not skip_bad_rows:
                raise DataError(problem + ("" if "v1.1" in problem else "; --skip_bad_rows drops such questions"),
                                where)
            out.skipped.append(f"{where}: {problem}")
            continue
        out.ids.append(row["id"])
        out.questions.append(row["question"])
        out.contexts.append(row["context"])
        out.answers.append(list(answers))
        out.titles.append(row["title"])
        out.sources.append(where)
    if not out.ids:
        raise DataError(f"no usable questions ({len(out.skipped)} skipped, the first: {out.skipped[0]})", path)
    return out
