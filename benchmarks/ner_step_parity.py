"""One training recipe, two implementations, step by step: MiniLM with the same token-classification head
(transformers' initialisation, saved once and loaded by both), the same WNUT-17 batches in the same
order, dropout off; tfbert (`create_optimizer`: AdamW, warmup + linear decay, clip 1.0) vs PyTorch
AdamW with `get_linear_schedule_with_warmup`. Prints each step's training loss from both.

    pip install -e ".[bench]"
    python benchmarks/ner_step_parity.py [adam_epsilon]     # default 1e-8
"""
import sys

import numpy as np
import torch
import transformers

from tfbert import datasets
from tfbert.checkpoints import resolve
from tfbert.data.conll import read_tagged
from tfbert.tasks import BertTokenClassifier
from tfbert.training.optimization import create_optimizer

EPS = float(sys.argv[1]) if len(sys.argv) > 1 else 1e-8
STEPS, TOTAL, LR = 40, 321, 1e-4
sent = read_tagged(datasets.path("wnut17", "train.conll"))
tags = sent.tag_names(); tid = {t: i for i, t in enumerate(tags)}
tok = transformers.BertTokenizerFast.from_pretrained(resolve("minilm-l6"))
torch.manual_seed(0)
hf = transformers.BertForTokenClassification.from_pretrained(resolve("minilm-l6"), num_labels=len(tags),
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
import tempfile  # noqa: E402

init_dir = tempfile.mkdtemp(prefix="tfbert-step-parity-")
hf.save_pretrained(init_dir, safe_serialization=True)
ours = BertTokenClassifier.from_pretrained(init_dir, num_labels=len(tags), dropout=0.0,
                                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
rng = np.random.default_rng(0)
order = rng.permutation(len(sent))
def batch(k):
    idx = order[k * 32:(k + 1) * 32]
    enc = tok([sent.words[i] for i in idx], is_split_into_words=True, truncation=True, max_length=128,
              padding="longest", return_tensors="np")
    labels = np.full(enc["input_ids"].shape, -100)
    for r, i in enumerate(idx):
        prev = None
        for p, w in enumerate(enc.word_ids(r)):
            if w is not None and w != prev:
                labels[r, p] = tid[sent.tags[i][w]]
            prev = w
    return {k: enc[k].astype(np.int32) for k in ("input_ids", "token_type_ids", "attention_mask")}, labels
opt = create_optimizer(ours, learning_rate=LR, total_steps=TOTAL, warmup_ratio=0.1, weight_decay=0.01, epsilon=EPS)
ours.compile(optimizer=opt, loss=ours.default_loss())
no_decay = ("bias", "LayerNorm.weight")
groups = [{"params": [p for n, p in hf.named_parameters() if not n.endswith(no_decay)], "weight_decay": 0.01},
          {"params": [p for n, p in hf.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}]
topt = torch.optim.AdamW(groups, lr=LR, eps=EPS)
sched = transformers.get_linear_schedule_with_warmup(topt, int(0.1 * TOTAL), TOTAL)
hf.train()
for k in range(STEPS):
    x, y = batch(k)
    ours_loss = float(ours.train_on_batch(x, y))
    out = hf(**{n: torch.from_numpy(v.astype(np.int64)) for n, v in x.items()}, labels=torch.from_numpy(y))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
    topt.step()
    sched.step()
    topt.zero_grad()
    print(f"step {k:3d}  tfbert {ours_loss:.5f}  pytorch {float(out.loss.detach()):.5f}", flush=True)
