"""Evaluation metrics computed exactly from a whole validation set of predictions.

These are plain numpy functions, called once per epoch (or after training) with every
label and prediction of the validation set, so nothing here is streaming or approximate.
Each one agrees with the reference implementation used by the tests:

- `classification_metrics`, `confusion_matrix`, `per_class_report`, `format_report` and
  `multilabel_metrics` match scikit-learn with `labels=list(range(num_classes))` and
  `zero_division=0`;
- `regression_metrics` matches `scipy.stats.pearsonr` / `spearmanr` (ties get average ranks);
- `ner_metrics` matches seqeval's default (conlleval-compatible, lenient) entity chunking.

The library does not import scikit-learn, scipy or seqeval; they are test-only dependencies.

Zero-division convention: a ratio whose denominator is zero is 0.0 (precision of a class
never predicted, recall of a class never true, F1 of a class neither true nor predicted).
Such classes still count in macro averages, exactly as scikit-learn with `zero_division=0`.

Example:
    >>> import numpy as np
    >>> scores = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), num_classes=3)
    >>> scores["accuracy"]
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "per_class_report",
    "format_report",
    "multilabel_metrics",
    "regression_metrics",
    "ner_metrics",
]


# ---- helpers -----------------------------------------------------------------------------

def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator as float64, 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    result = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, found {num_classes!r}")
    return int(num_classes)


def _as_label_vector(values: Any, name: str, num_classes: int) -> np.ndarray:
    """Converts class ids of shape [n] or [n, 1] to int64 [n], checking 0 <= id < num_classes."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{name}: expected class ids of shape [n] (or [n, 1]), found shape {array.shape}; "
            "for scores or logits of shape [n, num_classes] pass their argmax over the last axis")
    if array.dtype == bool:
        array = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            bad = int(np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))[0])
            raise ValueError(f"{name}: expected integer class ids, found {array[bad].item()!r} at index {bad}")
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class ids, found dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    out_of_range = (array < 0) | (array >= num_classes)
    if np.any(out_of_range):
        bad = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(
            f"{name}: class ids must be in [0, {num_classes}) for num_classes={num_classes}, "
            f"found {int(array[bad])} at index {bad}")
    return array


def _check_label_pair(y_true: Any, y_pred: Any, num_classes: Any) -> tuple[np.ndarray, np.ndarray, int]:
    num_classes = _check_num_classes(num_classes)
    true_ids = _as_label_vector(y_true, "y_true", num_classes)
    pred_ids = _as_label_vector(y_pred, "y_pred", num_classes)
    if true_ids.shape != pred_ids.shape:
        raise ValueError(f"y_true has {true_ids.shape[0]} labels but y_pred has {pred_ids.shape[0]}; "
                         "expected one prediction per example")
    if true_ids.size == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one example")
    return true_ids, pred_ids, num_classes


# ---- single-label classification ---------------------------------------------------------

def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: int class ids, shape [n] (or [n, 1]), each in [0, num_classes).
        y_pred: int class ids, same shape as `y_true`.
        num_classes: number of classes; every class gets a row and a column.

    Returns:
        int64 array [num_classes, num_classes]; entry [i, j] counts examples of true class i
        predicted as class j (rows = true, columns = predicted, as scikit-learn).

    Raises:
        ValueError: on mismatched lengths, empty input, or ids outside [0, num_classes).

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), num_classes=2).tolist()
        [[1, 0], [1, 1]]
    """
    true_ids, pred_ids, num_classes = _check_label_pair(y_true, y_pred, num_classes)
    flat = np.bincount(true_ids * num_classes + pred_ids, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _per_class_counts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, predicted count, true count) per class of a confusion matrix."""
    return np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)


def _precision_recall_f1(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # F1 from counts, 2tp / (2tp + fp + fn), which is what scikit-learn computes; it equals
    # 2PR / (P + R) whenever that is defined and is 0 when the class is neither true nor predicted.
    return (_safe_divide(tp, predicted), _safe_divide(tp, actual),
            _safe_divide(2 * np.asarray(tp), np.asarray(actual) + np.asarray(predicted)))


def _matthews_corrcoef(matrix: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K) of a confusion matrix; 0.0 if undefined."""
    actual = matrix.sum(axis=1, dtype=np.float64)
    predicted = matrix.sum(axis=0, dtype=np.float64)
    correct = np.trace(matrix, dtype=np.float64)
    total = actual.sum()
    covariance_true_pred = correct * total - np.dot(actual, predicted)
    variance_pred = total ** 2 - np.dot(predicted, predicted)
    variance_true = total ** 2 - np.dot(actual, actual)
    # Undefined when either side puts every example in one class: report 0 (no correlation).
    if variance_pred * variance_true == 0:
        return 0.0
    return float(covariance_true_pred / np.sqrt(variance_pred * variance_true))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, macro/weighted F1, MCC and macro precision/recall of single-label predictions.

    Macro averages are over all `num_classes` classes, including classes that appear in
    neither `y_true` nor `y_pred` (they contribute 0, as scikit-learn with
    `labels=list(range(num_classes)), zero_division=0`). Weighted F1 weights each class by
    its number of true examples.

    Args:
        y_true: int class ids, shape [n] (or [n, 1]), each in [0, num_classes).
        y_pred: int class ids (e.g. the argmax of logits), same shape as `y_true`.
        num_classes: number of classes of the task.

    Returns:
        Python floats under "accuracy", "macro_f1", "weighted_f1", "mcc" (multi-class Matthews
        correlation, 0.0 when undefined, as `sklearn.metrics.matthews_corrcoef`),
        "macro_precision" and "macro_recall".

    Raises:
        ValueError: on mismatched lengths, empty input, or ids outside [0, num_classes).

    Example:
        >>> m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), num_classes=2)
        >>> round(m["macro_f1"], 4), round(m["mcc"], 4)
        (0.7333, 0.5774)
    """
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    tp, predicted, actual = _per_class_counts(matrix)
    precision, recall, f1 = _precision_recall_f1(tp, predicted, actual)
    return {
        "accuracy": float(tp.sum() / matrix.sum()),
        "macro_f1": float(np.mean(f1)),
        "weighted_f1": float(np.average(f1, weights=actual)),
        "mcc": _matthews_corrcoef(matrix),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
    }


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class.

    Args:
        y_true: int class ids, shape [n] (or [n, 1]); id i names `label_names[i]`.
        y_pred: int class ids, same shape as `y_true`.
        label_names: one name per class; its length is the number of classes.

    Returns:
        One dict per class, in class-id order, with keys "label" (str), "precision", "recall",
        "f1" (floats, 0.0 where undefined) and "support" (int, number of true examples).
        `format_report` turns it into a text table.

    Raises:
        ValueError: on an empty `label_names`, mismatched lengths, empty input, or ids outside
            [0, len(label_names)).

    Example:
        >>> report = per_class_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ["neg", "pos"])
        >>> report[1]
        {'label': 'pos', 'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'support': 2}
    """
    label_names = [str(name) for name in label_names]
    if not label_names:
        raise ValueError("label_names is empty; expected one name per class")
    matrix = confusion_matrix(y_true, y_pred, len(label_names))
    tp, predicted, actual = _per_class_counts(matrix)
    precision, recall, f1 = _precision_recall_f1(tp, predicted, actual)
    return [
        {"label": name, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(actual[i])}
        for i, name in enumerate(label_names)
    ]


def format_report(report: Sequence[dict[str, Any]], digits: int = 2) -> str:
    """Renders a `per_class_report` as a text table laid out like scikit-learn's.

    The table has one row per class, then "accuracy", "macro avg" and "weighted avg" rows;
    its text is identical to `sklearn.metrics.classification_report(..., labels=range(k),
    target_names=names, zero_division=0, digits=digits)`.

    Args:
        report: the list returned by `per_class_report`.
        digits: decimals shown for precision, recall and F1.

    Returns:
        The table as one string ending with a newline.

    Raises:
        ValueError: if `report` is empty or a row lacks one of the report keys.

    Example:
        >>> print(format_report(per_class_report(np.array([0, 1]), np.array([0, 1]), ["neg", "pos"])))
        ... # doctest: +NORMALIZE_WHITESPACE
                      precision    recall  f1-score   support
        <BLANKLINE>
                 neg       1.00      1.00      1.00         1
                 pos       1.00      1.00      1.00         1
        <BLANKLINE>
            accuracy                           1.00         2
           macro avg       1.00      1.00      1.00         2
        weighted avg       1.00      1.00      1.00         2
        <BLANKLINE>
    """
    if not report:
        raise ValueError("format_report: the report is empty; expected the list from per_class_report")
    required = ("label", "precision", "recall", "f1", "support")
    for index, row in enumerate(report):
        missing = [key for key in required if key not in row]
        if missing:
            raise ValueError(f"format_report: row {index} lacks {missing}; expected keys {list(required)}")
    labels = [str(row["label"]) for row in report]
    precision = np.array([row["precision"] for row in report], dtype=np.float64)
    recall = np.array([row["recall"] for row in report], dtype=np.float64)
    f1 = np.array([row["f1"] for row in report], dtype=np.float64)
    support = np.array([row["support"] for row in report], dtype=np.int64)
    total = int(support.sum())
    # recall * support is the integer count of true positives up to rounding error.
    correct = int(np.round(recall * support).sum())
    accuracy = correct / total if total else 0.0
    if total:
        weighted = [float(np.average(values, weights=support)) for values in (precision, recall, f1)]
    else:
        weighted = [0.0, 0.0, 0.0]

    width = max(max(len(label) for label in labels), len("weighted avg"), digits)
    headers = ("precision", "recall", "f1-score", "support")
    lines = [" " * (width + 1) + "".join(f" {header:>9}" for header in headers), ""]

    def scores_row(name: str, p: float, r: float, f: float, s: int) -> str:
        return f"{name:>{width}s} " + f" {p:>9.{digits}f} {r:>9.{digits}f} {f:>9.{digits}f} {s:>9}"

    for i, label in enumerate(labels):
        lines.append(scores_row(label, precision[i], recall[i], f1[i], int(support[i])))
    lines.append("")
    lines.append(f"{'accuracy':>{width}s} " + " " * 20 + f" {accuracy:>9.{digits}f} {total:>9}")
    lines.append(scores_row("macro avg", float(np.mean(precision)), float(np.mean(recall)),
                            float(np.mean(f1)), total))
    lines.append(scores_row("weighted avg", *weighted, total))
    return "\n".join(lines) + "\n"


# ---- multi-label classification ----------------------------------------------------------

def _as_indicator_matrix(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a [n, num_labels] array, found shape {array.shape}")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected 0/1 or boolean values, found dtype {array.dtype}")
    not_binary = (array != 0) & (array != 1)
    if np.any(not_binary):
        row, column = (int(i) for i in np.argwhere(not_binary)[0])
        raise ValueError(f"{name}: expected 0/1 or boolean values, "
                         f"found {array[row, column].item()!r} at [{row}, {column}]")
    return array.astype(bool)


def multilabel_metrics(y_true: np.ndarray, y_prob_or_pred: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Micro/macro F1, micro precision/recall, subset accuracy and Hamming loss of multi-label output.

    Args:
        y_true: 0/1 (bool or int) indicator array [n, num_labels].
        y_prob_or_pred: same shape; either 0/1 predictions (bool or integer dtype), used as
            they are, or probabilities (floating dtype), predicted positive where
            `prob > threshold` (strictly greater, as Keras' thresholded metrics).
        threshold: decision threshold for probabilities; ignored for bool/integer predictions.

    Returns:
        Python floats under "micro_f1", "macro_f1" (mean over all labels, a label never true
        and never predicted counting 0), "micro_precision", "micro_recall",
        "subset_accuracy" (fraction of rows predicted exactly) and "hamming_loss" (fraction
        of wrong label decisions).

    Raises:
        ValueError: on shapes that differ or are not 2-D, empty input, or non-0/1 values.

    Example:
        >>> y = np.array([[1, 0], [1, 1]])
        >>> m = multilabel_metrics(y, np.array([[0.9, 0.2], [0.7, 0.4]]))
        >>> m["subset_accuracy"], m["hamming_loss"]
        (0.5, 0.25)
    """
    truth = _as_indicator_matrix(y_true, "y_true")
    scores = np.asarray(y_prob_or_pred)
    if scores.ndim == 2 and np.issubdtype(scores.dtype, np.floating):
        prediction = scores > threshold
    else:
        prediction = _as_indicator_matrix(scores, "y_prob_or_pred")
    if truth.shape != prediction.shape:
        raise ValueError(f"y_true has shape {truth.shape} but y_prob_or_pred has shape {prediction.shape}; "
                         "expected the same [n, num_labels]")
    if truth.size == 0:
        raise ValueError(f"multilabel_metrics needs at least one example and one label, found shape {truth.shape}")

    tp = np.sum(truth & prediction, axis=0)
    predicted = prediction.sum(axis=0)
    actual = truth.sum(axis=0)
    _, _, f1 = _precision_recall_f1(tp, predicted, actual)
    micro_precision, micro_recall, micro_f1 = _precision_recall_f1(tp.sum(), predicted.sum(), actual.sum())
    return {
        "micro_f1": float(micro_f1),
        "macro_f1": float(np.mean(f1)),
        "micro_precision": float(micro_precision),
        "micro_recall": float(micro_recall),
        "subset_accuracy": float(np.mean(np.all(truth == prediction, axis=1))),
        "hamming_loss": float(np.mean(truth != prediction)),
    }


# ---- regression --------------------------------------------------------------------------

def _as_float_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name}: expected shape [n] (or [n, 1]), found {array.shape}")
    return array


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (or n < 2), NaN if any input is NaN."""
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    # Exact equality test first: centring a constant like [0.1, 0.1, 0.1] leaves rounding noise
    # whose "correlation" would be meaningless.
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    x_centred = x - x.mean()
    y_centred = y - y.mean()
    x_norm = np.linalg.norm(x_centred)
    y_norm = np.linalg.norm(y_centred)
    if x_norm == 0 or y_norm == 0:  # spread so small that it underflows
        return 0.0
    r = np.dot(x_centred / x_norm, y_centred / y_norm)
    return float(np.clip(r, -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span (scipy's 'average')."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.ones(values.size, dtype=bool)
    starts_group[1:] = ordered[1:] != ordered[:-1]
    group_of_position = np.cumsum(starts_group) - 1
    group_first = np.flatnonzero(starts_group)
    group_end = np.append(group_first[1:], values.size)  # one past the group's last position
    # Positions first..end-1 hold ranks first+1..end; their mean is (first + 1 + end) / 2.
    group_rank = (group_first + 1 + group_end) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = group_rank[group_of_position]
    return ranks


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Mean squared/absolute error and Pearson/Spearman correlation of real-valued predictions.

    Spearman's rho is the Pearson correlation of the ranks, tied values getting the average of
    the ranks they span (as `scipy.stats.spearmanr`).

    Correlations are NaN-safe: when either side is constant (or there is a single example)
    the correlation is undefined and reported as 0.0 ("no correlation") instead of NaN, so an
    epoch where the model predicts one value logs a number. If any input is NaN, every
    metric is NaN: a diverged model is not hidden.

    Args:
        y_true: float targets, shape [n] (or [n, 1]).
        y_pred: float predictions, same shape.

    Returns:
        Python floats under "mse", "mae", "pearson" and "spearman".

    Raises:
        ValueError: on shapes that differ or are not [n] / [n, 1], or empty input.

    Example:
        >>> m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
        >>> round(m["mse"], 4), round(m["spearman"], 4)
        (0.6667, 0.5)
    """
    truth = _as_float_vector(y_true, "y_true")
    prediction = _as_float_vector(y_pred, "y_pred")
    if truth.shape != prediction.shape:
        raise ValueError(f"y_true has {truth.shape[0]} values but y_pred has {prediction.shape[0]}; "
                         "expected one prediction per example")
    if truth.size == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one example")
    error = prediction - truth
    if np.isnan(truth).any() or np.isnan(prediction).any():
        spearman = float("nan")
    else:
        spearman = _pearson(_average_ranks(truth), _average_ranks(prediction))
    return {
        "mse": float(np.mean(error ** 2)),
        "mae": float(np.mean(np.abs(error))),
        "pearson": _pearson(truth, prediction),
        "spearman": spearman,
    }


# ---- named-entity recognition ------------------------------------------------------------
# Entity chunking compatible with conlleval.pl and seqeval's default (non-strict) mode. A tag is
# a one-letter prefix and a type ("B-PER" -> "B", "PER"). Chunks are lenient: an I- tag after O
# or after a different type opens a new entity, so IOB1 and IOB2 (and IOE/IOBES) are all read.

_ENDS_PREVIOUS_CHUNK = {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")}
_STARTS_NEW_CHUNK = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}
_OUTSIDE_PREFIXES = ("O", ".")


def _split_tag(tag: Any, sentence: int, position: int) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '_'). Untyped tags get the type '_' (as seqeval)."""
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"ner_metrics: sentence {sentence}, token {position}: expected a tag string such as "
                         f"'B-PER' or 'O', found {tag!r}")
    prefix, rest = tag[0], tag[1:]
    before, dash, after = rest.partition("-")
    entity_type = after if dash else before
    return prefix, entity_type or "_"


def _entity_spans(sentences: Sequence[Sequence[str]]) -> set[tuple[str, int, int]]:
    """All (type, first token, last token) entities, with token offsets counted across sentences.

    Sentences are read as one stream with an 'O' after each (seqeval's convention), so no entity
    spans two sentences and offsets stay comparable between the true and predicted tags.
    """
    spans: set[tuple[str, int, int]] = set()
    previous_prefix, previous_type = "O", ""
    chunk_start = 0
    offset = 0
    for sentence_index, sentence in enumerate(sentences):
        tagged = [_split_tag(tag, sentence_index, position) for position, tag in enumerate(sentence)]
        tagged.append(("O", "_"))  # sentence boundary
        for prefix, entity_type in tagged:
            type_changed = entity_type != previous_type
            if (previous_prefix in ("E", "S") or (previous_prefix, prefix) in _ENDS_PREVIOUS_CHUNK
                    or (type_changed and previous_prefix not in _OUTSIDE_PREFIXES)):
                spans.add((previous_type, chunk_start, offset - 1))
            if (prefix in ("B", "S") or (previous_prefix, prefix) in _STARTS_NEW_CHUNK
                    or (type_changed and prefix not in _OUTSIDE_PREFIXES)):
                chunk_start = offset
            previous_prefix, previous_type = prefix, entity_type
            offset += 1
    return spans


def _strict_iob2_spans(sentences: Sequence[Sequence[str]]) -> set[tuple[str, int, int]]:
    """Entities as seqeval's strict IOB2 mode reads them: B-X then I-X...; an I- tag that does not
    continue an entity of its type (after O, at the start, after another type) belongs to none."""
    spans: set[tuple[str, int, int]] = set()
    offset = 0
    for sentence_index, sentence in enumerate(sentences):
        start, kind = None, None
        for position, tag in enumerate(list(sentence) + ["O"]):
            prefix, entity_type = _split_tag(tag, sentence_index, position) if position < len(sentence) else ("O", "_")
            if start is not None and not (prefix == "I" and entity_type == kind):
                spans.add((kind, start, offset + position - 1))
                start = None
            if prefix == "B":
                start, kind = offset + position, entity_type
        offset += len(sentence) + 1
    return spans


def _f1_from_precision_recall(precision: float, recall: float) -> float:
    # seqeval combines precision and recall rather than counts; keep its arithmetic.
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def ner_metrics(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]],
                mode: str = "default") -> dict[str, Any]:
    """Entity-level micro precision, recall and F1 of tagged sentences, with per-type scores.

    An entity counts as correct only if its type, first and last token all match. Chunking is
    lenient, as conlleval and `seqeval.metrics.f1_score` in its default mode: "I-PER" after
    "O" or after another type starts a new entity, so IOB1 and IOB2 tagging both work.

    Args:
        true_tags: one list of tag strings ("B-PER", "I-PER", "O", ...) per sentence.
        pred_tags: predicted tags, same number of sentences and tokens per sentence.
        mode: "default" (lenient, as above) or "strict": IOB2 read as seqeval's
            `mode="strict", scheme=IOB2` reads it, where only B- starts an entity and an I- tag that
            continues none is not part of one.

    Returns:
        {"precision", "recall", "f1": micro-averaged floats (0.0 where undefined),
         "support": number of true entities,
         "per_type": {type: {"precision", "recall", "f1", "support"}}} with one entry per entity
        type found in either the true or the predicted tags, sorted by type.

    Raises:
        ValueError: if the sentence counts or a sentence's lengths differ, or a tag is not a
            non-empty string.

    Example:
        >>> truth = [["B-PER", "I-PER", "O"], ["B-LOC"]]
        >>> guess = [["B-PER", "I-PER", "O"], ["O"]]
        >>> m = ner_metrics(truth, guess)
        >>> m["precision"], m["recall"], round(m["f1"], 4)
        (1.0, 0.5, 0.6667)
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"ner_metrics: true_tags has {len(true_tags)} sentences but pred_tags has "
                         f"{len(pred_tags)}; expected one predicted sentence per true sentence")
    for index, (truth, prediction) in enumerate(zip(true_tags, pred_tags)):
        if len(truth) != len(prediction):
            raise ValueError(f"ner_metrics: sentence {index} has {len(truth)} true tags but "
                             f"{len(prediction)} predicted tags; expected one tag per token")
    if mode not in ("default", "strict"):
        raise ValueError(f"ner_metrics: mode must be 'default' or 'strict', found {mode!r}")
    spans_of = _entity_spans if mode == "default" else _strict_iob2_spans
    true_entities = spans_of(true_tags)
    pred_entities = spans_of(pred_tags)

    per_type: dict[str, dict[str, float | int]] = {}
    for entity_type in sorted({span[0] for span in true_entities | pred_entities}):
        true_of_type = {span for span in true_entities if span[0] == entity_type}
        pred_of_type = {span for span in pred_entities if span[0] == entity_type}
        correct = len(true_of_type & pred_of_type)
        precision = correct / len(pred_of_type) if pred_of_type else 0.0
        recall = correct / len(true_of_type) if true_of_type else 0.0
        per_type[entity_type] = {"precision": precision, "recall": recall,
                                 "f1": _f1_from_precision_recall(precision, recall),
                                 "support": len(true_of_type)}

    correct = len(true_entities & pred_entities)
    precision = correct / len(pred_entities) if pred_entities else 0.0
    recall = correct / len(true_entities) if true_entities else 0.0
    return {"precision": precision, "recall": recall, "f1": _f1_from_precision_recall(precision, recall),
            "support": len(true_entities), "per_type": per_type}
