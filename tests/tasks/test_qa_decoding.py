"""tfbert.tasks.qa_decoding: the official SQuAD v1.1 / v2.0 metrics (hand cases and the official v2.0
script, written out below as the reference), `window_spans` against transformers' `decode_spans`, and
`decode` across the windows of a question (v1 and v2 null handling)."""

from __future__ import annotations

import collections
import re
import string

import numpy as np
import pytest

from tfbert.tasks.qa_decoding import decode, exact_match, f1, normalize_answer, squad_scores, window_spans

transformers = pytest.importorskip("transformers")
try:  # transformers 4.x
    from transformers.pipelines.question_answering import decode_spans
except ImportError:  # transformers 5 keeps it only beside the document QA pipeline
    from transformers.pipelines.document_question_answering import decode_spans


# ---- the official SQuAD v2.0 evaluation script (evaluate-v2.0.py), its scoring functions verbatim ----

def official_normalize_answer(s):
    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_get_tokens(s):
    if not s:
        return []
    return official_normalize_answer(s).split()


def official_compute_exact(a_gold, a_pred):
    return int(official_normalize_answer(a_gold) == official_normalize_answer(a_pred))


def official_compute_f1(a_gold, a_pred):
    gold_toks = official_get_tokens(a_gold)
    pred_toks = official_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_raw_scores(gold, preds):
    exact_scores, f1_scores = {}, {}
    for qid, answers in gold.items():
        gold_answers = [a for a in answers if official_normalize_answer(a)]
        if not gold_answers:
            gold_answers = [""]
        a_pred = preds[qid]
        exact_scores[qid] = max(official_compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(official_compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def official_find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


# ---- metrics: hand cases -------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  the   EIFFEL\tTower!!  ", "eiffel tower"),
    ("Eiffel-Tower.", "eiffeltower"),  # punctuation is removed, not turned into a space
    ("an apple a day", "apple day"),
    ("Theatre and Anthem", "theatre and anthem"),  # articles only as whole words
    ("A.", ""),
    ("(1,000) U.S. dollars", "1000 us dollars"),
    ("café—bar «x»", "café—bar «x»"),  # only ASCII punctuation, as the official script
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected == official_normalize_answer(text)


def test_exact_match_and_f1_hand_cases():
    assert exact_match("The Denver Broncos!", "denver broncos") == 1
    assert exact_match("Denver", "Denver Broncos") == 0
    # partial overlap: {big, red, dog} vs {red, dog, barked}: 2 in common, P = R = 2/3
    assert f1("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    # P = 1/1, R = 1/3 -> 2 * (1/3) / (4/3) = 0.5
    assert f1("Broncos", "the Denver Broncos team") == pytest.approx(0.5)
    # repeated tokens count by multiplicity: dog x1 + cat x1 in common
    assert f1("dog dog cat", "dog cat cat") == pytest.approx(2 / 3)
    assert f1("nothing alike", "totally different") == 0.0
    # v2.0: an empty answer scores 1 against an empty gold and 0 against any other
    assert f1("", "") == 1.0 and exact_match("", "") == 1
    assert f1("", "Paris") == 0.0 and f1("Paris", "") == 0.0 and exact_match("", "Paris") == 0
    assert f1("the", "") == 1.0  # "the" normalises to nothing


def test_squad_scores_take_the_best_gold_and_scale_to_100():
    gold = {"q1": ["Denver Broncos", "The Broncos", "Broncos"], "q2": ["Santa Clara, California", "Levi's Stadium"],
            "q3": ["gold"]}
    predictions = {"q1": "the broncos", "q2": "Levi's Stadium in Santa Clara", "q3": "silver"}
    scores = squad_scores(predictions, gold)
    # q1 exact; q2: vs "levis stadium" P = 2/5, R = 1 -> 4/7; vs "santa clara california" 2/5, 2/3 -> 1/2
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 4 / 7 + 0) / 3)
    assert scores["total"] == 3
    assert "HasAns_exact" not in scores and "best_f1" not in scores
    # a question without a prediction counts as answered ""
    assert squad_scores({}, {"q": ["x"]})["f1"] == 0.0


def hand_v2_case():
    gold = {"q1": ["Paris"], "q2": [], "q3": ["blue whale"], "q4": []}
    predictions = {"q1": "Paris", "q2": "London", "q3": "whale", "q4": ""}  # each question's best non-null span
    diffs = {"q1": -3.0, "q2": 1.0, "q3": 0.5, "q4": 2.0}
    return gold, predictions, diffs


def test_squad_v2_scores_hand_case():
    gold, predictions, diffs = hand_v2_case()
    scores = squad_scores(predictions, gold, diffs)
    # per question: exact (1, 0, 0, 1), f1 (1, 0, 2/3, 1) ("whale" vs "blue whale": P 1, R 1/2)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3 + 1) / 4)
    assert scores["HasAns_total"] == 2 and scores["NoAns_total"] == 2
    assert scores["HasAns_exact"] == pytest.approx(50.0) and scores["HasAns_f1"] == pytest.approx(100 * (5 / 3) / 2)
    assert scores["NoAns_exact"] == pytest.approx(50.0) and scores["NoAns_f1"] == pytest.approx(50.0)
    # Best threshold, by hand: start with every question unanswered (q2 and q4 right: 2), then answer
    # in order of the difference: q1 (-3.0) +1 -> 3; q3 (0.5) +0 exact / +2/3 f1; q2 (1.0) -1; q4 (2.0) 0.
    assert scores["best_exact"] == pytest.approx(75.0) and scores["best_exact_thresh"] == -3.0
    assert scores["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4) and scores["best_f1_thresh"] == 0.5
    # the best scores are what answering "" above the threshold gives
    for name, key in (("best_exact", "exact_match"), ("best_f1", "f1")):
        threshold = scores[f"{name}_thresh"]
        thresholded = {q: ("" if diffs[q] > threshold else p) for q, p in predictions.items()}
        assert squad_scores(thresholded, gold)[key] == pytest.approx(scores[name])


def test_squad_v2_scores_match_the_official_script_on_random_cases():
    rng = np.random.default_rng(3)
    words = "the a Paris blue whale red dog big cat Denver Broncos , . gold".split()

    def phrase():  # never one that normalises to "" (see the next test for those)
        while True:
            text = " ".join(rng.choice(words, size=rng.integers(1, 4)))
            if official_normalize_answer(text):
                return text

    for _ in range(20):
        gold, predictions, diffs = {}, {}, {}
        for i in range(12):
            qid = f"q{i}"
            gold[qid] = [] if rng.random() < 0.4 else [phrase() for _ in range(rng.integers(1, 3))]
            draw = rng.random()
            predictions[qid] = "" if draw < 0.15 else "The" if draw < 0.25 else phrase()
            diffs[qid] = float(rng.normal())
        exact_raw, f1_raw = official_raw_scores(gold, predictions)
        has = {q: bool(a) for q, a in gold.items()}
        ours = squad_scores(predictions, gold, diffs)
        assert ours["exact_match"] == pytest.approx(100 * np.mean(list(exact_raw.values())))
        assert ours["f1"] == pytest.approx(100 * np.mean(list(f1_raw.values())))
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, threshold = official_find_best_thresh(predictions, raw, diffs, has)
            assert ours[f"best_{name}"] == pytest.approx(best)
            assert ours[f"best_{name}_thresh"] == threshold


def test_v2_gold_answers_that_normalise_to_nothing_are_ignored():
    # The official v2.0 script drops gold answers that normalise to "" (`if normalize_answer(a['text'])`):
    # a question whose golds are "The" and "cat" is answered right only by "cat", not by an empty answer.
    gold = {"q1": ["The", "cat"], "q2": []}
    predictions = {"q1": "", "q2": ""}
    exact_raw, f1_raw = official_raw_scores(gold, predictions)
    assert exact_raw == {"q1": 0, "q2": 1} and f1_raw == {"q1": 0, "q2": 1}
    scores = squad_scores(predictions, gold, {"q1": 0.0, "q2": 0.0})
    assert scores["exact_match"] == 50.0 and scores["f1"] == 50.0
    assert scores["HasAns_exact"] == 0.0


# ---- window_spans against transformers' decode_spans ----------------------------------------------


def softmax_over(logits, allowed):
    values = np.where(allowed, logits, -np.inf)
    values = np.exp(values - values.max())
    return values / values.sum(), np.log(np.exp(logits[allowed] - logits[allowed].max()).sum()) + logits[allowed].max()


@pytest.mark.parametrize("seed, context, max_answer_length, n_best_size", [
    (0, (8, 30), 15, 20), (1, (3, 40), 30, 1), (2, (5, 12), 1, 5), (3, (10, 60), 4, 50), (4, (8, 10), 30, 20)])
def test_window_spans_match_decode_spans(seed, context, max_answer_length, n_best_size):
    rng = np.random.default_rng(seed)
    seq = 64
    start_logits, end_logits = rng.normal(size=seq) * 3, rng.normal(size=seq) * 3
    allowed = np.zeros(seq, bool)
    allowed[context[0]:context[1]] = True
    ours = window_spans(start_logits, end_logits, allowed, max_answer_length, n_best_size)

    p_start, z_start = softmax_over(start_logits, allowed)
    p_end, z_end = softmax_over(end_logits, allowed)
    starts, ends, scores = decode_spans(p_start, p_end, n_best_size, max_answer_length, allowed.astype(int))
    n = len(starts)
    length = context[1] - context[0]
    assert len(ours) == n == min(n_best_size, sum(min(max_answer_length, length - i) for i in range(length)))
    assert [(s, e) for _, s, e in ours] == list(zip(starts.tolist(), ends.tolist()))
    # log(p_start * p_end) = start logit + end logit - both normalisers
    np.testing.assert_allclose([score for score, _, _ in ours], np.log(scores) + z_start + z_end, rtol=1e-9,
                               atol=1e-9)
    for score, s, e in ours:
        assert allowed[s] and allowed[e] and 0 <= e - s < max_answer_length
        assert score == pytest.approx(start_logits[s] + end_logits[e])


def test_window_spans_without_context():
    assert window_spans(np.zeros(5), np.zeros(5), np.zeros(5, bool), 30, 20) == []


# ---- decode ------------------------------------------------------------------------------------------

CONTEXT = "Paris is in  France, naïvely said."
#          0123456789012345678901234567890123


def window(offsets, start, end):
    """A window: [CLS] q [SEP] then the context tokens at `offsets`, then [SEP]; logits as given
    (positions listed are 0 = [CLS], 1 = the question token, 3.. the context tokens)."""
    n = 3 + len(offsets) + 1
    char_start, char_end = np.full(n, -1), np.full(n, -1)
    for i, (a, b) in enumerate(offsets):
        char_start[3 + i], char_end[3 + i] = a, b
    start_logits, end_logits = np.full(n, -5.0), np.full(n, -5.0)
    for position, value in start.items():
        start_logits[position] = value
    for position, value in end.items():
        end_logits[position] = value
    return {"start_logits": start_logits, "end_logits": end_logits, "char_start": char_start, "char_end": char_end}


PARIS, IS, IN, FRANCE, COMMA, NAIVELY, SAID, DOT = (0, 5), (6, 8), (9, 11), (13, 19), (19, 20), (21, 28), (29, 33), (33, 34)


def test_decode_picks_the_best_span_over_all_windows_and_cuts_the_original_text():
    assert CONTEXT[slice(*NAIVELY)] == "naïvely" and CONTEXT[slice(*FRANCE)] == "France"
    windows = [
        window([PARIS, IS, IN, FRANCE], start={3: 2.0, 5: 1.0}, end={3: 2.5, 6: 1.0}),        # "Paris": 4.5
        window([IN, FRANCE, COMMA, NAIVELY], start={3: 3.0, 6: 0.5}, end={4: 2.0, 6: 1.0}),  # "in  France": 5.0
        window([NAIVELY, SAID, DOT], start={0: 9.0, 3: 0.0}, end={0: 9.0, 5: 1.0}),          # [CLS] ignored in v1
    ]
    result = decode(CONTEXT, windows, max_answer_length=30, n_best_size=3)
    assert result["text"] == "in  France" and (result["start"], result["end"]) == (9, 19)  # the double space kept
    assert result["null_score_diff"] is None
    nbest = result["nbest"]
    assert [c["text"] for c in nbest] == ["in  France", "Paris", "in  France, naïvely"]
    assert [(c["start_logit"], c["end_logit"]) for c in nbest] == [(3.0, 2.0), (2.0, 2.5), (3.0, 1.0)]
    probabilities = np.array([c["probability"] for c in nbest])
    expected = np.exp([5.0, 4.5, 4.0] - np.float64(5.0))
    np.testing.assert_allclose(probabilities, expected / expected.sum(), rtol=1e-9)
    assert result["score"] == pytest.approx(probabilities[0])
    # max_answer_length counts tokens: at 1 the two-token span is out, "Paris" (one token) wins
    assert decode(CONTEXT, windows, max_answer_length=1)["text"] == "Paris"


def test_decode_v2_null_answer_and_threshold():
    windows = [
        window([PARIS, IS, IN, FRANCE], start={0: 2.0, 3: 2.0}, end={0: 1.0, 3: 0.5}),  # null 3.0, "Paris" 2.5
        window([IN, FRANCE, COMMA], start={0: 0.5, 4: 1.0}, end={0: 0.5, 4: 1.0}),  # null 1.0, "France" 2.0
    ]
    # the null score is the smallest [CLS] score over the windows (1.0); best span "Paris" 2.5 -> diff -1.5
    result = decode(CONTEXT, windows, version_2=True)
    assert result["text"] == "Paris" and result["null_score_diff"] == pytest.approx(-1.5)
    assert "" in [c["text"] for c in result["nbest"]]
    null = next(c for c in result["nbest"] if c["text"] == "")
    assert (null["start"], null["end"], null["start_logit"], null["end_logit"]) == (-1, -1, None, None)
    # answered while the difference is not above the threshold
    assert decode(CONTEXT, windows, version_2=True, null_score_diff_threshold=-1.5)["text"] == "Paris"
    no_answer = decode(CONTEXT, windows, version_2=True, null_score_diff_threshold=-1.6)
    assert no_answer["text"] == "" and (no_answer["start"], no_answer["end"]) == (-1, -1)
    assert no_answer["null_score_diff"] == pytest.approx(-1.5)
    assert no_answer["score"] == pytest.approx(null["probability"])
    # a strong null: no answer at the default threshold 0
    strong = [window([PARIS, IS], start={0: 5.0, 3: 1.0}, end={0: 5.0, 3: 1.0})]
    result = decode(CONTEXT, strong, version_2=True)
    assert result["text"] == "" and result["null_score_diff"] == pytest.approx(8.0)
    assert result["nbest"][0]["text"] == "" and result["nbest"][0]["probability"] > 0.99
    # v1 never answers "": the best span even when [CLS] is far ahead
    assert decode(CONTEXT, strong)["text"] == "Paris"


def test_decode_matches_brute_force_on_random_windows():
    rng = np.random.default_rng(7)
    tokens = [PARIS, IS, IN, FRANCE, COMMA, NAIVELY, SAID, DOT]
    for trial in range(25):
        # three overlapping windows of 4 context tokens each, padded to the same width
        pieces = [tokens[0:4], tokens[2:6], tokens[4:8]]
        windows = []
        for piece in pieces:
            w = window(piece, {}, {})
            w["start_logits"], w["end_logits"] = rng.normal(size=len(w["char_start"])), rng.normal(size=len(w["char_start"]))
            windows.append(w)
        max_answer_length = int(rng.integers(1, 5))
        candidates = []
        for w in windows:
            positions = np.flatnonzero(w["char_start"] >= 0)
            for s in positions:
                for e in positions:
                    if 0 <= e - s < max_answer_length:
                        candidates.append((w["start_logits"][s] + w["end_logits"][e], int(w["char_start"][s]),
                                           int(w["char_end"][e])))
        candidates.sort(key=lambda c: -c[0])
        result = decode(CONTEXT, windows, max_answer_length=max_answer_length, n_best_size=5)
        best = candidates[0]
        assert (result["start"], result["end"]) == best[1:], trial
        assert result["text"] == CONTEXT[best[1]:best[2]]
        assert [(c["start"], c["end"]) for c in result["nbest"]] == [c[1:] for c in candidates[:5]]
        nulls = [w["start_logits"][0] + w["end_logits"][0] for w in windows]
        v2 = decode(CONTEXT, windows, max_answer_length=max_answer_length, n_best_size=5, version_2=True)
        assert v2["null_score_diff"] == pytest.approx(min(nulls) - best[0])
        assert v2["text"] == ("" if min(nulls) - best[0] > 0 else result["text"])


def test_decode_without_windows_or_context():
    empty = {"start_logits": np.zeros(4), "end_logits": np.zeros(4), "char_start": np.full(4, -1),
             "char_end": np.full(4, -1)}
    for windows in ([empty], []):
        result = decode("", windows)
        assert (result["text"], result["start"], result["end"], result["null_score_diff"]) == ("", -1, -1, None)
        assert all(c["text"] == "" for c in result["nbest"])
        v2 = decode("", windows, version_2=True)
        assert (v2["text"], v2["start"], v2["null_score_diff"]) == ("", -1, float("inf"))
