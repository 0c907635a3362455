"""Signature outputs as plain Python values, and how to read a token classifier's (NER) rows."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from tfbert.serving.base import OUTPUT_ORDER, Classification, Result, ServingClientError


def _python(value: Any) -> Any:
    """numpy values (and bytes) as JSON-ready Python: lists, float, int, bool, str."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list):
        return [_python(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    known = [name for name in OUTPUT_ORDER if name in names]
    return known + sorted(name for name in names if name not in OUTPUT_ORDER)


def rows_from_columns(columns: dict[str, Any]) -> list[Result]:
    """Batched outputs {name: array [batch, ...]} as one dict per example, Python values."""
    if not columns:
        return []
    names = ordered(columns)
    sizes = {name: len(columns[name]) for name in names}
    if len(set(sizes.values())) != 1:
        raise ServingClientError(f"outputs disagree on the batch size: {sizes}")
    return [{name: _python(columns[name][i]) for name in names} for i in range(sizes[names[0]])]


def classifications(classes: Any, scores: Any, size: int) -> list[Classification]:
    """`classes` [batch, k] and `scores` [batch, k] (either may be None) as (class, score) lists;
    a missing class is "" and a missing score 0.0, as in TF Serving's ClassificationResult."""
    classes = None if classes is None else _python(classes)
    scores = None if scores is None else _python(scores)
    results = []
    for i in range(size):
        row_classes = classes[i] if classes is not None else [""] * len(scores[i])
        row_scores = scores[i] if scores is not None else [0.0] * len(row_classes)
        results.append([(str(c), float(s)) for c, s in zip(row_classes, row_scores)])
    return results


def is_tagging(result: Result | Classification) -> bool:
    """Whether a predict row comes from a token-classification (NER) export."""
    return isinstance(result, dict) and "entity_type" in result and "tags" in result


def entities_of(result: Result) -> list[dict[str, Any]]:
    """The entities of an NER export's row: [{"text", "type", "start", "end", "score"}], in text order
    (`start`/`end`: character offsets into the input, or word indices for the `tokens` signature)."""
    count = int(result.get("num_entities", 0))
    return [{"text": result["entity_text"][i], "type": result["entity_type"][i],
             "start": int(result["entity_start"][i]), "end": int(result["entity_end"][i]),
             "score": float(result["entity_score"][i])} for i in range(count)]


def tagged_words(result: Result) -> list[tuple[str, str]]:
    """(word, tag) of each word of an NER export's row (the padding left out)."""
    words = result.get("words") or [str(i) for i in range(len(result["tags"]))]
    return [(word, tag) for word, tag in zip(words, result["tags"]) if tag]
