"""Where does the WNUT-17 gap come from? One training recipe, two implementations, step by step
(run from benchmarks/, or with it on the path):

1. Training steps: MiniLM with the same token-classification head (transformers' initialisation, saved
   once and loaded by both), the same WNUT-17 batches (run_ner.py's features, `ner_wnut17.torch_encode`)
   in the same order; tfbert (`create_optimizer`: AdamW, warmup + linear decay, clip 1.0) vs PyTorch
   AdamW with `get_linear_schedule_with_warmup`, over the recipe's 3 epochs (321 steps). Prints each
   step's training loss from both. With `--dropout` (0.1, MiniLM's config) the two draw different
   masks, so single steps differ, but the running mean shows whether either framework trains slower.
2. Evaluation: at the end of each epoch both models are scored on the validation split by tfbert's
   evaluation (`TokenClassificationTask.evaluate`: in-graph tokenizer, windows, seqeval-equal metrics)
   and by the PyTorch run's (`ner_wnut17.torch_predict`: fast tokenizer, seqeval), crosswise.

`--batches tfbert` feeds both models train_ner.py's own training batches instead (its features, length
buckets and shuffle); `--head keras` starts both from a head drawn by tfbert's initializer instead of
transformers' (BertTokenClassifier's own, as train_ner.py builds it). Together they separate what
the pipeline feeds from how its model starts.

    pip install --use-pep517 -e ".[bench]"
    python benchmarks/ner_step_parity.py --steps 40                # dropout off: losses equal to 4 digits
    python benchmarks/ner_step_parity.py --steps 321 --dropout --seed 1
    python benchmarks/ner_step_parity.py --steps 400 --dropout --batches tfbert     # 327 steps: 109 per epoch
"""
import argparse
import os
import tempfile

import keras
import numpy as np
import torch
import transformers

import accuracy_pair
import ner_wnut17
from tfbert.checkpoints import resolve
from tfbert.tasks import BertTokenClassifier
from tfbert.tasks.token_classification import TaggedData, TokenClassificationTask
from tfbert.text import BertTokenizer
from tfbert.training.optimization import create_optimizer
from tfbert.training.run_config import TokenClassifierRunConfig

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--dropout", action="store_true", help="train with MiniLM's dropout (0.1) in both")
parser.add_argument("--seed", type=int, default=0, help="head initialisation, batch order and dropout masks")
parser.add_argument("--epsilon", type=float, default=1e-8, help="Adam epsilon in both")
parser.add_argument("--batches", choices=("run_ner", "tfbert"), default="run_ner",
                    help="whose training batches both models get: run_ner.py's (fast-tokenizer features, "
                         "per-batch padding, a permutation per epoch) or train_ner.py's own dataset "
                         "(TokenClassificationTask.make_dataset: length buckets, tf.data shuffle)")
parser.add_argument("--head", choices=("transformers", "keras"), default="transformers",
                    help="whose initialisation the new head gets (both models start from the same weights): "
                         "transformers' (normal, std 0.02) or tfbert's (BertTokenClassifier's Keras initializer, "
                         "as train_ner.py builds it)")
args = parser.parse_args()
LR, BATCH, EPOCHS = 1e-4, 32, 3

splits = ner_wnut17.wnut17_splits()
tags = splits["train"].tag_names()
tag_ids = {t: i for i, t in enumerate(tags)}
model_dir = resolve("minilm-l6")
fast = transformers.BertTokenizerFast.from_pretrained(model_dir)
tokenizer = BertTokenizer.from_pretrained(model_dir)
features = ner_wnut17.torch_encode(fast, splits["train"], tag_ids)
collator = transformers.DataCollatorForTokenClassification(fast)

torch.manual_seed(args.seed)
keras.utils.set_random_seed(args.seed)
work = tempfile.mkdtemp(prefix="tfbert-ner-step-parity-")
init_dir = os.path.join(work, "init")
if args.head == "transformers":
    transformers.BertForTokenClassification.from_pretrained(model_dir, num_labels=len(tags)).save_pretrained(
        init_dir, safe_serialization=True)
else:
    BertTokenClassifier.from_pretrained(model_dir, num_labels=len(tags), label_names=tags).save_pretrained(init_dir)
hf = transformers.BertForTokenClassification.from_pretrained(init_dir, num_labels=len(tags))
off = {} if args.dropout else dict(dropout=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
if not args.dropout:
    for module in hf.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
model = BertTokenClassifier.from_pretrained(init_dir, num_labels=len(tags), label_names=tags, **off)
config = TokenClassifierRunConfig(max_seq_length=128, batch_size=64)
data = TaggedData(splits["train"], splits["validation"], splits["test"], tags, "WNUT-17")
task = TokenClassificationTask()
dev_dataset = task.make_dataset(data, "validation", tokenizer, config, training=False)


def run_ner_batches() -> list:
    """run_ner.py's batches: a permutation of the features per epoch, each batch padded by the collator."""
    order = np.concatenate([np.random.default_rng(args.seed * 100 + epoch).permutation(len(features))
                            for epoch in range(EPOCHS)])
    batches = []
    for epoch in range(EPOCHS):
        for start in range(epoch * len(features), (epoch + 1) * len(features), BATCH):
            batch = collator([features[i] for i in order[start:min(start + BATCH, (epoch + 1) * len(features))]])
            batches.append(({n: v.numpy() for n, v in batch.items() if n != "labels"}, batch["labels"].numpy()))
    return batches


def tfbert_batches() -> list:
    """train_ner.py's batches: its own training dataset, iterated once per epoch (reshuffled each time)."""
    train_config = TokenClassifierRunConfig(max_seq_length=128, batch_size=BATCH, seed=args.seed)
    dataset = task.make_dataset(data, "train", tokenizer, train_config, training=True)
    return [({n: v.numpy() for n, v in x.items()}, y.numpy()) for _ in range(EPOCHS) for x, y in dataset]


batches = run_ner_batches() if args.batches == "run_ner" else tfbert_batches()
total = len(batches)
per_epoch = total // EPOCHS
print(f"{args.batches} batches: {per_epoch} per epoch, {sum(len(y) for _, y in batches) // EPOCHS} sentences "
      f"per epoch, {sum(int((y != -100).sum()) for _, y in batches) // EPOCHS} labelled tokens per epoch", flush=True)
optimizer = create_optimizer(model, learning_rate=LR, total_steps=total, warmup_ratio=0.1, weight_decay=0.01,
                             epsilon=args.epsilon)
model.compile(optimizer=optimizer, loss=model.default_loss())
torch_optimizer, schedule = accuracy_pair.torch_adamw(  # schedule over `total` steps, as create_optimizer's
    hf, dict(epochs=EPOCHS, batch_size=1, weight_decay=0.01, learning_rate=LR, adam_epsilon=args.epsilon,
             warmup_ratio=0.1), per_epoch)


def cross_evaluate(label: str) -> None:
    """Both models, each scored on the validation split by both evaluations."""
    ours_dir, torch_dir = os.path.join(work, "tfbert"), os.path.join(work, "torch")
    model.save_pretrained(ours_dir)
    hf.save_pretrained(torch_dir, safe_serialization=True)
    for name, directory in (("tfbert-trained", ours_dir), ("pytorch-trained", torch_dir)):
        ours = BertTokenClassifier.from_pretrained(directory, num_labels=len(tags), label_names=tags)
        by_ours = task.evaluate(ours, dev_dataset, data, "validation", tokenizer, config)
        by_torch = ner_wnut17.torch_predict(transformers.BertForTokenClassification.from_pretrained(directory),
                                            fast, splits["validation"], tags)
        print(f"{label}: {name} model, dev F1: tfbert evaluation {by_ours['f1']:.4f}, "
              f"run_ner evaluation {by_torch['f1']:.4f}", flush=True)
    hf.train()


hf.train()
losses = {"tfbert": [], "pytorch": []}
for step in range(min(args.steps, total)):
    x, y = batches[step]
    ours_loss = float(model.train_on_batch({n: v.astype(np.int32) for n, v in x.items()}, y.astype(np.int32)))
    losses["tfbert"].append(ours_loss)
    inputs = {n: torch.from_numpy(v.astype(np.int64)) for n, v in x.items()}
    loss = hf(**inputs, labels=torch.from_numpy(y.astype(np.int64))).loss
    losses["pytorch"].append(accuracy_pair.torch_step(hf, loss, torch_optimizer, schedule))
    print(f"step {step:3d}  tfbert {ours_loss:.5f}  pytorch {losses['pytorch'][-1]:.5f}  "
          f"mean of the last 20: tfbert {np.mean(losses['tfbert'][-20:]):.4f}  "
          f"pytorch {np.mean(losses['pytorch'][-20:]):.4f}", flush=True)
    if (step + 1) % per_epoch == 0 or step + 1 == min(args.steps, total):
        cross_evaluate(f"after step {step + 1} (epoch {(step + 1) / per_epoch:.2f})")
