"""tfbert.tasks.qa_windows on the real MiniLM tokenizer: the windows are those of transformers'
`BertTokenizerFast(question, context, truncation="only_second", stride=..., return_overflowing_tokens=True)`
(ids, types, mask, the pair of each window, context offsets); the question is cut to
`max_query_length`; `answer_positions` labels as run_qa.py does; `check_lengths`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import minilm_dir
from tfbert.tasks.qa_windows import FEATURES, answer_positions, check_lengths, make_windows

transformers = pytest.importorskip("transformers")


def _long_context(seed: int, words: int) -> str:
    """Varied text with accents, CJK, emoji and odd whitespace, every chunk distinct enough to find."""
    rng = np.random.default_rng(seed)
    vocabulary = ("the museum opened in Zürich after années of café debates ; Dvořák wrote symphonies , "
                  "while naïve critics praised 北京 and 東京 festivals 🙂 👍🏽 rock'n'roll U.S.A. 3.14 "
                  "1,000 people – including Łódź residents – visited Ελληνικά exhibits (free) !").split()
    spaces = [" "] * 12 + ["  ", "\t", "\n", " \u00a0 ", "   "]
    parts = []
    for i in range(words):
        parts.append(str(rng.choice(vocabulary)) + (str(i) if rng.random() < 0.3 else ""))
        parts.append(str(rng.choice(spaces)))
    return "".join(parts).strip()


LONG_A = _long_context(0, 420)
LONG_B = "  北京是中国的首都。 " + _long_context(1, 260) + " 🙂🙂 end.  "
SHORT = "Café déjà vu in 東京, naïvely   spaced\tout 🙂."
QUESTIONS = ["Who wrote the symphonies?", "Where is 北京?", "What is déjà vu?", "how many people visited?"]
CONTEXTS = [LONG_A, LONG_B, SHORT, "A one-line context."]


@pytest.fixture(scope="module")
def tokenizers():
    from tfbert.text import BertTokenizer

    return BertTokenizer.from_pretrained("minilm-l6"), transformers.BertTokenizerFast.from_pretrained(minilm_dir())


def hf_windows(hf, questions, contexts, max_length, stride):
    return hf(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest")


def assert_windows_match(windows, reference):
    """Every tensor of `windows` equals transformers' encoding `reference`."""
    for name in FEATURES:
        ours = windows.features[name].numpy()
        assert ours.dtype == np.int32, name
        np.testing.assert_array_equal(ours, np.array(reference[name]), err_msg=name)
    np.testing.assert_array_equal(windows.example.numpy(), np.array(reference["overflow_to_sample_mapping"]))
    offsets = np.array(reference["offset_mapping"])
    in_context = np.array([[s == 1 for s in reference.sequence_ids(i)] for i in range(len(offsets))])
    np.testing.assert_array_equal(windows.char_start.numpy(), np.where(in_context, offsets[..., 0], -1))
    np.testing.assert_array_equal(windows.char_end.numpy(), np.where(in_context, offsets[..., 1], -1))


@pytest.mark.parametrize("max_seq_length, doc_stride", [(384, 128), (64, 16), (48, 10)])
def test_windows_match_transformers(tokenizers, max_seq_length, doc_stride):
    ours, hf = tokenizers
    windows = make_windows(ours, QUESTIONS, CONTEXTS, max_seq_length, 16, doc_stride)
    reference = hf_windows(hf, QUESTIONS, CONTEXTS, max_seq_length, doc_stride)
    assert_windows_match(windows, reference)
    counts = np.bincount(windows.example.numpy(), minlength=len(CONTEXTS))
    assert counts[0] >= 2 and counts[1] >= 2 and counts[3] == 1  # the long contexts need several windows
    assert windows.features["input_ids"].shape[1] <= max_seq_length


@pytest.mark.parametrize("extra", [-1, 0, 1, 32, 33, 34, 66, 67])
def test_window_count_at_the_boundaries(tokenizers, extra):
    # "Where?" is 2 tokens, so 48 - 3 - 2 = 43 context tokens fit a window and the next starts 33 later.
    ours, hf = tokenizers
    contexts = ["the " * (43 + extra), "the " * 43 + "end"]
    windows = make_windows(ours, ["Where?"] * 2, contexts, 48, 16, 10)
    reference = hf_windows(hf, ["Where?"] * 2, contexts, 48, 10)
    assert_windows_match(windows, reference)
    expected = 1 + max(0, -(-(43 + extra - 43) // 33))
    assert windows.example.numpy().tolist().count(0) == expected


def test_windows_in_a_tf_function_on_string_tensors(tokenizers):
    ours, hf = tokenizers

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    def windows_of(questions, contexts):
        return make_windows(ours, questions, contexts, 64, 16, 16)

    windows = windows_of(tf.constant(QUESTIONS), tf.constant(CONTEXTS))
    assert_windows_match(windows, hf_windows(hf, QUESTIONS, CONTEXTS, 64, 16))


def test_a_long_question_is_cut_to_max_query_length(tokenizers):
    ours, hf = tokenizers
    question = ("In which year did the museum that opened in Zürich after years of debates about cafés "
                "and symphonies finally welcome its one millionth visitor from abroad?")
    tokens = hf(question, add_special_tokens=False, return_offsets_mapping=True)
    assert len(tokens["input_ids"]) > 12
    # WordPiece is greedy from the left, so the question cut after its 12th token's last character
    # tokenizes to exactly those 12 tokens: transformers' windows for it are the expected ones.
    cut = question[:tokens["offset_mapping"][11][1]]
    assert hf(cut, add_special_tokens=False)["input_ids"] == tokens["input_ids"][:12]
    windows = make_windows(ours, [question, "Where?"], [LONG_A, SHORT], 64, 12, 16)
    assert_windows_match(windows, hf_windows(hf, [cut, "Where?"], [LONG_A, SHORT], 64, 16))
    ids = windows.features["input_ids"].numpy()
    for row in np.flatnonzero(windows.example.numpy() == 0):
        assert ids[row, 1:13].tolist() == tokens["input_ids"][:12] and ids[row, 13] == hf.sep_token_id


def test_an_empty_context_gives_one_window(tokenizers):
    ours, hf = tokenizers
    windows = make_windows(ours, ["Where is it?", "Who?"], ["", "   \n "], 64, 16, 16)
    assert windows.example.numpy().tolist() == [0, 1]
    question = hf("Where is it?", add_special_tokens=False)["input_ids"]
    expected = [hf.cls_token_id, *question, hf.sep_token_id, hf.sep_token_id]
    assert windows.features["input_ids"].numpy()[0].tolist() == expected
    assert windows.features["token_type_ids"].numpy()[0].tolist() == [0] * (len(question) + 2) + [1]
    assert (windows.char_start.numpy() == -1).all() and (windows.char_end.numpy() == -1).all()
    assert_windows_match(windows, hf_windows(hf, ["Where is it?", "Who?"], ["", "   \n "], 64, 16))


def test_check_lengths():
    assert check_lengths(384, 64, 128) is None
    assert check_lengths(48, 16, 10) is None
    assert check_lengths(64, 32, 28) is None  # 29 context tokens per window, moving 1 forward
    message = check_lengths(64, 32, 29)
    assert message == ("max_seq_length 64 leaves 29 context tokens per window after a question of max_query_length 32 "
                       "and 3 special tokens; doc_stride (29) must be smaller, or the windows would not move forward")
    # no room for context at all: no doc_stride helps, the message names the lengths that do
    assert check_lengths(64, 64, 16) == ("max_seq_length 64 leaves no context token in a window after a question of "
                                         "max_query_length 64 and 3 special tokens: raise max_seq_length or lower "
                                         "max_query_length")
    assert "leaves no context token" in check_lengths(64, 61, 0) and check_lengths(64, 60, 0) is None
    assert "at least 1" in check_lengths(64, 0, 10)
    assert "doc_stride at least 0" in check_lengths(64, 8, -1)


# ---- answer_positions ------------------------------------------------------------------------------


def run_qa_positions(offsets, sequence_ids, start_char, end_char):
    """transformers' examples/pytorch/question-answering/run_qa.py `prepare_train_features`, for one window.

    One deliberate difference: run_qa.py's start scan runs on over [SEP] and padding (offsets (0, 0)) when
    the answer begins in the window's last context token; here it stops at the last context token, as the
    comment in run_qa.py ("we could go after the last offset") intends."""
    token_start_index = 0
    while sequence_ids[token_start_index] != 1:
        token_start_index += 1
    token_end_index = len(offsets) - 1
    while sequence_ids[token_end_index] != 1:
        token_end_index -= 1
    context_end = token_end_index
    if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
        return 0, 0
    while token_start_index <= context_end and offsets[token_start_index][0] <= start_char:
        token_start_index += 1
    start = token_start_index - 1
    while offsets[token_end_index][1] >= end_char:
        token_end_index -= 1
    return start, token_end_index + 1


@pytest.mark.parametrize("max_seq_length, doc_stride", [(64, 16), (48, 10)])
def test_answer_positions_match_run_qa_and_give_back_the_answer(tokenizers, max_seq_length, doc_stride):
    ours, hf = tokenizers
    context = LONG_B
    windows = make_windows(ours, ["Which one?"], [context], max_seq_length, 16, doc_stride)
    reference = hf_windows(hf, ["Which one?"], [context], max_seq_length, doc_stride)
    char_start, char_end = windows.char_start.numpy(), windows.char_end.numpy()
    chunks = [m.span() for m in re.finditer(r"\S+", context)]
    holders = []  # per answer, how many windows hold it
    for first in range(len(chunks)):
        for length in (1, 2, 3, 5, 8, 13, 21, 30):
            if first + length > len(chunks):
                continue
            start_char, end_char = chunks[first][0], chunks[first + length - 1][1]
            text = context[start_char:end_char]
            held = 0
            for w in range(len(char_start)):
                got = answer_positions(char_start[w], char_end[w], start_char, text)
                expected = run_qa_positions(reference["offset_mapping"][w], reference.sequence_ids(w),
                                            start_char, end_char)
                assert got == expected, (w, text)
                assert all(isinstance(v, int) for v in got)
                if got != (0, 0):
                    held += 1
                    s, e = got
                    assert context[char_start[w, s]:char_end[w, e]] == text
            holders.append(held)
    # the cases that matter all occurred: in one window, in two overlapping windows, in none (straddling)
    assert {0, 1, 2} <= set(holders), sorted(set(holders))


def test_answer_positions_hand_cases():
    # [CLS] q [SEP] | "abc"(0,3) "def"(4,7) "##gh"(7,9) | [SEP] [PAD]
    char_start = np.array([-1, -1, -1, 0, 4, 7, -1, -1])
    char_end = np.array([-1, -1, -1, 3, 7, 9, -1, -1])
    assert answer_positions(char_start, char_end, 0, "abc") == (3, 3)
    assert answer_positions(char_start, char_end, 4, "defgh") == (4, 5)
    assert answer_positions(char_start, char_end, 0, "abc defgh") == (3, 5)
    assert answer_positions(char_start, char_end, 7, "gh") == (5, 5)  # the window's last context token
    assert answer_positions(char_start, char_end, 5, "ef") == (4, 4)  # inside a token: the token holding it
    assert answer_positions(char_start, char_end, 4, "defghij") == (0, 0)  # runs past the window
    assert answer_positions(char_start, char_end, None, None) == (0, 0)  # unanswerable
    later = np.where(char_start >= 0, char_start + 10, -1), np.where(char_end >= 0, char_end + 10, -1)
    assert answer_positions(*later, 4, "def") == (0, 0)  # starts before the window
    empty = np.full(8, -1)
    assert answer_positions(empty, empty, 0, "abc") == (0, 0)  # a window without context
