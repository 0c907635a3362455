"""From start/end logits to answers, and SQuAD's exact match and F1.

Decoding follows transformers' `run_qa.py` post-processing across all windows of a question: candidate
spans lie inside the context, start <= end, at most `max_answer_length` tokens; a span's score is
start logit + end logit, compared across windows; the answer text is cut from the ORIGINAL context
by character offsets. Within a window the candidates are the exact best `n_best_size` spans (as
transformers' question-answering pipeline's `decode_spans`), not only combinations of the top starts
and ends. For SQuAD v2.0 the null score is the smallest [CLS] start + end logit over the windows, and
a question gets no answer when null score - best span score > `null_score_diff_threshold`.

Metrics are those of the official evaluation scripts (v1.1 and v2.0), on a 0-100 scale as they print:
answers normalised (lower case, punctuation and the articles a/an/the removed, whitespace collapsed),
exact match and token F1 taken as the best over the gold answers (an unanswerable question's gold is
""); for v2.0 also HasAns/NoAns and the best threshold on the null-score difference.
"""

from __future__ import annotations

import collections
import re
import string

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def window_spans(start_logits: np.ndarray, end_logits: np.ndarray, context: np.ndarray, max_answer_length: int,
                 n_best_size: int) -> list[tuple[float, int, int]]:
    """The best `n_best_size` (score, start, end) spans of one window, best first; `context` marks the
    positions an answer may use."""
    positions = np.flatnonzero(context)
    if not len(positions):
        return []
    s = start_logits[positions][:, None] + end_logits[positions][None, :]
    gap = positions[None, :] - positions[:, None]
    allowed = (gap >= 0) & (gap < max_answer_length)
    scores = np.where(allowed, s, -np.inf)
    flat = scores.ravel()
    count = min(n_best_size, int(np.isfinite(flat).sum()))
    if count == 0:
        return []
    top = np.argpartition(-flat, count - 1)[:count]
    top = top[np.lexsort((top, -flat[top]))]  # best first; ties in position order
    rows, cols = np.unravel_index(top, scores.shape)
    return [(float(flat[t]), int(positions[r]), int(positions[c])) for t, r, c in zip(top, rows, cols)]


def decode(context: str, windows: list[dict], max_answer_length: int = 30, n_best_size: int = 20,
           version_2: bool = False, null_score_diff_threshold: float = 0.0) -> dict:
    """One question's answer from its windows.

    Args:
        context: the original context string.
        windows: per window, numpy `start_logits`, `end_logits` [seq] and `char_start`, `char_end`
            [seq] (-1 outside the context), as `tfbert.tasks.qa_windows.Windows` gives them.

    Returns:
        {"text", "start", "end" (characters; -1 when no answer), "score" (the n-best probability),
        "null_score_diff" (v2; None for v1), "nbest": [{"text", "probability", "start_logit",
        "end_logit", "start", "end"}, ...]}.
    """
    candidates = []
    null_score = None
    for window in windows:
        start_logits, end_logits = window["start_logits"], window["end_logits"]
        if version_2:
            score = float(start_logits[0] + end_logits[0])
            null_score = score if null_score is None else min(null_score, score)
        for score, s, e in window_spans(start_logits, end_logits, window["char_start"] >= 0, max_answer_length,
                                        n_best_size):
            begin, end = int(window["char_start"][s]), int(window["char_end"][e])
            candidates.append({"text": context[begin:end], "start": begin, "end": end, "score": score,
                               "start_logit": float(start_logits[s]), "end_logit": float(end_logits[e])})
    candidates.sort(key=lambda c: -c["score"])
    nbest = candidates[:n_best_size]
    if version_2 and null_score is not None:
        nbest.append({"text": "", "start": -1, "end": -1, "score": null_score, "start_logit": None,
                      "end_logit": None})
        nbest.sort(key=lambda c: -c["score"])
    if not nbest:  # no span fits (e.g. an empty context): no answer, with no confidence in it
        return {"text": "", "start": -1, "end": -1, "score": 0.0, "null_score_diff": None if not version_2 else
                float("inf"), "nbest": []}
    scores = np.array([c["score"] for c in nbest])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    for candidate, probability in zip(nbest, probabilities):
        candidate["probability"] = float(probability)
    best = next((c for c in nbest if c["start"] >= 0), None)
    diff = None
    if version_2:
        diff = float(null_score - best["score"]) if best is not None and null_score is not None else float("inf")
        if diff > null_score_diff_threshold:
            best = None
    if best is None:
        answer = {"text": "", "start": -1, "end": -1,
                  "score": next((c["probability"] for c in nbest if c["start"] < 0), 0.0)}
    else:
        answer = {"text": best["text"], "start": best["start"], "end": best["end"], "score": best["probability"]}
    return {**answer, "null_score_diff": diff,
            "nbest": [{k: c[k] for k in ("text", "probability", "start_logit", "end_logit", "start", "end")}
                      for c in nbest]}


# ---- the official metrics ------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not truth:  # v2.0: an empty answer scores 1 only against an empty gold
        return float(predicted == truth)
    common = collections.Counter(predicted) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], gold: dict[str, list[str]],
                 null_score_diffs: dict[str, float] | None = None) -> dict:
    """Exact match and F1 (0-100) of `predictions` (id -> text) against `gold` (id -> gold texts; [] for
    an unanswerable question). With `null_score_diffs` (v2.0: id -> null score - best span score, and
    `predictions` holding each question's best non-null span), also HasAns_/NoAns_ scores and the best
    threshold: the `best_exact`/`best_f1` reached by answering "" whenever the difference exceeds
    `best_*_thresh`, as the official v2.0 script's `find_best_thresh`."""
    exact, f1s = {}, {}
    for qid, answers in gold.items():
        prediction = predictions.get(qid, "")
        # v2.0's script drops golds that normalise to nothing (e.g. "The"); v1.1's keeps them.
        references = ([a for a in answers if normalize_answer(a)] if null_score_diffs is not None else answers) or [""]
        exact[qid] = max(exact_match(prediction, a) for a in references)
        f1s[qid] = max(f1(prediction, a) for a in references)
    total = len(gold)
    out = {"exact_match": 100.0 * sum(exact.values()) / total if total else 0.0,
           "f1": 100.0 * sum(f1s.values()) / total if total else 0.0, "total": total}
    if null_score_diffs is not None:
        has = [q for q in gold if gold[q]]
        no = [q for q in gold if not gold[q]]
        for name, ids in (("HasAns", has), ("NoAns", no)):
            out[f"{name}_total"] = len(ids)
            if ids:
                out[f"{name}_exact"] = 100.0 * sum(exact[q] for q in ids) / len(ids)
                out[f"{name}_f1"] = 100.0 * sum(f1s[q] for q in ids) / len(ids)
        for name, raw in (("exact", exact), ("f1", f1s)):
            # Scores as if each question were answered with its prediction, sorted by difference.
            best, threshold = _best_threshold(predictions, raw, null_score_diffs, gold)
            out[f"best_{name}"], out[f"best_{name}_thresh"] = best, threshold
    return out


def _best_threshold(predictions, scores, diffs, gold) -> tuple[float, float]:
    current = best = sum(1 for q in gold if not gold[q])
    threshold = 0.0
    for qid in sorted(diffs, key=lambda q: diffs[q]):
        if qid not in scores:
            continue
        if gold[qid]:
            change = scores[qid]
        else:
            change = -1 if predictions.get(qid) else 0
        current += change
        if current > best:
            best, threshold = current, diffs[qid]
    return 100.0 * best / len(scores) if scores else 0.0, float(threshold)
