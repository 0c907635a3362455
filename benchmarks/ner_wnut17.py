"""WNUT-17 entity F1: tfbert's `train_ner.py` vs transformers' PyTorch `BertForTokenClassification`.

Same model (minilm-l6), data (WNUT-17 as shipped in tfbert/datasets/wnut17), labels (IOB2 tags on each
word's first sub-token, as run_ner.py aligns them) and recipe: AdamW at 1e-4 with 10% linear warmup and
linear decay, Adam epsilon 1e-8, weight decay 0.01 except biases and LayerNorm, global-norm clip 1.0,
batch 32, 3 epochs,
128 tokens, seed 42; the epoch with the best dev F1 is evaluated on test. Entity F1 from seqeval
(default mode). Each implementation runs in its own process, one after the other.

    pip install --use-pep517 -e ".[bench]"
    python benchmarks/ner_wnut17.py               # both; prints a table and writes results to --out
    python benchmarks/ner_wnut17.py --only torch
"""

from __future__ import annotations

import resource
import sys
import time

import accuracy_pair

RECIPE = dict(learning_rate=1e-4, warmup_ratio=0.1, weight_decay=0.01, batch_size=32, epochs=3, max_seq_length=128,
              seed=42, adam_epsilon=1e-8)  # epsilon: PyTorch's AdamW default (tfbert's default is BERT's 1e-6)


def run_tfbert(out_dir: str) -> dict:
    started = time.time()
    metrics = accuracy_pair.run_pipeline("train_ner.py", out_dir, RECIPE)
    return {"implementation": f"tfbert (Keras 3, TF), seed {RECIPE['seed']}", "dev_f1": metrics["validation"]["f1"],
            "test_f1": metrics["test"]["f1"], "test_precision": metrics["test"]["precision"],
            "test_recall": metrics["test"]["recall"], "seconds": round(time.time() - started, 1)}


def wnut17_splits() -> dict:
    from tfbert import datasets
    from tfbert.data.conll import read_tagged

    return {name: read_tagged(datasets.path("wnut17", f"{name}.conll")) for name in ("train", "validation", "test")}


def torch_encode(tokenizer, sentences, tag_ids: dict) -> list[dict]:
    """run_ner.py's features: the fast tokenizer on the words, the tag on each word's first sub-token,
    -100 elsewhere."""
    features = []
    for words, word_tags in zip(sentences.words, sentences.tags):
        encoding = tokenizer(words, is_split_into_words=True, truncation=True, max_length=RECIPE["max_seq_length"])
        labels, previous = [], None
        for word in encoding.word_ids():
            labels.append(-100 if word is None or word == previous else tag_ids[word_tags[word]])
            previous = word
        features.append({**encoding, "labels": labels})
    return features


def torch_predict(model, tokenizer, sentences, tags: list[str]) -> dict:
    """Each word's tag from its first sub-token's logits ("O" for a word without tokens), scored with
    seqeval's default mode."""
    import torch
    from seqeval.metrics import f1_score, precision_score, recall_score

    model.eval()
    predicted = []
    with torch.no_grad():
        for start in range(0, len(sentences), 64):
            words = sentences.words[start:start + 64]
            inputs = tokenizer(words, is_split_into_words=True, truncation=True,
                               max_length=RECIPE["max_seq_length"], padding=True, return_tensors="pt")
            logits = model(**inputs).logits.argmax(-1).numpy()
            for row, sentence in enumerate(words):
                word_tags, previous = ["O"] * len(sentence), None
                for position, word in enumerate(inputs.word_ids(row)):
                    if word is not None and word != previous:
                        word_tags[word] = tags[logits[row, position]]
                    previous = word
                predicted.append(word_tags)
    truth = sentences.tags
    return {"f1": f1_score(truth, predicted), "precision": precision_score(truth, predicted),
            "recall": recall_score(truth, predicted)}


def run_torch() -> dict:
    """transformers' BertForTokenClassification trained with a plain PyTorch loop (run_ner.py's recipe)."""
    import numpy as np
    import torch
    import transformers

    from tfbert.checkpoints import resolve

    started = time.time()
    torch.manual_seed(RECIPE["seed"])
    np.random.seed(RECIPE["seed"])
    splits = wnut17_splits()
    tags = splits["train"].tag_names()
    tag_ids = {t: i for i, t in enumerate(tags)}
    model_dir = resolve("minilm-l6")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(model_dir)
    model = transformers.BertForTokenClassification.from_pretrained(
        model_dir, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id=tag_ids)
    collator = transformers.DataCollatorForTokenClassification(tokenizer)
    encoded = {name: torch_encode(tokenizer, split, tag_ids) for name, split in splits.items()}
    batch = RECIPE["batch_size"]
    optimizer, scheduler = accuracy_pair.torch_adamw(model, RECIPE, len(encoded["train"]))

    def predict(name):
        return torch_predict(model, tokenizer, splits[name], tags)

    best_dev, best_state = -1.0, None
    generator = np.random.default_rng(RECIPE["seed"])
    for _ in range(RECIPE["epochs"]):
        model.train()
        order = generator.permutation(len(encoded["train"]))
        for start in range(0, len(order), batch):
            inputs = collator([encoded["train"][i] for i in order[start:start + batch]])
            accuracy_pair.torch_step(model, model(**inputs).loss, optimizer, scheduler)
        dev = predict("validation")["f1"]
        if dev > best_dev:
            best_dev, best_state = dev, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = predict("test")
    return {"implementation": f"transformers {transformers.__version__} (PyTorch {torch.__version__}), "
                              f"seed {RECIPE['seed']}",
            "dev_f1": best_dev, "test_f1": test["f1"], "test_precision": test["precision"],
            "test_recall": test["recall"], "seconds": round(time.time() - started, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> int:
    return accuracy_pair.main(__file__, __doc__, RECIPE, run_tfbert, run_torch,
                              {"dev_f1": "dev F1", "test_f1": "test F1", "test_precision": "test precision", "test_recall": "test recall"},
                              needs=("seqeval", "torch", "transformers"), flags=("seed",))


if __name__ == "__main__":
    sys.exit(main())
