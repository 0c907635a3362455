"""XQuAD-en exact match / F1: tfbert's `train_qa.py` vs transformers' PyTorch `BertForQuestionAnswering`.

Same model (minilm-l6), data (XQuAD-en as shipped in tfbert/datasets/xquad_en, split by article with
`tfbert.data.squad.split_by_title`, seed 42: 834 / 190 / 166 questions) and recipe: AdamW at the
train_qa default learning rate with 10% linear warmup and linear decay, Adam epsilon 1e-8, weight
decay 0.01 except biases and LayerNorm, global-norm clip 1.0, batch 16, 3 epochs, windows of 384
tokens with a 128-token stride, n-best 20, answers up to 30 tokens; the epoch with the best dev F1
is evaluated on test. The PyTorch side is transformers' standard recipe written out: the fast
tokenizer's `only_second` overflow with offsets, run_qa.py's start/end labelling, and run_qa.py's
post-processing (the top-20 start and end logits of each window, spans inside the context, best
start + end logit over the windows); both scored with the official SQuAD v1.1 metric. Each
implementation runs in its own process, one after the other.

    pip install --use-pep517 -e ".[bench]"
    python benchmarks/qa_xquad.py                  # both; prints a table and writes results to --out
    python benchmarks/qa_xquad.py --only torch
"""

from __future__ import annotations

import resource
import sys
import time

import accuracy_pair

RECIPE = dict(learning_rate=1e-4, warmup_ratio=0.1, weight_decay=0.01, batch_size=16, epochs=3, max_seq_length=384,
              doc_stride=128, seed=42, adam_epsilon=1e-8)
N_BEST, MAX_ANSWER = 20, 30


def run_tfbert(out_dir: str) -> dict:
    started = time.time()
    metrics = accuracy_pair.run_pipeline("train_qa.py", out_dir, RECIPE)
    return {"implementation": f"tfbert (Keras 3, TF), seed {RECIPE['seed']}",
            "dev_em": metrics["validation"]["exact_match"], "dev_f1": metrics["validation"]["f1"],
            "test_em": metrics["test"]["exact_match"], "test_f1": metrics["test"]["f1"],
            "seconds": round(time.time() - started, 1)}


def torch_encode(tokenizer, examples) -> list[dict]:
    """The fast tokenizer's `only_second` overflow with offsets, labelled as run_qa.py does."""
    enc = tokenizer(examples.questions, examples.contexts, truncation="only_second",
                    max_length=RECIPE["max_seq_length"], stride=RECIPE["doc_stride"],
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    features = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = enc["overflow_to_sample_mapping"][i]
        sequence = enc.sequence_ids(i)
        start = end = 0
        if examples.answers[example]:  # run_qa.py's labelling
            text, char_start = examples.answers[example][0]
            char_end = char_start + len(text)
            first = sequence.index(1)
            last = len(sequence) - 1 - sequence[::-1].index(1)
            if offsets[first][0] <= char_start and offsets[last][1] >= char_end:
                start = first
                while start <= last and offsets[start][0] <= char_start:
                    start += 1
                start -= 1
                end = last
                while end >= first and offsets[end][1] >= char_end:
                    end -= 1
                end += 1
        features.append({"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                         "attention_mask": enc["attention_mask"][i], "start_positions": start,
                         "end_positions": end, "example": example,
                         "offsets": [o if s == 1 else None for o, s in zip(offsets, sequence)]})
    return features


def torch_batch(tokenizer, features: list[dict], labels: bool) -> dict:
    """Features padded to the batch's longest (`DataCollatorWithPadding`), with the labels if asked."""
    import torch
    import transformers

    keys = ("input_ids", "token_type_ids", "attention_mask")
    inputs = transformers.DataCollatorWithPadding(tokenizer)([{k: f[k] for k in keys} for f in features])
    if labels:
        inputs["start_positions"] = torch.tensor([f["start_positions"] for f in features])
        inputs["end_positions"] = torch.tensor([f["end_positions"] for f in features])
    return inputs


def torch_predict(model, tokenizer, examples, features: list[dict]) -> dict:
    """run_qa.py's postprocess_qa_predictions (v1.1), scored with the official metric."""
    import numpy as np
    import torch

    from tfbert.tasks.qa_decoding import squad_scores

    model.eval()
    best = {}
    with torch.no_grad():
        for begin in range(0, len(features), 32):
            chunk = features[begin:begin + 32]
            out = model(**torch_batch(tokenizer, chunk, labels=False))
            for row, feature in enumerate(chunk):
                n = len(feature["input_ids"])
                start_logits = out.start_logits[row, :n].numpy()
                end_logits = out.end_logits[row, :n].numpy()
                offsets = feature["offsets"]
                for s in np.argsort(start_logits)[-1:-N_BEST - 1:-1]:
                    for e in np.argsort(end_logits)[-1:-N_BEST - 1:-1]:
                        if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > MAX_ANSWER:
                            continue
                        score = float(start_logits[s] + end_logits[e])
                        example = feature["example"]
                        if example not in best or score > best[example][0]:
                            context = examples.contexts[example]
                            best[example] = (score, context[offsets[s][0]:offsets[e][1]])
    predictions = {qid: best.get(i, (0.0, ""))[1] for i, qid in enumerate(examples.ids)}
    gold = {qid: [t for t, _ in answers] for qid, answers in zip(examples.ids, examples.answers)}
    return squad_scores(predictions, gold)


def xquad_splits(seed: int) -> dict:
    from tfbert import datasets
    from tfbert.data.squad import read_squad, split_by_title

    everything = read_squad(datasets.path("xquad_en", "xquad.en.json"))
    return dict(zip(("train", "validation", "test"), split_by_title(everything, (0.7, 0.15, 0.15), seed)))


def run_torch() -> dict:
    import numpy as np
    import torch
    import transformers

    from tfbert.checkpoints import resolve

    started = time.time()
    torch.manual_seed(RECIPE["seed"])
    splits = xquad_splits(RECIPE["seed"])
    model_dir = resolve("minilm-l6")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(model_dir)
    model = transformers.BertForQuestionAnswering.from_pretrained(model_dir)
    encoded = {name: torch_encode(tokenizer, examples) for name, examples in splits.items()}
    batch = RECIPE["batch_size"]
    optimizer, scheduler = accuracy_pair.torch_adamw(model, RECIPE, len(encoded["train"]))
    generator = np.random.default_rng(RECIPE["seed"])
    best_dev, best_state = None, None
    for _ in range(RECIPE["epochs"]):
        model.train()
        order = generator.permutation(len(encoded["train"]))
        for begin in range(0, len(order), batch):
            chunk = [encoded["train"][i] for i in order[begin:begin + batch]]
            loss = model(**torch_batch(tokenizer, chunk, labels=True)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        dev = torch_predict(model, tokenizer, splits["validation"], encoded["validation"])
        if best_dev is None or dev["f1"] > best_dev["f1"]:
            best_dev, best_state = dev, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = torch_predict(model, tokenizer, splits["test"], encoded["test"])
    return {"implementation": f"transformers {transformers.__version__} (PyTorch {torch.__version__}), "
                              f"seed {RECIPE['seed']}",
            "dev_em": best_dev["exact_match"], "dev_f1": best_dev["f1"], "test_em": test["exact_match"],
            "test_f1": test["f1"], "seconds": round(time.time() - started, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> int:
    return accuracy_pair.main(__file__, __doc__, RECIPE, run_tfbert, run_torch,
                              {"dev_em": "dev EM", "dev_f1": "dev F1", "test_em": "test EM", "test_f1": "test F1"},
                              needs=("torch", "transformers"), flags=("seed", "learning_rate", "epochs"))


if __name__ == "__main__":
    sys.exit(main())
