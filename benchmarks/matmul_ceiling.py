"""How close to the machine's matmul rate a BERT training step can get: its matmuls alone.

`compare.py` divides the training step's matmul FLOPs (`compare.train_step_flops`) by its time and by the
rate of one large (2048x2048) matmul. This script times the same step with everything but the matmuls
taken out: for each encoder layer the Q, K, V, attention-output and two feed-forward matmuls on
[batch * seq, hidden] activations and the two attention matmuls per head, forward and backward (each
weight's gradient and the activations'), in one `tf.function`, no bias, activation, softmax, LayerNorm,
dropout, embedding or optimizer. Its share of the large matmul's rate is the ceiling of `compare.py`'s
"matmul share" row on this machine: the step's matmuls are smaller and thinner than 2048x2048.

    python benchmarks/matmul_ceiling.py                  # MiniLM's shapes, batch 32, seq 128, float32
    python benchmarks/matmul_ceiling.py --seq 32 --dtype bfloat16

Rounds alternate the two measurements (medians printed). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="minilm-l6", help="the checkpoint whose config.json gives the shapes")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="matmul-only steps per round")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    import tfbert  # noqa: F401  (first: tfbert's runtime defaults, oneDNN on, as its training runs)
    import numpy as np
    import tensorflow as tf

    from compare import train_step_flops
    from tfbert.checkpoints.presets import resolve

    with open(os.path.join(resolve(args.preset), "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    hidden, inner, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    batch, seq, tokens = args.batch, args.seq, args.batch * args.seq
    rng = np.random.default_rng(0)

    def weight(shape):
        return tf.Variable(tf.cast(rng.standard_normal(shape) * 0.02, args.dtype))

    layers = [[weight((hidden, hidden)) for _ in range(4)] + [weight((hidden, inner)), weight((inner, hidden))]
              for _ in range(config["num_hidden_layers"])]
    weights = [w for layer in layers for w in layer]
    x = tf.cast(rng.standard_normal((tokens, hidden)), args.dtype)

    def split(t):  # [tokens, hidden] -> [batch * heads, seq, head_size], a reshape (no transpose: no copy)
        return tf.reshape(t, (batch * heads, seq, hidden // heads))

    @tf.function
    def step(h):
        with tf.GradientTape() as tape:
            for query, key, value, output, up, down in layers:
                scores = tf.matmul(split(h @ query), split(h @ key), transpose_b=True)
                h = tf.reshape(tf.matmul(scores, split(h @ value)), (tokens, hidden)) @ output
                h = (h @ up) @ down
            loss = tf.reduce_sum(tf.cast(h, tf.float32))
        return tape.gradient(loss, weights)

    square = tf.Variable(tf.cast(rng.standard_normal((2048, 2048)), args.dtype))
    large = tf.function(lambda: square @ square)
    step(x), large()  # trace and warm up
    flops = train_step_flops(config, batch, seq, num_classes=0) - 2 * batch * hidden * hidden * 3  # no pooler
    step_rates, large_rates = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            step(x)[-1].numpy()
        step_rates.append(flops * args.steps / (time.perf_counter() - start) / 1e9)
        start = time.perf_counter()
        for _ in range(20):
            large().numpy()
        large_rates.append(20 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    step_rate, large_rate = statistics.median(step_rates), statistics.median(large_rates)
    print(f"{args.preset}, batch {batch}, seq {seq}, {args.dtype}: the step's matmuls alone "
          f"({flops / 1e9:.0f} GFLOP) {step_rate:.0f} GFLOP/s, a 2048x2048 matmul {large_rate:.0f} GFLOP/s: "
          f"{step_rate / large_rate:.0%} (rounds: {', '.join(f'{s:.0f}/{m:.0f}' for s, m in zip(step_rates, large_rates))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
