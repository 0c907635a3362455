"""Training-step throughput of all-MiniLM-L6-v2 at batch 32, seq 128: tfbert vs KerasHub vs PyTorch.

Timings on a shared 2-core machine vary 10-20% from run to run, so the implementations are
measured interleaved in one process, round after round, and compared as ratios of medians.

    pip install --use-pep517 -e ".[bench]"        # keras-hub, torch 2.13.0, transformers: benchmark only
    python benchmarks/throughput.py --rounds 5 --steps 5
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfbert.checkpoints import resolve  # noqa: E402
from tfbert.tasks import BertClassifier  # noqa: E402
from tfbert.training.optimization import create_optimizer  # noqa: E402

BATCH, SEQ, CLASSES = 32, 128, 5


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return ({"input_ids": rng.integers(1000, 30000, (BATCH, SEQ)).astype("int32"),
             "token_type_ids": np.zeros((BATCH, SEQ), "int32"), "attention_mask": np.ones((BATCH, SEQ), "int32")},
            rng.integers(0, CLASSES, BATCH).astype("int32"))


def tfbert_step(policy):
    model = BertClassifier.from_pretrained("minilm-l6", num_classes=CLASSES, dtype=policy)
    model.compile(create_optimizer(model, learning_rate=1e-4, total_steps=1000), model.default_loss())
    x, y = batch()
    return lambda: model.train_on_batch(x, y)


def keras_hub_step():
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(resolve("minilm-l6"))
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=CLASSES, preprocessor=None)
    model.compile(keras.optimizers.AdamW(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch()
    x = {"token_ids": x["input_ids"], "segment_ids": x["token_type_ids"], "padding_mask": x["attention_mask"]}
    return lambda: model.train_on_batch(x, y)


def torch_step():
    import torch
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(resolve("minilm-l6"), num_labels=CLASSES)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = batch()
    x = {k: torch.tensor(v, dtype=torch.long) for k, v in x.items()}
    y = torch.tensor(y, dtype=torch.long)

    def step():
        optimizer.zero_grad()
        loss = model(**x, labels=y).loss
        loss.backward()
        optimizer.step()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    candidates = {"tfbert float32": lambda: tfbert_step(None), "tfbert mixed_bfloat16": lambda: tfbert_step("mixed_bfloat16"),
                  "KerasHub float32": keras_hub_step, "PyTorch float32": torch_step}
    steps, times = {}, {}
    for name, make in candidates.items():
        try:
            steps[name] = make()
            steps[name]()  # trace / warm up
            steps[name]()
            times[name] = []
        except ImportError as e:
            print(f"skipping {name}: {e.name or e} is not installed; it comes with tfbert's [bench] extra: "
                  f'pip install --use-pep517 -e ".[bench]"')
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["tfbert float32"])
    print("| implementation | s/step (median) | examples/s | vs tfbert float32 |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {BATCH / median:.1f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
