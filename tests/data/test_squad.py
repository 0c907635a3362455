"""tfbert.data.squad: SQuAD v1.1 / v2.0 JSON, JSON Lines (Hugging Face datasets' layout) and TFDS
SQuAD-style datasets read into `QAExamples`; the errors a user sees (file + entry); `split_by_title`."""

from __future__ import annotations

import json
import os

import pytest

from tfbert.data.examples import DataError
from tfbert.data.squad import QAExamples, read_squad, read_tfds_squad, split_by_title

CONTEXT_1 = "Architecturally, the school has a Catholic character. Atop the Main Building's gold dome is a statue."
CONTEXT_2 = "Café au lait in Zürich costs 5 francs; 北京 is far away."


def answer(context, text, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def v1_document():
    return {"version": "1.1", "data": [
        {"title": "Notre_Dame", "paragraphs": [
            {"context": CONTEXT_1, "qas": [
                {"id": "q1", "question": "What character does the school have?",
                 "answers": [answer(CONTEXT_1, "Catholic"), answer(CONTEXT_1, "a Catholic character")]},
                {"id": "q2", "question": "What is atop the dome?", "answers": [answer(CONTEXT_1, "a statue")]}]}]},
        {"title": "Coffee", "paragraphs": [
            {"context": CONTEXT_2, "qas": [
                {"id": "q3", "question": "Where is 北京?", "answers": [answer(CONTEXT_2, "far away")]},
                {"id": "q4", "question": "How much?", "answers": [answer(CONTEXT_2, "5 francs")]}]}]}]}


def v2_document():
    document = v1_document()
    document["version"] = "v2.0"
    qas = document["data"][1]["paragraphs"][0]["qas"]
    for qa in qas:
        qa["is_impossible"] = False
    # An unanswerable question as SQuAD v2.0 writes it: is_impossible, answers [] and plausible_answers.
    qas.append({"id": "q5", "question": "Who owns the café?", "is_impossible": True, "answers": [],
                "plausible_answers": [answer(CONTEXT_2, "Café")]})
    return document


def write_json(tmp_path, document, name="squad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_squad(path, **kwargs)
    return str(info.value)


def test_squad_v1_json(tmp_path):
    path = write_json(tmp_path, v1_document())
    examples = read_squad(path)
    assert isinstance(examples, QAExamples) and len(examples) == 4
    assert examples.ids == ["q1", "q2", "q3", "q4"]
    assert examples.questions[2] == "Where is 北京?"
    assert examples.contexts == [CONTEXT_1, CONTEXT_1, CONTEXT_2, CONTEXT_2]
    assert examples.titles == ["Notre_Dame", "Notre_Dame", "Coffee", "Coffee"]
    assert examples.answers[0] == [("Catholic", CONTEXT_1.index("Catholic")),
                                   ("a Catholic character", CONTEXT_1.index("a Catholic character"))]
    # answer_start counts characters (code points), not bytes, of the context as written
    text, start = examples.answers[2][0]
    assert CONTEXT_2[start:start + len(text)] == "far away" and start == 45
    assert examples.version_2 is False and examples.skipped == []
    assert examples.has_answers == [True] * 4
    assert examples.sources[1] == f"{path}: data[0].paragraphs[0].qas[1] (id q2)"


def test_squad_v2_json_detects_unanswerable_questions(tmp_path):
    path = write_json(tmp_path, v2_document())
    examples = read_squad(path)
    assert examples.version_2 is True
    assert examples.ids == ["q1", "q2", "q3", "q4", "q5"]
    assert examples.answers[4] == []  # plausible_answers are not gold answers
    assert examples.has_answers == [True, True, True, True, False]
    # v2.0 data can be read as such explicitly; v1.1 data is not v2.0 unless asked
    assert read_squad(path, version_2=True).version_2 is True
    assert read_squad(write_json(tmp_path, v1_document(), "v1.json")).version_2 is False
    assert read_squad(write_json(tmp_path, v1_document(), "v1b.json"), version_2=True).version_2 is True


def test_is_impossible_wins_over_listed_answers(tmp_path):
    document = v2_document()
    qa = document["data"][0]["paragraphs"][0]["qas"][0]
    qa["is_impossible"] = True  # a question marked unanswerable has no gold answers, whatever it lists
    examples = read_squad(write_json(tmp_path, document))
    assert examples.answers[0] == [] and examples.has_answers[0] is False


def test_v1_question_without_answers_is_an_error_in_v1_data(tmp_path):
    document = v1_document()
    document["data"][1]["paragraphs"][0]["qas"][0]["answers"] = []
    path = write_json(tmp_path, document)
    message = error_of(path, version_2=False)
    assert message.startswith(f"{path}: data[1].paragraphs[0].qas[0] (id q3): ")
    assert "without answers in SQuAD v1.1 data" in message and "--version_2_with_negative" in message
    # Detection reads such a file as v2.0 (the question is unanswerable) instead of failing.
    detected = read_squad(path)
    assert detected.version_2 is True and detected.answers[2] == []


def test_json_lines_in_hugging_face_datasets_layout(tmp_path):
    rows = [
        {"id": "a1", "title": "Coffee", "context": CONTEXT_2, "question": "How much?",
         "answers": {"text": ["5 francs", "5"], "answer_start": [CONTEXT_2.index("5 francs")] * 2}},
        {"id": "a2", "title": "Coffee", "context": CONTEXT_2, "question": "Who owns it?",
         "answers": {"text": [], "answer_start": []}},
        {"id": "a3", "context": CONTEXT_1, "question": "What is atop the dome?",
         "answers": [answer(CONTEXT_1, "a statue")]},  # SQuAD JSON's list of answers also works
    ]
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows[:2]) + "\n\n"
                    + json.dumps(rows[2]) + "\n", encoding="utf-8")
    examples = read_squad(str(path))
    assert examples.ids == ["a1", "a2", "a3"]
    assert examples.answers == [[("5 francs", 29), ("5", 29)], [], [("a statue", CONTEXT_1.index("a statue"))]]
    assert examples.titles == ["Coffee", "Coffee", ""]
    assert examples.version_2 is True  # a question without answers
    assert examples.sources == [f"{path}:1", f"{path}:2", f"{path}:4"]

    one = tmp_path / "train.ndjson"
    one.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    assert read_squad(str(one)).version_2 is False


def test_json_lines_errors_name_the_line(tmp_path):
    good = {"id": "a", "context": "abc def", "question": "q?", "answers": {"text": ["def"], "answer_start": [4]}}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + '{"id": "b", "context": "x"' + "\n", encoding="utf-8")
    assert error_of(str(path)).startswith(f"{path}:2: invalid JSON")
    path.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "context": "x", "answers": []}) + "\n",
                    encoding="utf-8")
    assert error_of(str(path)) == f"{path}:2: missing field 'question'"
    bad = {**good, "answers": {"text": ["def", "abc"], "answer_start": [4]}}
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    assert error_of(str(path)) == f"{path}:1: answers has 2 texts but 1 answer_start values"


def test_json_lines_with_raw_line_separators_in_strings(tmp_path):
    # ensure_ascii=False writes U+2028 and U+0085 raw; JSON allows them in strings, so they end no line.
    context = "First line\u2028second line\x85third."
    rows = [{"id": "a", "context": context, "question": "Which\u2028line?",
             "answers": {"text": ["second line"], "answer_start": [context.index("second")]}},
            {"id": "b", "context": "abc def", "question": "q?", "answers": {"text": ["def"], "answer_start": [4]}}]
    path = tmp_path / "seps.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n", encoding="utf-8",
                    newline="")
    examples = read_squad(str(path))
    assert examples.contexts[0] == context and examples.questions[0] == "Which\u2028line?"
    assert examples.sources == [f"{path}:1", f"{path}:2"]


def test_json_lines_with_old_mac_line_ends(tmp_path):
    # lone \r ends a line too (a raw \r is never inside a JSON string): each record is read, its line named
    rows = [{"id": "a", "context": "abc def", "question": "q?", "answers": {"text": ["def"], "answer_start": [4]}},
            {"id": "b", "context": "ghi jkl", "question": "r?", "answers": {"text": ["ghi"], "answer_start": [0]}}]
    path = tmp_path / "mac.jsonl"
    path.write_text("\r".join(json.dumps(r) for r in rows) + "\r", encoding="utf-8", newline="")
    examples = read_squad(str(path))
    assert examples.ids == ["a", "b"] and examples.sources == [f"{path}:1", f"{path}:2"]
    path.write_text(json.dumps(rows[0]) + "\r" + '{"id": "b"', encoding="utf-8", newline="")
    assert error_of(str(path)).startswith(f"{path}:2: invalid JSON")


def test_an_empty_question_or_context_is_not_accepted(tmp_path):
    # v2.0 data accepted them as unanswerable questions (and v1.1 an empty question with an answer)
    cases = [("", "hello world", [], "an empty question"),
             ("which?", " ", [], "an empty context"),
             ("  ", "", [], "an empty question and an empty context"),
             ("", "hello world", [{"text": "world", "answer_start": 6}], "an empty question")]
    for question, context, answers, problem in cases:
        document = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
            {"id": "x", "question": question, "answers": answers}]}]},
            {"title": "u", "paragraphs": [{"context": "abc def", "qas": [
                {"id": "y", "question": "q?", "answers": [{"text": "def", "answer_start": 4}]}]}]}]}
        path = write_json(tmp_path, document)
        where = f"{path}: data[0].paragraphs[0].qas[0] (id x)"
        assert error_of(path, version_2=True) == f"{where}: {problem}; --skip_bad_rows drops such questions"
        examples = read_squad(path, version_2=True, skip_bad_rows=True)
        assert examples.ids == ["y"] and examples.skipped == [f"{where}: {problem}"]
        # a skipped question without answers does not make v1.1 data v2.0 (no-answer predictions)
        assert not read_squad(path, skip_bad_rows=True).version_2


def test_missing_field_names_the_entry_path(tmp_path):
    document = v1_document()
    del document["data"][0]["paragraphs"][0]["qas"][1]["question"]
    path = write_json(tmp_path, document)
    assert error_of(path) == f"{path}: data[0].paragraphs[0].qas[1] (id q2): missing field 'question'"

    document = v1_document()
    del document["data"][1]["paragraphs"][0]["qas"][1]["id"]
    path = write_json(tmp_path, document)
    assert error_of(path) == f"{path}: data[1].paragraphs[0].qas[1]: missing field 'id'"

    document = v1_document()
    del document["data"][1]["paragraphs"][0]["context"]
    path = write_json(tmp_path, document)
    assert error_of(path) == f"{path}: data[1].paragraphs[0]: missing field 'context'"

    document = v1_document()
    del document["data"][0]["paragraphs"][0]["qas"][0]["answers"][1]["answer_start"]
    path = write_json(tmp_path, document)
    assert error_of(path) == f"{path}: data[0].paragraphs[0].qas[0] (id q1).answers[1]: missing field 'answer_start'"

    document = v1_document()
    document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = "34"
    path = write_json(tmp_path, document)
    assert error_of(path) == (f"{path}: data[0].paragraphs[0].qas[0] (id q1).answers[0]: field 'answer_start' "
                              "must be int, found str")


def test_answer_not_at_answer_start_is_an_error_or_skipped(tmp_path):
    document = v1_document()
    document["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 1
    path = write_json(tmp_path, document)
    message = error_of(path)
    assert message.startswith(f"{path}: data[0].paragraphs[0].qas[1] (id q2): answer 'a statue' is not at "
                              f"answer_start {CONTEXT_1.index('a statue') + 1} of the context (found ' statue")
    assert message.endswith("--skip_bad_rows drops such questions")

    examples = read_squad(path, skip_bad_rows=True)
    assert examples.ids == ["q1", "q3", "q4"]
    assert len(examples.skipped) == 1
    assert examples.skipped[0].startswith(f"{path}: data[0].paragraphs[0].qas[1] (id q2): answer 'a statue' is not")


def test_negative_answer_start_is_not_accepted(tmp_path):
    # "wor" does occur at context[-5:-2], but an answer_start of -5 points at no character of the context;
    # Python's negative indexing must not make such an offset look right (the labels built from it would
    # be at the wrong place).
    document = {"data": [{"title": "t", "paragraphs": [{"context": "hello world", "qas": [
        {"id": "x", "question": "which?", "answers": [{"text": "wor", "answer_start": -5}]}]}]}]}
    path = write_json(tmp_path, document)
    message = error_of(path)
    assert message.startswith(f"{path}: data[0].paragraphs[0].qas[0] (id x): answer 'wor' is not at answer_start -5")


def test_an_empty_answer_text_is_not_accepted(tmp_path):
    # an empty text "matches" the context at any answer_start, so it once trained silently as an answer
    for text in ("", "  "):
        document = {"data": [{"title": "t", "paragraphs": [{"context": "hello world", "qas": [
            {"id": "x", "question": "which?", "answers": [{"text": text, "answer_start": 999}]}]}]}]}
        path = write_json(tmp_path, document)
        assert error_of(path).startswith(f"{path}: data[0].paragraphs[0].qas[0] (id x): an empty answer text "
                                         "(at answer_start 999)")


def test_every_question_skipped_is_an_error(tmp_path):
    document = {"data": [{"title": "t", "paragraphs": [{"context": "abc", "qas": [
        {"id": "x", "question": "which?", "answers": [{"text": "zzz", "answer_start": 0}]}]}]}]}
    path = write_json(tmp_path, document)
    message = error_of(path, skip_bad_rows=True)
    assert message.startswith(f"{path}: no usable questions (1 skipped, the first: {path}: data[0]")


def test_duplicate_id(tmp_path):
    document = v1_document()
    document["data"][1]["paragraphs"][0]["qas"][1]["id"] = "q1"
    path = write_json(tmp_path, document)
    assert error_of(path) == (f"{path}: data[1].paragraphs[0].qas[1] (id q1): duplicate question id 'q1' "
                              f"(first at {path}: data[0].paragraphs[0].qas[0] (id q1))")
    # skip_bad_rows does not hide a duplicate id: it is not a bad answer
    with pytest.raises(DataError, match="duplicate question id 'q1'"):
        read_squad(path, skip_bad_rows=True)


def test_file_level_errors(tmp_path):
    assert error_of(str(tmp_path)) == f"{tmp_path}: is a directory; expected a SQuAD JSON file or a JSON Lines file"
    assert error_of(str(tmp_path / "nope.json")) == f"{tmp_path / 'nope.json'}: no such file"

    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n  {"title": "x",,}\n]}', encoding="utf-8")
    message = error_of(str(path))
    assert message.startswith(f"{path}: invalid JSON at line 2, column 17")
    path.write_text('{"data": [{"title": "x", "paragraphs": []}' + " " * 5000 + ',,]}', encoding="utf-8")
    assert error_of(str(path)).startswith(f"{path}: invalid JSON at line 1, column 5044: ")  # a one-line file

    path.write_text(json.dumps([{"context": "a"}]), encoding="utf-8")
    assert 'expected SQuAD JSON, an object with a "data" list' in error_of(str(path))

    path.write_text(json.dumps({"data": []}), encoding="utf-8")
    assert error_of(str(path)) == f"{path}: no questions in this file"

    path.write_bytes(b'{"data": [{"title": "caf\xe9"}]}')
    assert error_of(str(path)).startswith(f"{path}: invalid UTF-8 at byte 24")


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(v1_document()).encode("utf-8"))
    assert len(read_squad(str(path))) == 4


# ---- split_by_title ---------------------------------------------------------------------------


def many_articles(sizes):
    ids, titles = [], []
    for a, size in enumerate(sizes):
        for q in range(size):
            ids.append(f"{a}-{q}")
            titles.append(f"article {a}")
    n = len(ids)
    return QAExamples(ids, [f"q{i}" for i in range(n)], [f"c{i}" for i in range(n)], [[("c", 0)]] * n,
                      titles, [f"src{i}" for i in range(n)])


def test_split_by_title_keeps_articles_whole_and_is_seeded():
    sizes = [3, 7, 1, 12, 5, 5, 9, 2, 4, 6, 8, 3, 10, 2, 5, 7, 4, 6, 1, 10]  # 110 questions, 20 articles
    examples = many_articles(sizes)
    parts = split_by_title(examples, [0.8, 0.1, 0.1], seed=13)
    assert len(parts) == 3
    # every question exactly once, and no article in two splits
    assert sorted(i for p in parts for i in p.ids) == sorted(examples.ids)
    title_sets = [set(p.titles) for p in parts]
    assert all(not (a & b) for i, a in enumerate(title_sets) for b in title_sets[i + 1:])
    for part in parts:  # rows stay aligned
        for qid, title, question in zip(part.ids, part.titles, part.questions):
            assert title == f"article {qid.split('-')[0]}"
            assert question == f"q{examples.ids.index(qid)}"
    # fractions roughly right: within the largest article of the target
    sizes_out = [len(p) for p in parts]
    for got, fraction in zip(sizes_out, [0.8, 0.1, 0.1]):
        assert abs(got - fraction * len(examples)) <= max(sizes), sizes_out
    # seeded and deterministic
    again = split_by_title(examples, [0.8, 0.1, 0.1], seed=13)
    assert [p.ids for p in again] == [p.ids for p in parts]
    other = [split_by_title(examples, [0.8, 0.1, 0.1], seed=s)[1].ids for s in range(5)]
    assert len({tuple(ids) for ids in other}) > 1


def test_split_by_title_with_equal_articles_is_exact():
    examples = many_articles([5] * 20)
    parts = split_by_title(examples, [8, 1, 1], seed=0)  # fractions need not sum to 1
    assert [len(p) for p in parts] == [80, 10, 10]
    assert [len(set(p.titles)) for p in parts] == [16, 2, 2]
    # within a split, questions keep the file order
    for part in parts:
        assert part.ids == sorted(part.ids, key=examples.ids.index)


# ---- TFDS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds_squad_dir(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")

    class TinyTfbertSquad(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(), "title": tfds.features.Text(), "context": tfds.features.Text(),
                "question": tfds.features.Text(),
                "answers": tfds.features.Sequence({"text": tfds.features.Text(), "answer_start": tf_int32()})}))

        def _split_generators(self, dl_manager):
            return {"validation": self._generate_examples()}

        def _generate_examples(self):
            yield 0, {"id": "t1", "title": "Coffee", "context": CONTEXT_2, "question": "How much?",
                      "answers": {"text": ["5 francs"], "answer_start": [CONTEXT_2.index("5 francs")]}}
            yield 1, {"id": "t2", "title": "Coffee", "context": CONTEXT_2, "question": "Where is 北京?",
                      "answers": {"text": ["far away", "far"], "answer_start": [45, 45]}}

    def tf_int32():
        import tensorflow as tf

        return tf.int32

    data_dir = str(tmp_path_factory.mktemp("tfds_squad"))
    TinyTfbertSquad(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_read_tfds_squad(tfds_squad_dir):
    examples = read_tfds_squad("tiny_tfbert_squad", "validation", data_dir=tfds_squad_dir)
    order = sorted(range(len(examples)), key=lambda i: examples.ids[i])
    assert [examples.ids[i] for i in order] == ["t1", "t2"]
    assert [examples.answers[i] for i in order] == [[("5 francs", 29)], [("far away", 45), ("far", 45)]]
    assert [examples.questions[i] for i in order] == ["How much?", "Where is 北京?"]
    assert set(examples.contexts) == {CONTEXT_2} and set(examples.titles) == {"Coffee"}
    assert examples.version_2 is False
    with pytest.raises(DataError, match=r"tfds:tiny_tfbert_squad: no split 'train'; it has validation"):
        read_tfds_squad("tiny_tfbert_squad", "train", data_dir=tfds_squad_dir)


def test_read_tfds_squad_rejects_a_dataset_without_squad_features(tfds_data_dir):
    with pytest.raises(DataError, match="tfds:tiny_tfbert_reviews: not a SQuAD-style dataset: no feature "
                                        "question, context, answers"):
        read_tfds_squad("tiny_tfbert_reviews", "train", data_dir=tfds_data_dir)


def test_select_keeps_rows_aligned(tmp_path):
    examples = read_squad(write_json(tmp_path, v2_document()))
    picked = examples.select([4, 0])
    assert picked.ids == ["q5", "q1"] and picked.answers[0] == [] and picked.contexts[1] == CONTEXT_1
    assert picked.version_2 is True and os.path.basename(picked.sources[1].split(":")[0]) == "squad.json"
