"""Masked-LM examples (tfbert.tasks.mlm_data) on the real MiniLM tokenizer: block packing, masking
statistics (chosen rate and 80/10/10, with tolerances derived from the binomial spread), whole-word
masking, the ≥1 prediction rule, and seeding (fresh masks each epoch, or the same ones)."""

import math
import random

import numpy as np
import pytest
import tensorflow as tf

from tfbert.tasks.masked_lm import IGNORE_LABEL
from tfbert.tasks.mlm_data import batched, block_dataset, masked_dataset, special_ids

# Statistical checks allow Z standard deviations around the expectation. The data and seeds are fixed,
# so every check is deterministic; Z = 5 means a correct implementation would fail a fresh draw with
# probability < 1e-6 per check, while a wrong rate (e.g. 0.15 -> 0.12, 10% -> 5%) is many sigmas away.
Z = 5.0


@pytest.fixture(scope="module")
def tokenizer():
    from tfbert.text import BertTokenizer

    return BertTokenizer.from_pretrained("minilm-l6")


def token_ids(tokenizer, text):
    return [int(i) for i in tokenizer.tokenize(tf.constant([text]))[0].numpy()]


def as_lists(dataset):
    return [tuple(np.asarray(part).tolist() for part in element) for element in dataset.as_numpy_iterator()]


def masked_examples(dataset):
    """[(input_ids, masked_positions, labels)] of a `masked_dataset`."""
    out = []
    for features, labels in dataset.as_numpy_iterator():
        assert features["token_type_ids"].tolist() == [0] * len(features["input_ids"])
        assert features["attention_mask"].tolist() == [1] * len(features["input_ids"])
        out.append((features["input_ids"].tolist(), features["masked_positions"].tolist(), labels.tolist()))
    return out


def corpus(tokenizer, n_docs, words_per_doc, seed=0, multi_piece=0.0, literal_specials=False):
    """Random documents of vocabulary words; with `multi_piece` that share of words are made-up
    strings that WordPiece splits into several pieces."""
    rng = random.Random(seed)
    words = [w for w in tokenizer.vocab if w.isascii() and w.isalpha() and len(w) >= 3]
    docs = []
    for _ in range(n_docs):
        doc = []
        for _ in range(words_per_doc):
            if rng.random() < multi_piece:
                doc.append("".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(4)))
            else:
                doc.append(rng.choice(words))
            if literal_specials and rng.random() < 0.02:
                doc.append(rng.choice(["[MASK]", "[SEP]", "[CLS]"]))
        doc[len(doc) // 2] += ","  # punctuation is a word of its own
        docs.append(" ".join(doc))
    return docs


# ---- blocks ------------------------------------------------------------------------------------


DOCS = ["The quick brown fox jumps over the lazy dog.", "hello world",
        "Tokenization is unbelievably tricky, isn't it?", "a b c d e f g h i j k l m n o p q r s t",
        "Zyxwvut qwerty."]


def test_document_mode_packs_the_stream_into_full_blocks(tokenizer):
    max_seq_length = 10
    blocks = as_lists(block_dataset(DOCS, tokenizer, max_seq_length, line_by_line=False))
    stream = [t for doc in DOCS for t in token_ids(tokenizer, doc) + [tokenizer.sep_id]]
    piece = max_seq_length - 2
    expected = [[tokenizer.cls_id] + stream[i:i + piece] + [tokenizer.sep_id] for i in range(0, len(stream), piece)]
    assert [ids for ids, _ in blocks] == expected
    assert len(blocks) >= 5
    lengths = [len(ids) for ids, _ in blocks]
    assert all(n == max_seq_length for n in lengths[:-1]) and 3 <= lengths[-1] <= max_seq_length
    for ids, starts in blocks:
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id
        assert len(starts) == len(ids)
        # a word starts at every token but a WordPiece continuation ("##...")
        for token, start in zip(ids, starts):
            assert start == (0 if tokenizer.vocab[token].startswith("##") else 1), (tokenizer.vocab[token], start)
    # documents are separated by [SEP] in the stream: len(DOCS) inner separators, plus one closing each block
    inner = sum(ids[1:-1].count(tokenizer.sep_id) for ids, _ in blocks)
    assert inner == len(DOCS)
    assert blocks[-1][0][-2:] == [tokenizer.sep_id, tokenizer.sep_id]  # the last document's, then the block's
    assert any(tokenizer.vocab[t].startswith("##") for t in stream)  # the check above saw continuations


def test_document_mode_on_exact_multiples(tokenizer):
    # 3 tokens + [SEP] per document, pieces of 4: every block is full, none is empty
    docs = ["good bad movie", "the a an", "hello world film"]
    assert all(len(token_ids(tokenizer, d)) == 3 for d in docs)
    blocks = as_lists(block_dataset(docs, tokenizer, 6, line_by_line=False))
    assert [ids for ids, _ in blocks] == [[tokenizer.cls_id] + token_ids(tokenizer, d) + [tokenizer.sep_id] * 2
                                          for d in docs]


def test_line_by_line_one_example_per_non_empty_document_truncated(tokenizer):
    docs = ["hello world", "", "   ", "Tokenization is unbelievably tricky, isn't it? " * 4, "ok"]
    max_seq_length = 12
    blocks = as_lists(block_dataset(docs, tokenizer, max_seq_length, line_by_line=True))
    kept = [d for d in docs if d.strip()]
    assert len(blocks) == len(kept)
    for (ids, starts), doc in zip(blocks, kept):
        assert ids == [tokenizer.cls_id] + token_ids(tokenizer, doc)[:max_seq_length - 2] + [tokenizer.sep_id]
        assert len(ids) == len(starts) <= max_seq_length
        assert starts[0] == starts[-1] == 1
    assert len(blocks[1][0]) == max_seq_length  # the long one is cut


# ---- masking -----------------------------------------------------------------------------------


def blocks_and_masks(tokenizer, texts, *, max_seq_length=128, line_by_line=False, seed=7, mlm_probability=0.15,
                     whole_word_masking=False, fresh_each_epoch=True):
    blocks = block_dataset(texts, tokenizer, max_seq_length, line_by_line).cache()
    originals = as_lists(blocks)
    masked = masked_dataset(blocks, tokenizer, seed=seed, mlm_probability=mlm_probability,
                            whole_word_masking=whole_word_masking, fresh_each_epoch=fresh_each_epoch)
    return originals, masked


def check_consistency(tokenizer, originals, examples):
    """Labels are the originals at the masked positions; no special token chosen; the rest untouched."""
    specials = set(special_ids(tokenizer))
    assert len(originals) == len(examples)
    for (ids, _), (masked, positions, labels) in zip(originals, examples):
        assert len(masked) == len(ids)
        assert positions == sorted(set(positions)), "positions are increasing, without repeats"
        assert len(positions) >= 1
        assert labels == [ids[p] for p in positions]
        assert not specials & set(labels), "a special token was chosen"
        chosen = set(positions)
        assert all(masked[i] == ids[i] for i in range(len(ids)) if i not in chosen)


def test_masking_statistics(tokenizer):
    texts = corpus(tokenizer, n_docs=300, words_per_doc=140, seed=1, literal_specials=True)
    p = 0.15
    originals, masked = blocks_and_masks(tokenizer, texts, mlm_probability=p)
    examples = masked_examples(masked)
    check_consistency(tokenizer, originals, examples)
    specials = set(special_ids(tokenizer))
    assert sum(t in specials for ids, _ in originals for t in ids[1:-1]) > 300  # [SEP]s, literal [MASK]s...

    candidates = [sum(t not in specials for t in ids) for ids, _ in originals]
    total = sum(candidates)
    assert total > 40000
    chosen = sum(len(positions) for _, positions, _ in examples)
    # E[chosen] per block: n p, plus the forced pick when a block drew none ((1-p)^n)
    expected = sum(n * p + (1 - p) ** n for n in candidates)
    spread = math.sqrt(sum(n * p * (1 - p) for n in candidates))
    assert abs(chosen - expected) <= Z * spread, (chosen / total, expected / total, Z * spread / total)

    vocab_size = tokenizer.vocab_size
    kinds = {"mask": 0, "random": 0, "same": 0}
    replacements = []
    for (ids, _), (inputs, positions, _) in zip(originals, examples):
        for position in positions:
            if inputs[position] == tokenizer.mask_id:
                kinds["mask"] += 1
            elif inputs[position] == ids[position]:
                kinds["same"] += 1
            else:
                kinds["random"] += 1
                replacements.append(inputs[position])
    # a random draw may hit [MASK] or the original token itself (1/vocab each)
    shares = {"mask": 0.8 + 0.1 / vocab_size, "same": 0.1 + 0.1 / vocab_size, "random": 0.1 * (1 - 2 / vocab_size)}
    for kind, share in shares.items():
        tolerance = Z * math.sqrt(share * (1 - share) / chosen)
        assert abs(kinds[kind] / chosen - share) <= tolerance, (kind, kinds[kind] / chosen, share, tolerance)
    # random replacements are drawn over the whole vocabulary, not from a few ids
    assert len(set(replacements)) >= 0.9 * len(replacements)
    assert max(replacements) > vocab_size // 2 > min(replacements)


def word_groups(tokenizer, ids):
    """Index groups of the non-special tokens: a token and the "##" pieces after it."""
    specials = set(special_ids(tokenizer))
    groups, current = [], None
    for i, token in enumerate(ids):
        if token in specials:
            current = None
            continue
        if current is None or not tokenizer.vocab[token].startswith("##"):
            current = [i]
            groups.append(current)
        else:
            current.append(i)
    return groups


def test_whole_word_masking_masks_all_pieces_of_a_word_together(tokenizer):
    texts = corpus(tokenizer, n_docs=200, words_per_doc=60, seed=2, multi_piece=0.4, literal_specials=True)
    p = 0.15
    originals, masked = blocks_and_masks(tokenizer, texts, mlm_probability=p, whole_word_masking=True, seed=11)
    examples = masked_examples(masked)
    check_consistency(tokenizer, originals, examples)
    words = chosen_words = multi = multi_chosen = 0
    for (ids, _), (_, positions, _) in zip(originals, examples):
        chosen = set(positions)
        for group in word_groups(tokenizer, ids):
            picked = [i in chosen for i in group]
            assert all(picked) or not any(picked), [tokenizer.vocab[ids[i]] for i in group]
            words += 1
            chosen_words += picked[0]
            if len(group) > 1:
                multi += 1
                multi_chosen += picked[0]
    assert multi > 2000  # enough multi-piece words to mean something
    # words (not tokens) are chosen at mlm_probability (the forced picks add ~nothing at 128 tokens)
    assert abs(chosen_words / words - p) <= Z * math.sqrt(p * (1 - p) / words) + 0.002
    assert abs(multi_chosen / multi - p) <= Z * math.sqrt(p * (1 - p) / multi) + 0.002


def test_whole_word_flag_off_splits_words(tokenizer):
    # without whole-word masking some multi-piece word is only partly chosen
    texts = corpus(tokenizer, n_docs=40, words_per_doc=60, seed=3, multi_piece=0.5)
    originals, masked = blocks_and_masks(tokenizer, texts, mlm_probability=0.3, whole_word_masking=False)
    partial = 0
    for (ids, _), (_, positions, _) in zip(originals, masked_examples(masked)):
        chosen = set(positions)
        for group in word_groups(tokenizer, ids):
            picked = [i in chosen for i in group]
            partial += any(picked) and not all(picked)
    assert partial > 50


@pytest.mark.parametrize("whole_word_masking", [False, True])
def test_every_example_has_a_prediction_even_when_very_short(tokenizer, whole_word_masking):
    texts = ["a", "hello", "x y", "unbelievably", "Qwxzv", "[MASK] ok [SEP]"] * 5
    originals, masked = blocks_and_masks(tokenizer, texts, max_seq_length=16, line_by_line=True,
                                         mlm_probability=0.001, whole_word_masking=whole_word_masking)
    examples = masked_examples(masked)
    check_consistency(tokenizer, originals, examples)
    for (ids, _), (_, positions, _) in zip(originals, examples):
        groups = word_groups(tokenizer, ids)
        if whole_word_masking:
            assert positions in groups, (ids, positions)  # exactly one whole word
        else:
            assert len(positions) == 1
    # the one-token texts can only be masked at position 1
    assert examples[0][1] == [1] and examples[1][1] == [1]
    if whole_word_masking:  # "unbelievably" is one word of several pieces, all of them chosen
        assert len(examples[3][1]) == len(token_ids(tokenizer, "unbelievably")) > 1


def test_an_example_of_special_tokens_only_gets_no_prediction(tokenizer):
    _, masked = blocks_and_masks(tokenizer, ["[MASK]", "hello"], max_seq_length=8, line_by_line=True)
    examples = masked_examples(masked)
    assert examples[0][1] == [] and examples[0][2] == []
    assert len(examples[1][1]) == 1


def positions_of(dataset):
    return [(inputs, positions) for inputs, positions, _ in masked_examples(dataset)]


def test_fresh_masks_each_epoch_or_the_same_masks(tokenizer):
    texts = corpus(tokenizer, n_docs=20, words_per_doc=50, seed=4)
    _, fresh = blocks_and_masks(tokenizer, texts, max_seq_length=64, fresh_each_epoch=True)
    first, second = positions_of(fresh), positions_of(fresh)
    differing = sum(a != b for a, b in zip(first, second))
    assert differing >= 0.9 * len(first), f"only {differing} of {len(first)} examples got new masks"

    _, fixed = blocks_and_masks(tokenizer, texts, max_seq_length=64, fresh_each_epoch=False)
    assert positions_of(fixed) == positions_of(fixed) == positions_of(fixed)


@pytest.mark.parametrize("fresh_each_epoch", [False, True])
def test_same_seed_same_masks_other_seed_other_masks(tokenizer, fresh_each_epoch):
    texts = corpus(tokenizer, n_docs=20, words_per_doc=50, seed=5)

    def run(seed):
        return positions_of(blocks_and_masks(tokenizer, texts, max_seq_length=64, seed=seed,
                                             fresh_each_epoch=fresh_each_epoch)[1])

    first = run(3)
    assert run(3) == first
    other = run(4)
    assert sum(a != b for a, b in zip(first, other)) >= 0.9 * len(other)


def test_batched_pads_predictions_with_ignored_labels(tokenizer):
    from tfbert.training.run_config import MaskedLMRunConfig

    texts = ["hello world"] + corpus(tokenizer, n_docs=11, words_per_doc=12, seed=6)
    config = MaskedLMRunConfig(batch_size=4, max_seq_length=32, padding="batch", line_by_line=True, seed=9)
    blocks = block_dataset(texts, tokenizer, config.max_seq_length, True).cache()
    originals = as_lists(blocks)
    lengths = np.array([len(ids) for ids, _ in originals])
    for training in (False, True):
        seen = []
        dataset = batched(blocks, len(originals), lengths, tokenizer, config, training=training)
        for features, labels in dataset.as_numpy_iterator():
            assert features["masked_positions"].shape == labels.shape
            for row in range(len(labels)):
                real = labels[row] != IGNORE_LABEL
                assert real.any()
                n = int(real.sum())
                assert real[:n].all(), "predictions first, then the padding"
                assert (features["masked_positions"][row][~real] == 0).all()
                width = int(features["attention_mask"][row].sum())
                positions = features["masked_positions"][row][:n]
                assert (positions > 0).all() and (positions < width - 1).all()
                ids = features["input_ids"][row]
                assert (ids[width:] == tokenizer.pad_id).all()
                seen.append(width)
        assert sorted(seen) == sorted(lengths.tolist())  # every block once per pass


def test_the_truncation_report_counts_cut_lines_and_names_joined_documents(tokenizer):
    """The data line said "0 of N training examples truncated" whatever the mode: lines longer than an
    example were cut unsaid, and documents (joined into blocks, nothing cut) were called examples."""
    from tfbert.data.text_corpus import Documents
    from tfbert.tasks.masked_language_modeling import MaskedLanguageModelingTask, TextData
    from tfbert.training.runner import PreparedData, describe_truncation

    docs = ["hello world", "Tokenization is unbelievably tricky, isn't it? " * 4, "ok"]
    task = MaskedLanguageModelingTask()
    for line_by_line, expected in ((True, "1 of 3 training examples truncated at 12 tokens"),
                                   (False, "3 training documents joined and cut into blocks of 12 tokens")):
        data = TextData(Documents(docs, ["f:1", "f:2", "f:3"]), None, None, None, "f", line_by_line=line_by_line)
        assert describe_truncation(PreparedData(task, data, tokenizer), 12) == expected
