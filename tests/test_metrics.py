"""Parity of `tfbert.metrics` with scikit-learn, scipy (when installed) and seqeval.

Every number is checked against the reference library on randomized inputs (numpy Generators
with fixed seeds) and on hand-picked edge cases, to within 1e-9.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import seqeval.metrics as seqeval_metrics
import sklearn.metrics as skm

from tfbert import metrics

try:
    import scipy.stats as scipy_stats
except ImportError:  # scipy is optional: the hand-computed examples still run
    scipy_stats = None

TOL = 1e-9
needs_scipy = pytest.mark.skipif(scipy_stats is None, reason="scipy is not installed")


def assert_close(actual: float, expected: float, what: str = "") -> None:
    assert isinstance(actual, float), f"{what}: expected a Python float, found {type(actual).__name__}"
    assert abs(actual - float(expected)) <= TOL, f"{what}: {actual!r} != {expected!r}"


# ---- single-label classification ---------------------------------------------------------

def check_classification_against_sklearn(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> None:
    labels = list(range(num_classes))
    ours = metrics.classification_metrics(y_true, y_pred, num_classes)
    assert set(ours) == {"accuracy", "macro_f1", "weighted_f1", "mcc", "macro_precision", "macro_recall"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about labels absent from y_true
        expected = {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "macro_f1": skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            "weighted_f1": skm.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
            "mcc": skm.matthews_corrcoef(y_true, y_pred),
            "macro_precision": skm.precision_score(y_true, y_pred, labels=labels, average="macro",
                                                   zero_division=0),
            "macro_recall": skm.recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        }
        matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=None, zero_division=0)
    for key, value in expected.items():
        assert_close(ours[key], value, key)

    ours_matrix = metrics.confusion_matrix(y_true, y_pred, num_classes)
    assert ours_matrix.shape == (num_classes, num_classes)
    assert np.issubdtype(ours_matrix.dtype, np.integer)
    np.testing.assert_array_equal(ours_matrix, matrix)

    names = [f"class_{i}" for i in labels]
    report = metrics.per_class_report(y_true, y_pred, names)
    assert [row["label"] for row in report] == names
    for i, row in enumerate(report):
        assert set(row) == {"label", "precision", "recall", "f1", "support"}
        assert_close(row["precision"], precision[i], f"precision[{i}]")
        assert_close(row["recall"], recall[i], f"recall[{i}]")
        assert_close(row["f1"], f1[i], f"f1[{i}]")
        assert row["support"] == support[i] and isinstance(row["support"], int)


def random_classification_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    num_classes = int(rng.integers(1, 8))
    n = int(rng.integers(1, 80))
    # Draw truth from a random subset of the classes so some classes are absent from y_true.
    present = rng.choice(num_classes, size=int(rng.integers(1, num_classes + 1)), replace=False)
    y_true = rng.choice(present, size=n)
    accuracy = rng.uniform(0.0, 1.0)
    noise = rng.integers(0, num_classes, size=n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, noise)
    return y_true, y_pred, num_classes


@pytest.mark.parametrize("seed", range(300))
def test_classification_matches_sklearn_randomized(seed):
    y_true, y_pred, num_classes = random_classification_case(np.random.default_rng(seed))
    check_classification_against_sklearn(y_true, y_pred, num_classes)


@pytest.mark.parametrize("y_true, y_pred, num_classes", [
    pytest.param([0, 1, 1, 3, 0], [0, 1, 2, 3, 3], 4, id="class-absent-from-y_true"),
    pytest.param([0, 1, 1, 3, 0], [0, 1, 1, 3, 0], 5, id="class-absent-from-both"),
    pytest.param([0, 1, 2, 2, 1], [0, 1, 2, 2, 1], 3, id="all-correct"),
    pytest.param([0, 1, 2, 2, 1], [1, 2, 0, 1, 0], 3, id="all-wrong"),
    pytest.param([0, 0, 0], [0, 0, 0], 1, id="single-class"),
    pytest.param([1, 1, 1], [1, 1, 1], 3, id="one-class-used-of-three"),
    pytest.param([0, 1, 0, 1], [1, 1, 1, 1], 2, id="constant-prediction-mcc-undefined"),
    pytest.param([2], [0], 3, id="single-example-wrong"),
])
def test_classification_edge_cases(y_true, y_pred, num_classes):
    check_classification_against_sklearn(np.array(y_true), np.array(y_pred), num_classes)


def test_classification_edge_case_values():
    perfect = metrics.classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]), 3)
    assert perfect == {"accuracy": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0, "mcc": 1.0,
                       "macro_precision": 1.0, "macro_recall": 1.0}
    # A class that is never true and never predicted still counts (as 0) in macro averages.
    padded = metrics.classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]), 4)
    assert padded["macro_f1"] == 0.75 and padded["weighted_f1"] == 1.0
    assert metrics.classification_metrics(np.array([0, 0]), np.array([0, 0]), 1)["mcc"] == 0.0
    wrong = metrics.classification_metrics(np.array([0, 1]), np.array([1, 0]), 2)
    assert wrong["accuracy"] == 0.0 and wrong["macro_f1"] == 0.0 and wrong["mcc"] == -1.0


def test_classification_accepts_column_vectors_bools_and_integral_floats():
    y_true = np.array([[0], [1], [1]])
    expected = metrics.classification_metrics(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    assert metrics.classification_metrics(y_true, np.array([0.0, 0.0, 1.0]), 2) == expected
    assert metrics.classification_metrics([False, True, True], [False, False, True], 2) == expected


@pytest.mark.parametrize("y_true, y_pred, num_classes, message", [
    ([0, 1], [0], 2, "y_true has 2 labels but y_pred has 1"),
    ([0, 3], [0, 1], 3, "found 3 at index 1"),
    ([0, 1], [0, -1], 2, "y_pred: class ids must be in \\[0, 2\\)"),
    ([], [], 2, "empty"),
    ([0.5, 1.0], [0, 1], 2, "expected integer class ids, found 0.5 at index 0"),
    ([[0.1, 0.9]], [1], 2, "pass their argmax"),
    ([0, 1], [0, 1], 0, "num_classes must be a positive integer"),
])
def test_classification_rejects_bad_input(y_true, y_pred, num_classes, message):
    with pytest.raises(ValueError, match=message):
        metrics.classification_metrics(np.array(y_true), np.array(y_pred), num_classes)


def integer_supports(sklearn_text: str) -> str:
    """Undoes a scikit-learn quirk: when no prediction is correct it prints supports as floats
    ("      1.0" instead of "        1" in the last 9-wide column). Supports are counts; ours are ints."""
    lines = []
    for line in sklearn_text.split("\n"):
        if line.endswith(".0"):
            line = line[:-10] + f" {int(float(line[-9:])):>9}"
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(60))
def test_format_report_matches_sklearn_text(seed):
    rng = np.random.default_rng(1000 + seed)
    y_true, y_pred, num_classes = random_classification_case(rng)
    names = [["neg", "pos", "neutral", "a-much-longer-label-name", "x", "y", "z"][i] for i in range(num_classes)]
    digits = int(rng.integers(1, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skm.classification_report(y_true, y_pred, labels=list(range(num_classes)),
                                             target_names=names, zero_division=0, digits=digits)
    report = metrics.per_class_report(y_true, y_pred, names)
    assert metrics.format_report(report, digits=digits) == integer_supports(expected)


def test_format_report_rejects_empty_and_malformed_reports():
    with pytest.raises(ValueError, match="empty"):
        metrics.format_report([])
    with pytest.raises(ValueError, match="row 0 lacks \\['support'\\]"):
        metrics.format_report([{"label": "a", "precision": 1.0, "recall": 1.0, "f1": 1.0}])
    with pytest.raises(ValueError, match="label_names is empty"):
        metrics.per_class_report(np.array([0]), np.array([0]), [])


# ---- multi-label classification ----------------------------------------------------------

def check_multilabel_against_sklearn(y_true: np.ndarray, y_pred: np.ndarray, ours: dict) -> None:
    assert set(ours) == {"micro_f1", "macro_f1", "micro_precision", "micro_recall", "subset_accuracy",
                         "hamming_loss"}
    y_true = y_true.astype(int)
    y_pred = y_pred.astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "micro_f1": skm.f1_score(y_true, y_pred, average="micro", zero_division=0),
            "macro_f1": skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
            "micro_precision": skm.precision_score(y_true, y_pred, average="micro", zero_division=0),
            "micro_recall": skm.recall_score(y_true, y_pred, average="micro", zero_division=0),
            "subset_accuracy": skm.accuracy_score(y_true, y_pred),
            "hamming_loss": skm.hamming_loss(y_true, y_pred),
        }
    for key, value in expected.items():
        assert_close(ours[key], value, key)


@pytest.mark.parametrize("seed", range(150))
def test_multilabel_matches_sklearn_randomized(seed):
    rng = np.random.default_rng(2000 + seed)
    n, num_labels = int(rng.integers(1, 40)), int(rng.integers(2, 7))
    y_true = rng.random((n, num_labels)) < rng.uniform(0.0, 0.6, size=num_labels)  # some labels never true
    probabilities = np.clip(np.where(y_true, 0.7, 0.3) + rng.normal(0, 0.3, size=(n, num_labels)), 0, 1)
    probabilities[rng.random((n, num_labels)) < 0.1] = 0.5  # exactly on the threshold: negative
    threshold = float(rng.choice([0.5, 0.3, 0.8]))
    ours = metrics.multilabel_metrics(y_true, probabilities, threshold=threshold)
    check_multilabel_against_sklearn(y_true, probabilities > threshold, ours)
    # The same decisions given as 0/1 integers are used as they are.
    decisions = (probabilities > threshold).astype(np.int64)
    assert metrics.multilabel_metrics(y_true.astype(np.int64), decisions) == ours


def test_multilabel_edge_cases():
    y_true = np.array([[1, 0, 0], [0, 1, 0]], dtype=bool)
    perfect = metrics.multilabel_metrics(y_true, y_true)
    check_multilabel_against_sklearn(y_true, y_true, perfect)
    # Label 2 is never true nor predicted: it counts 0 in macro F1, as sklearn.
    assert perfect["micro_f1"] == 1.0 and abs(perfect["macro_f1"] - 2 / 3) < TOL
    nothing = np.zeros_like(y_true)
    none_predicted = metrics.multilabel_metrics(y_true, nothing)
    check_multilabel_against_sklearn(y_true, nothing, none_predicted)
    assert none_predicted["micro_precision"] == 0.0 and none_predicted["micro_f1"] == 0.0
    all_wrong = ~y_true
    check_multilabel_against_sklearn(y_true, all_wrong, metrics.multilabel_metrics(y_true, all_wrong))
    assert metrics.multilabel_metrics(y_true, all_wrong)["hamming_loss"] == 1.0


@pytest.mark.parametrize("y_true, y_pred, message", [
    (np.zeros((2, 3)), np.zeros((2, 2)), "expected the same"),
    (np.zeros(3), np.zeros(3), "expected a \\[n, num_labels\\] array"),
    (np.array([[0, 2]]), np.array([[0, 1]]), "found 2 at \\[0, 1\\]"),
    (np.zeros((0, 3)), np.zeros((0, 3)), "at least one example"),
])
def test_multilabel_rejects_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        metrics.multilabel_metrics(y_true, y_pred)


# ---- regression --------------------------------------------------------------------------

def test_regression_hand_computed():
    result = metrics.regression_metrics(np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 1, 4, 3, 5]))
    assert_close(result["mse"], 0.8)
    assert_close(result["mae"], 0.8)
    # Centred: x = (-2,-1,0,1,2), y = (-1,-2,1,0,2): x.y = 8, |x|^2 = |y|^2 = 10.
    assert_close(result["pearson"], 0.8)
    assert_close(result["spearman"], 0.8)
    # Ties get average ranks: (1, 2.5, 2.5, 4) against (1.5, 1.5, 3, 4) -> 3.75 / 4.5.
    tied = metrics.regression_metrics(np.array([1.0, 2, 2, 3]), np.array([1.0, 1, 2, 3]))
    assert_close(tied["mse"], 0.25)
    assert_close(tied["mae"], 0.25)
    assert_close(tied["spearman"], 5 / 6)
    np.testing.assert_array_equal(metrics._average_ranks(np.array([3.0, 1, 3, 2, 3])), [4, 1, 4, 2, 4])


@needs_scipy
@pytest.mark.parametrize("seed", range(150))
def test_regression_matches_scipy_randomized(seed):
    rng = np.random.default_rng(3000 + seed)
    n = int(rng.integers(2, 60))
    if seed % 3 == 0:  # many ties on both sides
        y_true = rng.integers(0, 4, size=n).astype(float)
        y_pred = rng.integers(0, 4, size=n).astype(float)
    else:
        y_true = rng.normal(size=n) * rng.uniform(0.01, 100)
        y_pred = y_true * rng.uniform(-1, 1) + rng.normal(size=n)
    if np.all(y_true == y_true[0]) or np.all(y_pred == y_pred[0]):
        y_true[0], y_pred[-1] = y_true[0] + 1, y_pred[-1] - 1
    ours = metrics.regression_metrics(y_true, y_pred)
    assert_close(ours["mse"], skm.mean_squared_error(y_true, y_pred), "mse")
    assert_close(ours["mae"], skm.mean_absolute_error(y_true, y_pred), "mae")
    assert_close(ours["pearson"], scipy_stats.pearsonr(y_true, y_pred)[0], "pearson")
    assert_close(ours["spearman"], scipy_stats.spearmanr(y_true, y_pred)[0], "spearman")
    np.testing.assert_allclose(metrics._average_ranks(y_true), scipy_stats.rankdata(y_true), rtol=0, atol=0)


def test_regression_constant_side_gives_zero_correlation():
    for y_true, y_pred in [([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [7.0, 7.0, 7.0]), ([4.0], [2.0])]:
        result = metrics.regression_metrics(np.array(y_true), np.array(y_pred))
        assert result["pearson"] == 0.0 and result["spearman"] == 0.0
        assert_close(result["mse"], np.mean((np.array(y_true) - np.array(y_pred)) ** 2))


def test_regression_nan_propagates_and_shapes():
    result = metrics.regression_metrics(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert all(math.isnan(value) for value in result.values())
    column = metrics.regression_metrics(np.array([[1.0], [2.0], [4.0]]), np.array([1.0, 3.0, 2.0]))
    assert column == metrics.regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0]))
    with pytest.raises(ValueError, match="y_true has 2 values but y_pred has 3"):
        metrics.regression_metrics(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        metrics.regression_metrics(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="expected shape \\[n\\]"):
        metrics.regression_metrics(np.zeros((2, 2)), np.zeros((2, 2)))


# ---- named-entity recognition ------------------------------------------------------------

ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]


def random_tag(rng: np.random.Generator, prefixes: str) -> str:
    prefix = prefixes[int(rng.integers(len(prefixes)))]
    return "O" if prefix == "O" else f"{prefix}-{ENTITY_TYPES[int(rng.integers(len(ENTITY_TYPES)))]}"


def well_formed_iob2(rng: np.random.Generator, length: int) -> list[str]:
    tags: list[str] = []
    while len(tags) < length:
        if rng.random() < 0.5:
            tags.append("O")
            continue
        entity_type = ENTITY_TYPES[int(rng.integers(len(ENTITY_TYPES)))]
        span = int(rng.integers(1, 4))  # single-token entities are common
        tags.extend([f"B-{entity_type}"] + [f"I-{entity_type}"] * (span - 1))
    return tags[:length]


def random_sentences(rng: np.random.Generator, style: str) -> tuple[list[list[str]], list[list[str]]]:
    true_tags, pred_tags = [], []
    for _ in range(int(rng.integers(1, 8))):
        length = int(rng.integers(0, 12))  # 0: an empty sentence
        if style == "iob2":
            truth = well_formed_iob2(rng, length)
        elif style == "iob1":  # entities mostly opened by I- tags, as in IOB1 data
            truth = [tag.replace("B-", "I-") if rng.random() < 0.7 else tag
                     for tag in well_formed_iob2(rng, length)]
        elif style == "mixed":  # stray I- tags, B-/I- of different types side by side
            truth = [random_tag(rng, "OOBI") for _ in range(length)]
        else:  # "iobes": E- and S- tags too
            truth = [random_tag(rng, "OBIES") for _ in range(length)]
        corruption = rng.uniform(0.0, 0.5)
        prediction = [random_tag(rng, "OBI" if style != "iobes" else "OBIES") if rng.random() < corruption else tag
                      for tag in truth]
        true_tags.append(truth)
        pred_tags.append(prediction)
    return true_tags, pred_tags


def check_ner_against_seqeval(true_tags: list[list[str]], pred_tags: list[list[str]]) -> None:
    ours = metrics.ner_metrics(true_tags, pred_tags)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on undefined precision/recall
        assert_close(ours["f1"], seqeval_metrics.f1_score(true_tags, pred_tags), "f1")
        assert_close(ours["precision"], seqeval_metrics.precision_score(true_tags, pred_tags), "precision")
        assert_close(ours["recall"], seqeval_metrics.recall_score(true_tags, pred_tags), "recall")
        report = seqeval_metrics.classification_report(true_tags, pred_tags, output_dict=True)
    averages = {"micro avg", "macro avg", "weighted avg"}
    assert ours["support"] == report["micro avg"]["support"]
    assert set(ours["per_type"]) == set(report) - averages
    assert list(ours["per_type"]) == sorted(ours["per_type"])
    for entity_type, scores in ours["per_type"].items():
        expected = report[entity_type]
        assert_close(scores["precision"], expected["precision"], f"{entity_type} precision")
        assert_close(scores["recall"], expected["recall"], f"{entity_type} recall")
        assert_close(scores["f1"], expected["f1-score"], f"{entity_type} f1")
        assert scores["support"] == expected["support"]


@pytest.mark.parametrize("seed", range(60))
def test_strict_iob2_matches_seqeval_strict(seed):
    from seqeval.scheme import IOB2

    rng = np.random.default_rng(7000 + seed)
    true_tags, pred_tags = [], []
    for _ in range(int(rng.integers(1, 8))):
        length = int(rng.integers(0, 12))
        true_tags.append([random_tag(rng, "OBI") for _ in range(length)])
        pred_tags.append([random_tag(rng, "OBI") if rng.random() < 0.4 else tag for tag in true_tags[-1]])
    ours = metrics.ner_metrics(true_tags, pred_tags, mode="strict")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = dict(mode="strict", scheme=IOB2)
        assert_close(ours["f1"], seqeval_metrics.f1_score(true_tags, pred_tags, **strict), "f1")
        assert_close(ours["precision"], seqeval_metrics.precision_score(true_tags, pred_tags, **strict), "p")
        assert_close(ours["recall"], seqeval_metrics.recall_score(true_tags, pred_tags, **strict), "r")


@pytest.mark.parametrize("style", ["iob2", "iob1", "mixed", "iobes"])
@pytest.mark.parametrize("seed", range(100))
def test_ner_matches_seqeval_randomized(seed, style):
    check_ner_against_seqeval(*random_sentences(np.random.default_rng(4000 + seed), style))


@pytest.mark.parametrize("true_tags, pred_tags", [
    pytest.param([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]], id="all-correct"),
    pytest.param([["B-PER", "I-PER", "O", "B-LOC"]], [["O", "B-PER", "O", "B-ORG"]], id="all-wrong"),
    pytest.param([["I-PER", "I-PER", "O", "I-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]], id="iob1-equals-iob2"),
    pytest.param([["B-PER", "I-LOC", "I-LOC"]], [["B-PER", "B-LOC", "I-LOC"]], id="type-switch-opens-entity"),
    pytest.param([["B-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]], id="no-entity-across-sentences"),
    pytest.param([["O", "O"], ["B-MISC"]], [["O", "O"], ["O"]], id="nothing-predicted"),
    pytest.param([["O", "O"], []], [["B-ORG", "O"], []], id="nothing-true"),
    pytest.param([[], ["B-PER"], []], [[], ["B-PER"], []], id="empty-sentences"),
    pytest.param([["B", "I", "O", "I"]], [["B", "B", "O", "I"]], id="untyped-tags"),
    pytest.param([["S-PER", "B-LOC", "E-LOC", "E-LOC"]], [["S-PER", "B-LOC", "I-LOC", "E-LOC"]], id="iobes"),
])
def test_ner_edge_cases(true_tags, pred_tags):
    check_ner_against_seqeval(true_tags, pred_tags)


ODD_TAGS = ["O", "B", "I", "E", "S", ".", "X", "B-PER", "I-PER", "X-PER", "I-LOC", "E-PER", "S-LOC", "PER",
            "B-PER-X", "I-PER-X"]


@pytest.mark.parametrize("seed", range(100))
def test_ner_matches_seqeval_on_malformed_tags(seed):
    # Tags a buggy tagger or dataset may produce; our chunking must still agree with seqeval's.
    rng = np.random.default_rng(5000 + seed)
    true_tags, pred_tags = [], []
    for _ in range(int(rng.integers(1, 5))):
        length = int(rng.integers(0, 8))
        true_tags.append([ODD_TAGS[i] for i in rng.integers(0, len(ODD_TAGS), size=length)])
        pred_tags.append([ODD_TAGS[i] for i in rng.integers(0, len(ODD_TAGS), size=length)])
    check_ner_against_seqeval(true_tags, pred_tags)


def test_ner_values_and_empty_input():
    truth = [["B-PER", "I-PER", "O"], ["I-LOC", "O"]]
    guess = [["B-PER", "I-PER", "O"], ["B-ORG", "O"]]
    result = metrics.ner_metrics(truth, guess)
    assert (result["precision"], result["recall"], result["f1"], result["support"]) == (0.5, 0.5, 0.5, 2)
    assert result["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    # No sentences at all (seqeval raises TypeError here): everything is 0.
    assert metrics.ner_metrics([], []) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                           "per_type": {}}


@pytest.mark.parametrize("true_tags, pred_tags, message", [
    ([["O"]], [], "true_tags has 1 sentences but pred_tags has 0"),
    ([["O", "O"]], [["O"]], "sentence 0 has 2 true tags but 1 predicted tags"),
    ([["O", ""]], [["O", "O"]], "sentence 0, token 1: expected a tag string"),
    ([["O"]], [[None]], "sentence 0, token 0"),
])
def test_ner_rejects_bad_input(true_tags, pred_tags, message):
    with pytest.raises(ValueError, match=message):
        metrics.ner_metrics(true_tags, pred_tags)


def test_library_does_not_import_test_only_packages():
    with open(metrics.__file__, encoding="utf-8") as handle:
        source = handle.read()
    for package in ("sklearn", "seqeval", "scipy"):
        assert f"import {package}" not in source and f"from {package}" not in source
