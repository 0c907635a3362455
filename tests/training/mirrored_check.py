"""Run by test_distribution.py in a fresh process: the CPU is split into two logical devices,
which must happen before TensorFlow starts, so it cannot run inside the pytest process.

`python mirrored_check.py optimizer` trains the same tiny classifier from the same weights on the
same batches under the default strategy and under MirroredStrategy over CPU:0 and CPU:1, with the
recipe's hard cases (a clip norm that always clips, gradient accumulation, layer-wise LR decay,
mixed precision), and prints one JSON line per case. `python mirrored_check.py tpu` prints the
error `--strategy tpu` gives on a machine without a TPU.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfbert.training import distribution  # noqa: E402


def optimizer_cases():
    mirrored = distribution.make_strategy("mirrored", devices="CPU:0,CPU:1")  # before any TF op
    import keras
    import numpy as np
    import tensorflow as tf

    from conftest import tiny_config
    from tfbert import BertBackbone
    from tfbert.tasks import BertClassifier
    from tfbert.training.optimization import create_optimizer

    rng = np.random.default_rng(0)
    n, seq = 24, 12
    features = {"input_ids": rng.integers(5, 40, (n, seq)).astype("int32"),
                "token_type_ids": np.zeros((n, seq), "int32"), "attention_mask": np.ones((n, seq), "int32")}
    features["attention_mask"][::3, 9:] = 0
    labels = rng.integers(0, 3, n).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(8)

    def train(strategy, clipnorm, accumulation, llrd, dtype):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                                    dtype=dtype)
            model = BertClassifier(backbone, num_classes=3, dropout=0.0)
            model.compile(optimizer=create_optimizer(
                model, learning_rate=1e-2, total_steps=6, warmup_ratio=0.2, weight_decay=0.1, clipnorm=clipnorm,
                layerwise_lr_decay=llrd, gradient_accumulation_steps=accumulation,
                loss_scale=dtype == "mixed_float16"), loss=model.default_loss())
        history = model.fit(dataset, epochs=2, verbose=0)
        return model, history.history["loss"]

    # A clip norm so small that every step clips; with and without accumulation (two code paths in Keras)
    for clipnorm, accumulation, llrd, dtype in [(1e-3, 3, 0.8, None), (1e-3, 1, None, "mixed_float16")]:
        one, one_loss = train(tf.distribute.get_strategy(), clipnorm, accumulation, llrd, dtype)
        two, two_loss = train(mirrored, clipnorm, accumulation, llrd, dtype)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), _initial(one, dtype)))
        print(json.dumps({
            "case": dict(clipnorm=clipnorm, accumulation=accumulation, llrd=llrd, dtype=dtype),
            "replicas": two.distribute_strategy.num_replicas_in_sync,
            "updates": [int(one.optimizer.iterations.numpy()), int(two.optimizer.iterations.numpy())],
            "loss": [one_loss, two_loss], "moved": moved,
            "weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), two.get_weights())),
        }), flush=True)


def _initial(model, dtype):
    import keras

    from conftest import tiny_config
    from tfbert import BertBackbone
    from tfbert.tasks import BertClassifier

    keras.utils.set_random_seed(0)
    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), dtype=dtype)
    return BertClassifier(backbone, num_classes=3, dropout=0.0).get_weights()


def tpu_case():
    from tfbert.config import ConfigError

    try:
        distribution.make_strategy("tpu")
    except ConfigError as e:
        print(json.dumps({"error": str(e)}), flush=True)


if __name__ == "__main__":
    {"optimizer": optimizer_cases, "tpu": tpu_case}[sys.argv[1]]()
