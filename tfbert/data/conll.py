"""Tagged sentences for token classification: CoNLL files, JSON Lines, tag schemes.

CoNLL: one token per line, its columns separated by a tab (or, in files without tabs, by spaces),
every token line with as many columns as most of them, a blank line between sentences, `-DOCSTART-`
lines ignored; lines end at \n, \r\n or \r (a BOM is dropped). The token is the first column and the
tag the last unless `token_column` / `tag_column` say otherwise (CoNLL-2003 has 4 columns:
token, POS, chunk, NER). JSON Lines: one sentence per line, `{"tokens": [...], "tags": [...]}`
(`ner_tags` is accepted too, as in Hugging Face datasets; string tags only).

Tags are read as IOB2 (`B-PER I-PER O`), IOB1 (`I-PER I-PER B-PER` where B- only separates two
adjacent entities of one type) or BIOES/IOBES (`S-PER`, `E-PER`); `detect_scheme` tells them apart
and `to_iob2` converts IOB1 and BIOES to IOB2, the scheme the model is trained on.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import json
import logging
import os
import re
from typing import Sequence

from tfbert.data.readers import DataError

logger = logging.getLogger(__name__)

SCHEMES = ("auto", "iob1", "iob2", "bioes")
# Words of a CoNLL sentence past which a missing blank line is likelier than the sentence (CoNLL-2003's
# longest has 124 words, OntoNotes' about 210): said once per file, not refused (documents may be longer).
LONG_SENTENCE_WORDS = 300
_TAG = re.compile(r"^(?:O|[BIES]-\S+)$")
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclasses.dataclass
class TaggedSentences:
    """Sentences of words with one tag per word.

    Attributes:
        words: one list of words per sentence.
        tags: one list of tags per sentence (same lengths), or [] for unlabelled input.
        sources: ``"path:line"`` of each sentence's first token.
        scheme: the tag scheme the tags were read in ("iob1", "iob2", "bioes"); the tags
            themselves are IOB2 after `to_iob2`.
        skipped: ``"path:line: reason"`` of each bad line whose sentence `skip_bad_rows` dropped.
    """

    words: list[list[str]]
    tags: list[list[str]]
    sources: list[str] = dataclasses.field(default_factory=list)
    scheme: str = "iob2"
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.words)

    def select(self, indices: Sequence[int]) -> "TaggedSentences":
        indices = [int(i) for i in indices]
        return TaggedSentences([self.words[i] for i in indices], [self.tags[i] for i in indices] if self.tags else [],
                               [self.sources[i] for i in indices], self.scheme)

    def tag_names(self) -> list[str]:
        """The tags that occur, "O" first, then by entity type and B before I."""
        found = {tag for sentence in self.tags for tag in sentence}
        return sorted(found, key=lambda t: (t != "O", t[2:], t[:1]))


def read_tagged(path: str, token_column: int = 0, tag_column: int = -1, scheme: str = "auto",
                skip_bad_rows: bool = False) -> TaggedSentences:
    """Reads a CoNLL file (any extension but .jsonl/.json) or a JSON Lines file of tagged sentences.

    Args:
        path: the file.
        token_column / tag_column: 0-based CoNLL columns (negative counts from the end).
        scheme: "auto" (detected), "iob1", "iob2" or "bioes"; the tags come back as IOB2.
        skip_bad_rows: drop a sentence with a bad line (reported in the error count) instead of
            stopping at it.

    Raises:
        DataError: `path:line: ...` for a line with too few columns, or another number of columns than
            most token lines, a tag that is not `O` or `B-/I-/E-/S-<type>`, a JSON line without
            tokens/tags of the same length, or a file with no sentences.
    """
    if scheme not in SCHEMES:
        raise DataError(f"tag scheme must be one of {', '.join(SCHEMES)}, found {scheme!r}", path)
    if os.path.isdir(path):
        raise DataError("is a directory; expected a CoNLL file (token and tag per line) or a JSON Lines file", path)
    if not os.path.isfile(path):
        raise DataError("file not found", path)
    with open(path, "rb") as f:
        data = f.read().removeprefix(codecs.BOM_UTF8)
    try:
        # Only \n, \r\n and \r end a line: str.splitlines() would also split inside tokens at U+0085,
        # U+2028, \x0c, ... and shift every line number after them.
        lines = _LINE_END.split(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        line_start = max(data.rfind(b"\n", 0, e.start), data.rfind(b"\r", 0, e.start)) + 1
        line = len(_LINE_END.split(data[:e.start].decode("utf-8")))
        raise DataError(f"not valid UTF-8 (byte {e.start - line_start} of the line)", f"{path}:{line}") from None
    if path.endswith((".jsonl", ".json")):
        sentences = _read_jsonl(path, lines, skip_bad_rows)
    else:
        sentences = _read_conll(path, lines, token_column, tag_column, skip_bad_rows)
        _say_long_sentences(sentences)
    if not sentences.words:
        raise DataError("no sentences found (expected one token per line and blank lines between sentences, "
                        "or JSON Lines with 'tokens' and 'tags')", path)
    found = detect_scheme(sentences.tags)
    if scheme == "auto":
        scheme = found
    elif scheme == "iob2" and found != "iob2":
        sentence, token = _first_iob2_violation(sentences.tags)
        where = sentences.sources[sentence]
        if not path.endswith((".jsonl", ".json")):  # CoNLL: one token per line
            where = f"{path}:{int(where.rsplit(':', 1)[1]) + token}"
        tag = sentences.tags[sentence][token]
        raise DataError(f"tags given as iob2, but {tag!r} (word {token + 1} of its sentence) "
                        + ("starts an entity without B- (IOB1)" if tag[0] == "I" else "is a BIOES tag")
                        + "; pass --tag_scheme iob1, bioes or auto", where)
    sentences.scheme = scheme
    sentences.tags = [to_iob2(tags, scheme) for tags in sentences.tags]
    return sentences


def _read_conll(path: str, lines: list[str], token_column: int, tag_column: int,
                skip_bad_rows: bool) -> TaggedSentences:
    words, tags, sources, skipped = [], [], [], []
    current_words, current_tags, start, bad = [], [], None, None
    split = [_columns(line) if line.strip() else None for line in lines]  # None: a blank line
    tokens = [(number, columns) for number, columns in enumerate(split, 1) if columns and columns[0] != "-DOCSTART-"]
    # The file's column count: most of its token lines' (its first line may be the bad one), and a line that has it.
    counts = collections.Counter(len(columns) for _, columns in tokens)
    width = counts.most_common(1)[0][0] if counts else None
    width_line = next((number for number, columns in tokens if len(columns) == width), None)

    def close():
        nonlocal current_words, current_tags, start, bad
        if current_words and bad is None:
            words.append(current_words)
            tags.append(current_tags)
            sources.append(f"{path}:{start}")
        current_words, current_tags, start, bad = [], [], None, None

    for number, (line, columns) in enumerate(zip(lines, split), 1):
        if columns is None:
            close()
            continue
        if columns[0] == "-DOCSTART-":
            close()
            continue
        try:
            if len(columns) < 2:
                raise ValueError(f"expected a token and a tag separated by a tab, found {line!r}")
            if len(columns) != width:  # e.g. `German JJ B-NP`: the NER column is missing, B-NP would be the tag
                raise ValueError(f"expected {width} columns as most token lines have (line {width_line}, ...), "
                                 f"found {len(columns)}: {line!r}")
            try:
                token, tag = columns[token_column], columns[tag_column]
            except IndexError:
                raise ValueError(f"has {len(columns)} columns; token column {token_column} and tag column "
                                 f"{tag_column} do not exist (set --token_column / --tag_column)") from None
            if not token:
                raise ValueError("empty token")
            if not _TAG.match(tag):
                raise ValueError(f"tag {tag!r} is not O or B-/I-/E-/S-<type> (is --tag_column right?)")
        except ValueError as e:
            if not skip_bad_rows:
                raise DataError(str(e), f"{path}:{number}") from None
            bad = number
            skipped.append(f"{path}:{number}: {e} (its sentence is skipped)")
            continue
        if start is None:
            start = number
        current_words.append(token)
        current_tags.append(tag)
    close()
    return TaggedSentences(words, tags, sources, skipped=skipped)


def _say_long_sentences(sentences: TaggedSentences) -> None:
    """Warns when a CoNLL file holds sentences of more than `LONG_SENTENCE_WORDS` words: a file without
    blank lines between its sentences is read as one sentence, and trains and validates on it silently."""
    long = [i for i, words in enumerate(sentences.words) if len(words) > LONG_SENTENCE_WORDS]
    if not long:
        return
    longest = max(long, key=lambda i: len(sentences.words[i]))
    logger.warning("%s: %d of its %d sentences ha%s more than %d words (the longest, %d words, starts at line %s): "
                   "CoNLL files end each sentence with a blank line; if they are missing, sentences run together",
                   sentences.sources[longest].rsplit(":", 1)[0], len(long), len(sentences.words),
                   "s" if len(long) == 1 else "ve", LONG_SENTENCE_WORDS, len(sentences.words[longest]),
                   sentences.sources[longest].rsplit(":", 1)[1])


def _columns(line: str) -> list[str]:
    """A CoNLL line's columns: split at tabs, or in a line without tabs at spaces (only: not str.split(),
    as a token may hold U+0085, U+2028, U+00A0, ...)."""
    columns = line.split("\t") if "\t" in line else [c for c in line.split(" ") if c]
    return [c.strip() for c in columns]


def _read_jsonl(path: str, lines: list[str], skip_bad_rows: bool) -> TaggedSentences:
    words, tags, sources, skipped = [], [], [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"expected an object with 'tokens' and 'tags', found {type(record).__name__}")
            tokens = record.get("tokens")
            sentence_tags = record.get("tags", record.get("ner_tags"))
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens) or not tokens:
                raise ValueError("'tokens' must be a non-empty list of non-empty strings")
            if not isinstance(sentence_tags, list) or len(sentence_tags) != len(tokens):
                raise ValueError(f"'tags' must be a list with one tag per token ({len(tokens)}), "
                                 f"found {sentence_tags!r}")
            for tag in sentence_tags:
                if not isinstance(tag, str) or not _TAG.match(tag):
                    raise ValueError(f"tag {tag!r} is not O or B-/I-/E-/S-<type> (tags must be strings)")
        except ValueError as e:
            if not skip_bad_rows:
                raise DataError(str(e), f"{path}:{number}") from None
            skipped.append(f"{path}:{number}: {e} (skipped)")
            continue
        words.append(tokens)
        tags.append(sentence_tags)
        sources.append(f"{path}:{number}")
    return TaggedSentences(words, tags, sources, skipped=skipped)


def _first_iob2_violation(sentences: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(sentence, word) of the first tag that strict IOB2 forbids: E-/S-, or an I- that continues nothing."""
    for index, tags in enumerate(sentences):
        previous = "O"
        for position, tag in enumerate(tags):
            if tag[0] in "ES" or (tag[0] == "I" and (previous == "O" or previous[2:] != tag[2:])):
                return index, position
            previous = tag
    raise ValueError("no IOB2 violation")


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """"bioes" if any E-/S- tag occurs, else "iob1" if some I- tag starts an entity (after O, at
    the start, or after another type), else "iob2"."""
    iob1 = False
    for tags in sentences:
        previous = "O"
        for tag in tags:
            if tag[0] in "ES":
                return "bioes"
            if tag[0] == "I" and (previous == "O" or previous[2:] != tag[2:]):
                iob1 = True
            previous = tag
    return "iob1" if iob1 else "iob2"


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """One sentence's tags in IOB2: every entity starts with B-."""
    if scheme == "iob2":
        return list(tags)
    out, previous = [], "O"
    for tag in tags:
        prefix, kind = tag[0], tag[2:]
        if prefix == "O":
            out.append("O")
        elif prefix in "BS":
            out.append(f"B-{kind}")
        else:  # I or E: continues an entity of its type, or (IOB1, stray) starts one
            continues = previous != "O" and previous[2:] == kind and previous[0] in "BI"
            out.append(f"I-{kind}" if continues else f"B-{kind}")
        previous = "O" if prefix in "ES" else tag  # E- and S- end their entity
    return out


def iob2_to_entities(words: Sequence[str], tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word exclusive) of each entity in IOB2 tags; a stray I- starts one."""
    entities, start, kind = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        if start is not None and (tag[0] != "I" or tag[2:] != kind):
            entities.append((kind, start, i))
            start = None
        if tag[0] == "B" or (tag[0] == "I" and start is None):
            start, kind = i, tag[2:]
    return entities


TFDS_TAG_FEATURES = ("ner_tags", "ner", "tags")


def read_tfds_tagged(name: str, split: str, data_dir: str | None = None, scheme: str = "auto",
                     download: bool = False) -> TaggedSentences:
    """Tagged sentences from a prepared TFDS dataset with a `tokens` sequence of text and a tag sequence
    (`ner_tags`, `ner` or `tags`: ClassLabel names, or strings), e.g. TFDS's `conll2003`. Sources are
    ``"tfds:name[split]:#i"``.

    Raises:
        DataError: dataset not prepared or unknown, unknown split, or no tokens/tag feature.
    """
    import tensorflow_datasets as tfds

    from tfbert.data.readers import open_tfds_builder

    builder = open_tfds_builder(name, data_dir, download)
    where = f"tfds:{name}[{split}]"
    features = builder.info.features
    tag_feature = next((f for f in TFDS_TAG_FEATURES if f in features), None)
    if "tokens" not in features or tag_feature is None:
        raise DataError(f"expected a 'tokens' feature and a tag feature ({', '.join(TFDS_TAG_FEATURES)}); "
                        f"features found: {', '.join(features.keys())}", where)
    if split not in builder.info.splits:
        raise DataError(f"no split {split!r}; the dataset has {', '.join(builder.info.splits.keys())}", where)
    inner = getattr(features[tag_feature], "feature", None)
    names = getattr(inner, "names", None)
    words, tags, sources = [], [], []
    for index, record in enumerate(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))):
        tokens = [t.decode("utf-8", errors="replace") for t in record["tokens"]]
        raw = record[tag_feature]
        sentence_tags = [names[int(t)] if names else t.decode("utf-8") for t in raw]
        if not tokens:
            continue  # TFDS NER sets hold no empty sentences; skip one if a user's does
        bad = next((t for t in sentence_tags if not _TAG.match(t)), None)
        if bad is not None:
            raise DataError(f"tag {bad!r} is not O or B-/I-/E-/S-<type>", f"{where}:#{index}")
        words.append(tokens)
        tags.append(sentence_tags)
        sources.append(f"{where}:#{index}")
    if not words:
        raise DataError("no sentences in this split", where)
    sentences = TaggedSentences(words, tags, sources)
    sentences.scheme = detect_scheme(tags) if scheme == "auto" else scheme
    sentences.tags = [to_iob2(t, sentences.scheme) for t in tags]
    return sentences
