"""Run by test_distribution.py in a fresh process: the CPU is split into two logical devices,
which must happen before TensorFlow starts, so it cannot run inside the pytest process.

`python mirrored_check.py optimizer` trains the same tiny classifier from the same weights on the
same batches under the default strategy and under MirroredStrategy over CPU:0 and CPU:1, with the
recipe's hard cases (a clip norm that always clips, gradient accumulation, layer-wise LR decay,
mixed precision), and prints one JSON line per case. `python mirrored_check.py tpu` prints the
error `--strategy tpu` gives on a machine without a TPU. `python mirrored_check.py static <dir>`
fine-tunes a tiny classifier and a tiny tagger through the runner with `static_shapes` under
MirroredStrategy over CPU:0 and CPU:1 (as a TPU would run them) and prints what the shape contract
needs checking: every batch's shape, and the evaluation against one on the host without padding.
"""

import dataclasses
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
    from tfbert.training.optimization import create_optimizer

    rng = np.random.default_rng(0)
    n, seq = 24, 12
    features = {"input_ids": rng.integers(5, 40, (n, seq)).astype("int32"),
                "token_type_ids": np.zeros((n, seq), "int32"), "attention_mask": np.ones((n, seq), "int32")}
    features["attention_mask"][::3, 9:] = 0
    labels = rng.integers(0, 3, n).astype("int32")
    # per-token labels, -100 on padding and on a random third of the tokens: each replica's half of a
    # batch holds another number of labelled tokens
    tags = np.where((features["attention_mask"] == 1) & (rng.random((n, seq)) < 0.67),
                    rng.integers(0, 3, (n, seq)), -100).astype("int32")
    datasets = {head: tf.data.Dataset.from_tensor_slices((features, y)).batch(8)
                for head, y in (("classifier", labels), ("tagger", tags))}

    def train(strategy, clipnorm, accumulation, llrd, dtype, head):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                                    dtype=dtype)
            model = _head(head, backbone)
            model.compile(optimizer=create_optimizer(
                model, learning_rate=1e-2, total_steps=6, warmup_ratio=0.2, weight_decay=0.1, clipnorm=clipnorm,
                layerwise_lr_decay=llrd, gradient_accumulation_steps=accumulation,
                loss_scale=dtype == "mixed_float16"), loss=model.default_loss())
        history = model.fit(datasets[head], epochs=2, verbose=0)
        return model, history.history["loss"]

    # A clip norm so small that every step clips; with and without accumulation (two code paths in Keras);
    # a token-level loss (NER's, masked LM's), whose replicas count different numbers of labelled tokens
    for clipnorm, accumulation, llrd, dtype, head in [(1e-3, 3, 0.8, None, "classifier"),
                                                      (1e-3, 1, None, "mixed_float16", "classifier"),
                                                      (None, 1, None, None, "tagger"),
                                                      (1e-3, 3, None, "mixed_float16", "tagger")]:
        one, one_loss = train(tf.distribute.get_strategy(), clipnorm, accumulation, llrd, dtype, head)
        two, two_loss = train(mirrored, clipnorm, accumulation, llrd, dtype, head)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), _initial(dtype, head)))
        print(json.dumps({
            "case": dict(clipnorm=clipnorm, accumulation=accumulation, llrd=llrd, dtype=dtype, head=head),
            "replicas": two.distribute_strategy.num_replicas_in_sync,
            "updates": [int(one.optimizer.iterations.numpy()), int(two.optimizer.iterations.numpy())],
            "loss": [one_loss, two_loss], "moved": moved,
            "weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), two.get_weights())),
        }), flush=True)


def _head(head, backbone):
    from tfbert.tasks import BertClassifier, BertTokenClassifier

    model = (BertClassifier if head == "classifier" else BertTokenClassifier)
    return model(backbone, **{"num_classes" if head == "classifier" else "num_labels": 3}, dropout=0.0)


def _initial(dtype, head):
    import keras

    from conftest import tiny_config
    from tfbert import BertBackbone

    keras.utils.set_random_seed(0)
    backbone = BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), dtype=dtype)
    return _head(head, backbone).get_weights()


def static_case(directory):
    """The TPU path's shape contract, on two logical CPUs: fixed batch shapes, partial training
    batches dropped, the last evaluation batches padded, evaluation distributed, steps_per_execution."""
    distribution.make_strategy("mirrored", devices="CPU:0,CPU:1")  # before any TF op
    import random

    import keras
    import numpy as np

    from conftest import TINY_WORDS, tiny_config, write_sentiment_csv
    from tfbert import BertBackbone
    from tfbert.tasks.base import predict_batches
    from tfbert.text import BertTokenizer
    from tfbert.training import runner
    from tfbert.training.run_config import (ClassifierRunConfig, MaskedLMRunConfig, QARunConfig,
                                            TokenClassifierRunConfig)

    keras.utils.set_random_seed(0)
    model_dir = os.path.join(directory, "tiny-bert")
    BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).save_pretrained(model_dir)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]) + "\n")
    BertTokenizer(os.path.join(directory, "vocab.txt")).save_pretrained(model_dir)
    files = [write_sentiment_csv(_path(directory, f"{split}.csv"), n, seed=seed)
             for split, n, seed in (("train", 45, 1), ("dev", 19, 2))]
    rng = random.Random(3)
    for split, n in (("train", 45), ("dev", 21)):  # toy NER: "hello world" a person, of 1-18 words
        sentences = []
        for _ in range(n):
            words = [(w, "O") for w in rng.choices("the a movie film very it".split(), k=rng.randint(0, 16))]
            words.insert(rng.randint(0, len(words)), ("hello", "B-PER"))
            words.insert(words.index(("hello", "B-PER")) + 1, ("world", "I-PER"))
            sentences.append("\n".join(f"{w}\t{t}" for w, t in words))
        with open(os.path.join(directory, f"{split}.conll"), "w", encoding="utf-8") as f:
            f.write("\n\n".join(sentences) + "\n")

    common = dict(model=model_dir, validation_fraction=0.0, batch_size=4, max_seq_length=24, epochs=2,
                  learning_rate=1e-2, dropout=0.0, seed=3, strategy="mirrored", devices="CPU:0,CPU:1",
                  static_shapes=True, log_every_n_steps=1)
    configs = {
        "classification": ClassifierRunConfig(train_file=files[0], validation_file=files[1], padding="bucket",
                                              output_dir=os.path.join(directory, "cls"),
                                              log_dir=os.path.join(directory, "tb-cls"), **common),
        "token_classification": TokenClassifierRunConfig(
            train_file=os.path.join(directory, "train.conll"), validation_file=os.path.join(directory, "dev.conll"),
            padding="batch", output_dir=os.path.join(directory, "ner"), log_dir=os.path.join(directory, "tb-ner"),
            **common)}
    # question answering (windows of a context) and masked-LM blocks: the same contract
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines"))
    from test_pretrain_mlm import write_tiny_corpus
    from test_train_qa import squad_document, write_json

    for split, n, seed in (("train", 45, 1), ("dev", 19, 2)):
        write_json(_path(directory, f"{split}.json"), squad_document(split, 1, n, seed=seed))
        write_tiny_corpus(_path(directory, f"{split}.txt"), n, seed=seed)
    configs["question_answering"] = QARunConfig(
        train_file=os.path.join(directory, "train.json"), validation_file=os.path.join(directory, "dev.json"),
        doc_stride=8, max_query_length=8, output_dir=os.path.join(directory, "qa"),
        log_dir=os.path.join(directory, "tb-qa"), **{**common, "dropout": None})
    configs["masked_lm"] = MaskedLMRunConfig(
        train_file=os.path.join(directory, "train.txt"), validation_file=os.path.join(directory, "dev.txt"),
        output_dir=os.path.join(directory, "mlm"), log_dir=os.path.join(directory, "tb-mlm"),
        **{**common, "dropout": None})
    from tfbert.config import ConfigError

    try:  # (Keras 3 fails on several steps per call under MirroredStrategy: a clear error instead)
        several = dataclasses.replace(configs["classification"], steps_per_execution=2)
        runner.start_run(several, runner.prepare(several))
    except ConfigError as e:
        print(json.dumps({"task": "steps_per_execution", "error": str(e)}), flush=True)
    try:  # a run is refused so before its data is read (its output folder is made to read the data)
        runner.train(dataclasses.replace(several, output_dir=os.path.join(directory, "several")))
    except ConfigError as e:
        print(json.dumps({"task": "steps_per_execution_run", "error": str(e),
                          "output_dir": os.path.exists(os.path.join(directory, "several"))}), flush=True)
    for task, config in configs.items():
        prepared = runner.prepare(config)
        inputs = runner.start_run(config, prepared)
        shapes = {"train": sorted({tuple(x["input_ids"].shape) for x, _ in inputs.train}),
                  "validation": sorted({tuple(x["input_ids"].shape) for x, _, _ in inputs.validation})}
        rows = sum(int(w.numpy().sum()) for _, _, w in inputs.validation)
        summary = runner.fit_and_evaluate(config, prepared, inputs, write_exports=False, evaluate_test=False)
        model = inputs.model
        # The same model evaluated on the host, on batches without any padding rows or fixed lengths.
        host_config = dataclasses.replace(config, static_shapes=False)
        host_dataset = prepared.task.make_dataset(prepared.data, "validation", prepared.tokenizer, host_config,
                                                  training=False)
        host = prepared.task.evaluate(model, host_dataset, prepared.data, "validation", prepared.tokenizer,
                                      host_config)
        distributed = [out for _, _, out in predict_batches(model, inputs.validation)]
        on_host = [out for _, _, out in predict_batches(model, host_dataset)]
        print(json.dumps({
            # the validation rows: examples, a question's windows (QA), a corpus' blocks (masked LM)
            "task": task, "shapes": shapes, "validation_rows": rows,
            "examples": sum(int(batch[0]["input_ids"].shape[0]) for batch in host_dataset),
            "train_examples": sum(int(batch[0]["input_ids"].shape[0]) for batch in prepared.task.make_dataset(
                prepared.data, "train", prepared.tokenizer, host_config, training=False)),
            "steps_per_epoch": summary["steps_per_epoch"],
            "optimizer_steps": summary["optimizer_steps"], "replicas": summary["replicas"],
            "validation": {k: v for k, v in summary["validation"].items() if isinstance(v, float)},
            "host_validation": {k: v for k, v in host.items() if isinstance(v, float)},
            # per batch, over the positions both have (the host's batches are not padded to a fixed length)
            "output_diff": max(float(np.abs(a[:, :b.shape[1]] - b).max() if a.ndim == 3 else np.abs(a - b).max())
                               for a, b in zip(distributed, on_host))
            if task in ("classification", "token_classification") else None,
            "batches": [len(distributed), len(on_host)],
            "support": sum(c["support"] for c in summary["validation"]["per_class"])
            if task == "classification" else None,
            "distributed_fn": hasattr(model, "_tfbert_distributed_predict_fn"),
        }), flush=True)


def _path(directory, name):
    import pathlib

    return pathlib.Path(directory) / name


def tpu_case():
    from tfbert.config import ConfigError

    try:
        distribution.make_strategy("tpu")
    except ConfigError as e:
        print(json.dumps({"error": str(e)}), flush=True)


if __name__ == "__main__":
    {"optimizer": optimizer_cases, "tpu": tpu_case, "static": static_case}[sys.argv[1]](*sys.argv[2:])
