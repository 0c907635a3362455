"""What `pipelines/predict.py` prints: a plain-text table or JSON Lines, for each kind of export
(classifier, token classifier, question answerer, fill-mask), from the predictors' results
(`LocalPredictor`, `RestPredictor`, `GrpcPredictor`).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import numpy as np

from tfbert.serving.base import Classification, Result, preview
from tfbert.serving.results import entities_of, is_tagging, tagged_words


def _summary(result: Result | Classification, label_names: Sequence[str] | None,
             threshold: float | None = None) -> dict[str, str]:
    """The columns of one table row: the answer and how sure the model is."""
    if is_tagging(result):
        shown = [f"{e['text']} [{e['type']}] {e['score']:.2f}" for e in entities_of(result)]
        return {"entities": "; ".join(shown) or "-"}
    if isinstance(result, list):  # classify: [(class, score), ...]
        ranked = sorted(result, key=lambda pair: -pair[1])
        if not ranked:
            return {}
        scores = "  ".join(f"{label or i}={score:.3f}" for i, (label, score) in enumerate(result))
        if threshold is not None:  # multi-label: every class over the threshold, as serving_default's `predicted`
            # (compared in float32, as the graph compares its float32 probabilities)
            chosen = [label or str(i) for i, (label, score) in enumerate(result)
                      if np.float32(score) > np.float32(threshold)]
            return {"predicted": ", ".join(chosen) or "-", "all scores": scores}
        return {"class": ranked[0][0], "score": f"{ranked[0][1]:.4f}", "all scores": scores}
    cells = {}
    probabilities = result.get("probabilities")
    if "label" in result:
        cells["label"] = str(result["label"])
        if isinstance(probabilities, list) and probabilities:
            label_id = result.get("label_id")
            best = probabilities[label_id] if isinstance(label_id, int) and 0 <= label_id < len(probabilities) \
                else max(probabilities)
            cells["probability"] = f"{best:.4f}"
    elif "predicted" in result:
        chosen = [i for i, flag in enumerate(result["predicted"]) if flag]
        names = [label_names[i] if label_names and i < len(label_names) else str(i) for i in chosen]
        cells["predicted"] = ", ".join(names) or "-"
    elif "score" in result:
        cells["score"] = f"{result['score']:.4f}"
    else:
        for name, value in result.items():
            cells[name] = preview(json.dumps(value), 40)
    return cells


def format_table(texts: Sequence[str], results: Sequence[Result | Classification], pairs: Sequence[str] | None = None,
                 label_names: Sequence[str] | None = None, max_text_width: int = 60,
                 threshold: float | None = None) -> str:
    """A plain-text table: one row per text with its label (or class, score, predicted labels)
    and probability. Tabs and newlines in texts are shown escaped; long texts are cut.

    Args:
        texts: the input texts, in the order of `results`.
        results: what `predict` or `classify` returned.
        pairs: the text pairs, shown in a second column.
        label_names: names for multi-label `predicted` flags (indices otherwise).
        max_text_width: characters of each text shown.
        threshold: a multi-label model's (its export's `threshold`): `classify` results are shown as the
            classes scored over it, not as the top class.
    """
    rows = []
    for i, (text, result) in enumerate(zip(texts, results)):
        row = {"text": preview(text, max_text_width)}
        if pairs is not None:
            row["text_pair"] = preview(pairs[i], max_text_width)
        row.update(_summary(result, label_names, threshold))
        rows.append(row)
    columns = ["text"] + (["text_pair"] if pairs is not None else [])
    for row in rows:
        columns += [name for name in row if name not in columns]
    widths = {name: max([len(name)] + [len(row.get(name, "")) for row in rows]) for name in columns}
    lines = ["  ".join(name.ljust(widths[name]) for name in columns).rstrip(),
             "  ".join("-" * widths[name] for name in columns)]
    lines += ["  ".join(row.get(name, "").ljust(widths[name]) for name in columns).rstrip() for row in rows]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so every line stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def format_jsonl(texts: Sequence[str], results: Sequence[Result | Classification],
                 pairs: Sequence[str] | None = None, sentences: Sequence[Sequence[str]] | None = None) -> str:
    """One JSON object per line: `{"text": ..., ["text_pair": ...,] <outputs>}`; classify
    results as `"classes": [{"label": ..., "score": ...}, ...]`. Non-finite numbers are null.
    With `sentences` (pre-split words, `Predictor.predict_words`) the line starts with `"tokens"` instead of
    `"text"` (the entities' start/end are word indices into them).
    """
    lines = []
    for i, (text, result) in enumerate(zip(texts, results)):
        record: dict[str, Any] = {"text": text} if sentences is None else {"tokens": list(sentences[i])}
        if pairs is not None:
            record["text_pair"] = pairs[i]
        if isinstance(result, list):
            record["classes"] = [{"label": label, "score": _finite(score)} for label, score in result]
        elif is_tagging(result):  # the entities, and each word with its tag, without the batch padding
            record["entities"] = [{**e, "score": _finite(e["score"])} for e in entities_of(result)]
            words = tagged_words(result if sentences is None else {**result, "words": sentences[i]})
            record["words"] = [word for word, _ in words]
            record["tags"] = [tag for _, tag in words]
        else:
            record.update({name: _finite(value) for name, value in result.items()})
        lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
    return "\n".join(lines)


def format_fills(texts: Sequence[str], results: Sequence[Result], jsonl: bool, max_text_width: int = 60,
                 mask_token: str = "[MASK]") -> str:
    """A fill-mask export's predictions: per text, each mask's top tokens with their probabilities.
    `mask_token`: the export's (`mask_token_of(metadata)`), named when a text shows none filled."""
    records = []
    for text, result in zip(texts, results):
        masks = [{"start": int(result["mask_start"][m]), "end": int(result["mask_end"][m]),
                  "fills": [{"token": t, "score": float(s)} for t, s in zip(result["tokens"][m], result["scores"][m])]}
                 for m in range(int(result["num_masks"]))]
        records.append({"text": text, "masks": masks})
    if jsonl:
        return "\n".join(json.dumps({"text": r["text"], "masks": [
            {**mask, "fills": [{"token": f["token"], "score": _finite(f["score"])} for f in mask["fills"]]}
            for mask in r["masks"]]}, ensure_ascii=False, allow_nan=False) for r in records)
    rows = []
    for record in records:
        shown = " | ".join(", ".join(f"{f['token']} {f['score']:.2f}" for f in mask["fills"])
                           for mask in record["masks"])
        missing = (f"(its {mask_token} was cut off: past max_seq_length)" if mask_token in record["text"]
                   else f"(no {mask_token} in the text)")
        rows.append({"text": preview(record["text"], max_text_width), "fills": shown or missing})
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in ("text", "fills")}
    lines = ["text".ljust(widths["text"]) + "  fills", "-" * widths["text"] + "  " + "-" * widths["fills"]]
    lines += [(row["text"].ljust(widths["text"]) + "  " + row["fills"]).rstrip() for row in rows]
    return "\n".join(lines)


def mask_token_of(metadata: dict) -> str:
    """The mask token of the export that `metadata` (tfbert_export.json) describes; "[MASK]" if unsaid."""
    return (metadata.get("tokenizer") or {}).get("mask_token") or "[MASK]"


def warn_cut_masks(texts: Sequence[str], results: Sequence[Result], locations: Sequence[str] | None,
                   metadata: dict) -> None:
    """Warns on stderr about each text with more mask tokens than the model filled: those came after the
    export's `max_seq_length` tokens and were cut off (the table would say the text has none)."""
    mask = mask_token_of(metadata)
    length = metadata.get("max_seq_length")
    for i, (text, result) in enumerate(zip(texts, results)):
        written, filled = text.count(mask), int(result["num_masks"])
        if written > filled:
            where = locations[i] if locations else f"text {i + 1}"
            limit = f"the first {length} tokens" if length else "the model's max_seq_length"
            print(f"warning: {where}: {written - filled} of its {written} {mask} come after {limit} and were "
                  "cut off: no predictions for them (shorten the text before the mask)", file=sys.stderr)


def format_answers(questions: Sequence[str], contexts: Sequence[str], results: Sequence[Result], jsonl: bool,
                   max_text_width: int = 60) -> str:
    """Answers as a table (question, answer, score) or as JSON Lines (question, answer, score, start,
    end[, no_answer]; the context is left out)."""
    if jsonl:
        return "\n".join(json.dumps({"question": q, **{k: _finite(v) for k, v in r.items()}}, ensure_ascii=False,
                                    allow_nan=False) for q, r in zip(questions, results))
    rows = [{"question": preview(q, max_text_width),
             "answer": "(no answer)" if r.get("no_answer") or r.get("start", 0) < 0 else preview(r["answer"], 40),
             "score": f"{r['score']:.4f}"} for q, r in zip(questions, results)]
    columns = ["question", "answer", "score"]
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)
