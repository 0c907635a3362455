"""tfbert against KerasHub and transformers' PyTorch BERT on all-MiniLM-L6-v2, in one run and one table.

What is measured (every implementation in its own child process of this script, the same checkpoint):

1. Training-step throughput, batch 32, sequence 128 and 32 (synthetic ids, no padding, so tfbert runs with
   `skip_padding` off, the backbone's default, which gains nothing there): tfbert float32,
   tfbert mixed_bfloat16, KerasHub `BertTextClassifier` (TF backend, plain AdamW; as TensorFlow leaves
   oneDNN, and with TF_ENABLE_ONEDNN_OPTS=1, which tfbert sets by default on x86-64) and transformers'
   `BertForSequenceClassification` (AdamW). The five processes stay alive and are asked in interleaved
   rounds (A, B, C, D, E, A, B, ...); medians of the rounds, ratios against tfbert float32.
2. One epoch over the first `--rows` rows of SST-2 train (8,000) and accuracy on SST-2 dev: tfbert
   (`make_dataset(padding="bucket")`, padding skipped as the runner trains), KerasHub with its standard
   preprocessor (sequence_length 128) and PyTorch with per-batch dynamic padding (`DataCollatorWithPadding`).
   One recipe, as `sst2.sh`: AdamW 1e-4, 10% warmup then linear decay, weight decay 0.01, epsilon 1e-6,
   global-norm clip 1.0, batch 32.
   The epoch's seconds run from building the input pipeline to the end of the last step, so they include
   tokenization and the first step's tracing, as a user waits for them.
3. Peak resident memory of every training process, `ru_maxrss` reported by the process itself (tfbert's
   SST-2 process reports it after its dev evaluation, before it writes the export that (4) uses).
4. Inference on SST-2 dev: tfbert's exported raw-text SavedModel (`serving_default`, `text`, tokenization
   in the graph) against transformers' `pipeline("text-classification")`, both on the weights fine-tuned
   in (2) (`save_pretrained` writes the Hugging Face directory): sentences/s at batch 32 and batch-1
   latency (median, p99), interleaved rounds.
5. The fraction of this machine's matmul rate (a 2048x2048 `tf.linalg.matmul`, float32 and bfloat16,
   measured between the training rounds) that the training step reaches; see `train_step_flops`.
6. Time to the first finished training step: from the child's module top (`time.time()` before any other
   import) and from the interpreter's start (psutil's process creation time, else the parent's spawn time).

    pip install --use-pep517 -e ".[bench]"    # keras-hub, torch 2.13.0, transformers: benchmark only
    python benchmarks/compare.py              # the full run, about 45 min on 2 idle cores
    python benchmarks/compare.py --quick      # a few minutes: 800 SST-2 rows, fewer rounds and steps
    python benchmarks/compare.py --smoke      # a functional check, 3-8 min: the numbers mean nothing
    python benchmarks/compare.py --quick --rows 2000 --rounds 3   # any size setting can be overridden

The table is printed and, with every raw timing, written to `<--out>/results.json`; each child's stderr goes
to `<--out>/logs/`.

Timings on a shared machine vary 10-20% from run to run; run it on an idle machine.
"""

import time

MODULE_START = time.time()  # before any other import: the first-step time of a child counts from here

import argparse  # noqa: E402
import csv  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
HERE = os.path.dirname(os.path.abspath(__file__))
SST2 = os.path.join(HERE, "..", "..", "shared", "data", "sst2")
PRESET = "minilm-l6"
BATCH, NUM_CLASSES, SEQS = 32, 2, (128, 32)
MARK = "@@compare "  # prefix of a child's result lines; anything else on its stdout is library chatter
LABELS = ["negative", "positive"]
RECIPE = {"learning_rate": 1e-4, "batch_size": BATCH, "epochs": 1, "max_seq_length": 128, "warmup_ratio": 0.1,
          "weight_decay": 0.01, "adam_epsilon": 1e-6, "seed": 0}
TRAINERS = {"tfbert_fp32": "tfbert float32", "tfbert_bf16": "tfbert mixed_bfloat16",
            "keras_hub": "KerasHub float32", "keras_hub_onednn": "KerasHub float32 with oneDNN",
            "torch": "PyTorch float32"}
# TF_ENABLE_ONEDNN_OPTS of each child: tfbert's children set it by importing tfbert first (tfbert/__init__.py),
# KerasHub runs as TensorFlow leaves it (oneDNN off on CPUs without AVX-512 VNNI/BF16) and once with it on
ONEDNN = {"keras_hub": None, "keras_hub_onednn": "1"}
STEP_TARGETS = {"keras_hub": 1.15, "torch": 1.25}  # tfbert float32 over these at seq 128
SST2_RUNS = {"tfbert": "tfbert (length buckets)", "keras_hub": "KerasHub (pad to 128)",
             "torch": "PyTorch (per-batch padding)"}
SETTINGS = {  # training rounds, steps per round, SST-2 train rows, dev rows, inference rounds, batch-1 sentences
    "full": {"rounds": 5, "steps": 5, "rows": 8000, "dev_rows": 872, "infer_rounds": 3, "latency_n": 100},
    "quick": {"rounds": 2, "steps": 2, "rows": 800, "dev_rows": 200, "infer_rounds": 2, "latency_n": 30},
    "smoke": {"rounds": 1, "steps": 1, "rows": 96, "dev_rows": 64, "infer_rounds": 1, "latency_n": 8},
}


# ---- child side ---------------------------------------------------------------------------------------

def emit(result: dict) -> None:
    """Writes one result line for the parent, with this process's peak resident memory so far."""
    # KiB on Linux; a result may bring its own (measured before work that is not part of the benchmark)
    result.setdefault("peak_rss_gb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(MARK + json.dumps(result), flush=True)


def serve(ready: dict, measure) -> None:
    """A persistent child: reports `ready`, then answers each JSON command on stdin with `measure(**command)`."""
    emit(ready)
    for line in sys.stdin:
        emit(measure(**json.loads(line)))


def process_start() -> float | None:
    """The interpreter's start (seconds since the epoch) from psutil, or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().create_time()


def synthetic_batch(seq: int, seed: int = 0):
    """A batch of BATCH random word-piece ids of length `seq` (no padding) and binary labels (numpy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    features = {"input_ids": rng.integers(1000, 30000, (BATCH, seq)).astype("int32"),
                "token_type_ids": np.zeros((BATCH, seq), "int32"), "attention_mask": np.ones((BATCH, seq), "int32")}
    return features, rng.integers(0, NUM_CLASSES, BATCH).astype("int32")


def tfbert_classifier(policy: str | None):
    """MiniLM with a fresh 2-class head under the Keras dtype `policy` (None: float32)."""
    from tfbert.tasks import BertClassifier

    return BertClassifier.from_pretrained(PRESET, num_classes=NUM_CLASSES, dtype=policy)


def compile_tfbert(model, total_steps: int, batch_spec=None):
    """Compiles a tfbert classifier with tfbert's fine-tuning optimizer, the recipe's settings, and builds
    its training state for batches like `batch_spec` (default: `synthetic_batch`'s, any length) as tfbert's runner
    does before the first step; returns it."""
    import tensorflow as tf

    from tfbert.training.optimization import create_optimizer
    from tfbert.training.runner import build_training_state

    model.compile(create_optimizer(model, learning_rate=RECIPE["learning_rate"], total_steps=total_steps,
                                   warmup_ratio=RECIPE["warmup_ratio"], weight_decay=RECIPE["weight_decay"],
                                   epsilon=RECIPE["adam_epsilon"]), model.default_loss())
    if batch_spec is None:
        batch_spec = tf.nest.map_structure(lambda x: tf.TensorSpec((None,) * x.ndim, x.dtype), synthetic_batch(1))
    build_training_state(model, batch_spec)
    return model


def keras_hub_adamw(total_steps: int):
    """Keras AdamW with the recipe (warmup + linear decay, weight decay off biases/LayerNorm, clip 1.0)."""
    import keras

    from tfbert.training.optimization import WarmupLinearDecay, warmup_steps_for

    schedule = WarmupLinearDecay(RECIPE["learning_rate"], total_steps, warmup_steps_for(total_steps,
                                                                                        RECIPE["warmup_ratio"]))
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=RECIPE["weight_decay"],
                                       epsilon=RECIPE["adam_epsilon"], global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def keras_hub_classifier(checkpoint: str, sequence_length: int | None):
    """KerasHub's `BertTextClassifier` on the MiniLM folder; with `sequence_length`, its standard preprocessor."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(checkpoint)
    preprocessor = None
    if sequence_length:
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            checkpoint, sequence_length=sequence_length)
    return keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=NUM_CLASSES, preprocessor=preprocessor)


KERAS_HUB_INPUTS = {"input_ids": "token_ids", "token_type_ids": "segment_ids", "attention_mask": "padding_mask"}


def keras_step(model, features: dict, labels, names: dict | None = None):
    """`step()`: one `train_on_batch` of a Keras model on a fixed batch; `names` renames the feature keys."""
    if names:
        features = {names[key]: value for key, value in features.items()}
    return lambda: model.train_on_batch(features, labels)


def step_maker(trainer: str, checkpoint: str):
    """Builds `trainer`'s model once; returns `make_step(seq) -> step()`, one optimizer update per call."""
    if trainer.startswith("tfbert"):
        model = compile_tfbert(tfbert_classifier("mixed_bfloat16" if trainer == "tfbert_bf16" else None), 1000)
        return lambda seq: keras_step(model, *synthetic_batch(seq))
    if trainer.startswith("keras_hub"):
        import keras

        model = keras_hub_classifier(checkpoint, None)
        model.compile(keras.optimizers.AdamW(RECIPE["learning_rate"]),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return lambda seq: keras_step(model, *synthetic_batch(seq), names=KERAS_HUB_INPUTS)
    import torch
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(checkpoint, num_labels=NUM_CLASSES)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE["learning_rate"])

    def make_step(seq):
        x, y = synthetic_batch(seq)
        x, y = {k: torch.tensor(v, dtype=torch.long) for k, v in x.items()}, torch.tensor(y, dtype=torch.long)

        def step():
            optimizer.zero_grad()
            model(**x, labels=y).loss.backward()
            optimizer.step()
        return step
    return make_step


def train_worker(trainer: str, config: dict) -> None:
    """Persistent training-step child: its first step (seq 128) is timed from the module top, then it
    answers `{"seq", "steps"}` with seconds per step (each new length is traced and warmed up first)."""
    make_step = step_maker(trainer, config["checkpoint"])
    steps = {SEQS[0]: make_step(SEQS[0])}
    steps[SEQS[0]]()
    first_step_at = time.time()
    steps[SEQS[0]]()

    def measure(seq: int, steps_per_round: int) -> dict:
        if seq not in steps:
            steps[seq] = make_step(seq)
            steps[seq]()
            steps[seq]()
        start = time.perf_counter()
        for _ in range(steps_per_round):
            steps[seq]()
        return {"seconds_per_step": (time.perf_counter() - start) / steps_per_round}
    serve({"first_step_s": first_step_at - MODULE_START, "first_step_at": first_step_at,
           "process_start": process_start()}, measure)


def matmul_worker(config: dict) -> None:
    """Persistent child: answers `{"reps"}` with the GFLOP/s of a 2048x2048 matmul in float32 and bfloat16."""
    import tfbert  # noqa: F401  (first: the matmul runs with the oneDNN kernels tfbert's steps use)
    import tensorflow as tf

    n = 2048
    pairs = {dtype: (tf.cast(tf.random.normal([n, n]), dtype), tf.cast(tf.random.normal([n, n]), dtype))
             for dtype in ("float32", "bfloat16")}
    for a, b in pairs.values():
        tf.linalg.matmul(a, b).numpy()  # warm-up

    def measure(reps: int) -> dict:
        rates = {}
        for dtype, (a, b) in pairs.items():
            start = time.perf_counter()
            for _ in range(reps):
                c = tf.linalg.matmul(a, b)
            c[0, 0].numpy()  # the CPU ops run synchronously; this only makes sure the last one finished
            rates[dtype] = 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
        return rates
    serve({}, measure)


def read_sst2(split: str, limit: int) -> tuple[list[str], list[int]]:
    """The first `limit` rows of `../shared/data/sst2/<split>.tsv` (header `sentence<TAB>label`)."""
    path = os.path.join(SST2, f"{split}.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows[:1] != [["sentence", "label"]]:
        raise SystemExit(f"{path}:1: expected the header 'sentence<TAB>label', found {rows[:1]}")
    rows = rows[1:limit + 1]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def accuracy(logits, labels) -> float:
    """Share of argmax(logits) equal to `labels`."""
    import numpy as np

    if isinstance(logits, dict):
        logits = logits["logits"]
    return float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))


def sst2_tfbert(config: dict) -> dict:
    """tfbert's library path: bucketed `make_dataset`, `fit` for one epoch, dev accuracy; then saves the
    fine-tuned model as a Hugging Face directory and exports the raw-text SavedModel for (4)."""
    import keras
    import numpy as np

    from tfbert.data.examples import Examples
    from tfbert.data.pipeline import make_dataset
    from tfbert.export import export_saved_model
    from tfbert.text import BertTokenizer

    texts, labels = read_sst2("train", config["rows"])
    dev_texts, dev_labels = read_sst2("dev", config["dev_rows"])
    tokenizer = BertTokenizer.from_pretrained(PRESET)
    keras.utils.set_random_seed(RECIPE["seed"])  # the head's draw and the dropout masks: one seed, every run
    model = tfbert_classifier(None)
    model.backbone.skip_padding = True  # as tfbert's runner trains (--skip_padding, on by default)
    start = time.perf_counter()
    train = make_dataset(Examples(texts, labels), tokenizer, labels=np.array(labels, "int32"), batch_size=BATCH,
                         max_seq_length=RECIPE["max_seq_length"], shuffle=True, seed=RECIPE["seed"], padding="bucket")
    compile_tfbert(model, len(train), train.element_spec).fit(train, epochs=RECIPE["epochs"], verbose=0)
    seconds = time.perf_counter() - start
    dev = make_dataset(Examples(dev_texts, dev_labels), tokenizer, labels=None, batch_size=BATCH,
                       max_seq_length=RECIPE["max_seq_length"], padding="batch")
    logits = model.predict(dev, verbose=0)
    result = {"seconds": seconds, "dev_accuracy": accuracy(logits, dev_labels),
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    model.save_pretrained(config["hf_dir"], label_names=LABELS, vocab_file=os.path.join(config["checkpoint"],
                                                                                          "vocab.txt"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):  # the checkpoint's own
        if os.path.exists(os.path.join(config["checkpoint"], name)):
            shutil.copy(os.path.join(config["checkpoint"], name), config["hf_dir"])
    result["export_dir"] = export_saved_model(model, tokenizer, config["export_base"], label_names=LABELS,
                                              overwrite=True, version=1)
    return result


def sst2_keras_hub(config: dict) -> dict:
    """KerasHub's standard path: `BertTextClassifier` with its preprocessor (pad to 128) fed raw text."""
    import keras
    import tensorflow as tf

    texts, labels = read_sst2("train", config["rows"])
    dev_texts, dev_labels = read_sst2("dev", config["dev_rows"])
    keras.utils.set_random_seed(RECIPE["seed"])  # as for tfbert and PyTorch: the head's draw, the dropout masks
    model = keras_hub_classifier(config["checkpoint"], RECIPE["max_seq_length"])
    start = time.perf_counter()
    model.compile(keras_hub_adamw(math.ceil(len(texts) / BATCH)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(len(texts), seed=RECIPE["seed"]).batch(BATCH)
    model.fit(train, epochs=RECIPE["epochs"], verbose=0)
    seconds = time.perf_counter() - start
    logits = model.predict(tf.data.Dataset.from_tensor_slices(dev_texts).batch(BATCH), verbose=0)
    return {"seconds": seconds, "dev_accuracy": accuracy(logits, dev_labels)}


def sst2_torch(config: dict) -> dict:
    """transformers' path: fast tokenizer, shuffled DataLoader with `DataCollatorWithPadding`, the Trainer's
    update (`accuracy_pair.torch_adamw` / `torch_step`)."""
    import torch
    import transformers

    sys.path.insert(0, HERE)
    from accuracy_pair import torch_adamw, torch_step

    torch.manual_seed(RECIPE["seed"])
    texts, labels = read_sst2("train", config["rows"])
    dev_texts, dev_labels = read_sst2("dev", config["dev_rows"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(config["checkpoint"])
    model = transformers.BertForSequenceClassification.from_pretrained(config["checkpoint"], num_labels=NUM_CLASSES)
    start = time.perf_counter()
    encoded = tokenizer(texts, truncation=True, max_length=RECIPE["max_seq_length"])
    features = [{"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": label} for
                ids, types, mask, label in zip(encoded["input_ids"], encoded["token_type_ids"],
                                               encoded["attention_mask"], labels)]
    loader = torch.utils.data.DataLoader(features, batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(RECIPE["seed"]),
                                         collate_fn=transformers.DataCollatorWithPadding(tokenizer))
    optimizer, scheduler = torch_adamw(model, RECIPE, len(features))
    model.train()
    for _ in range(RECIPE["epochs"]):
        for batch in loader:
            torch_step(model, model(**batch).loss, optimizer, scheduler)
    seconds = time.perf_counter() - start
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(dev_texts), BATCH):
            inputs = tokenizer(dev_texts[i:i + BATCH], padding=True, truncation=True,
                               max_length=RECIPE["max_seq_length"], return_tensors="pt")
            logits.append(model(**inputs).logits.numpy())
    import numpy as np

    return {"seconds": seconds, "dev_accuracy": accuracy(np.concatenate(logits), dev_labels)}


def inference_worker(kind: str, config: dict) -> None:
    """Persistent child: answers `{"latency_n"}` with dev sentences/s at batch 32 and batch-1 latency (ms)."""
    import numpy as np

    texts, _ = read_sst2("dev", config["dev_rows"])
    if kind == "tfbert":
        import tfbert  # noqa: F401  (first: tfbert's runtime defaults, oneDNN on, as for the training)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

        signature = tf.saved_model.load(config["export_dir"]).signatures["serving_default"]
        classify = lambda batch: signature(text=tf.constant(batch))["label_id"].numpy()  # noqa: E731
    else:
        import transformers

        pipe = transformers.pipeline("text-classification", model=config["hf_dir"], tokenizer=config["hf_dir"],
                                     device="cpu")
        classify = lambda batch: pipe(batch, batch_size=BATCH)  # noqa: E731
    classify(texts[:BATCH])  # warm-up
    classify(texts[:1])

    def measure(latency_n: int) -> dict:
        start = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            classify(texts[i:i + BATCH])
        per_second = len(texts) / (time.perf_counter() - start)
        latencies = []
        for text in texts[:latency_n]:
            start = time.perf_counter()
            classify([text])
            latencies.append((time.perf_counter() - start) * 1000)
        return {"sentences_per_s": per_second, "latency_median_ms": float(np.median(latencies)),
                "latency_p99_ms": float(np.percentile(latencies, 99))}
    serve({}, measure)


def run_child(kind: str, config: dict) -> int:
    """Entry point of a child process: `kind` is `train:<trainer>`, `matmul`, `sst2:<impl>` or `infer:<impl>`."""
    family, _, name = kind.partition(":")
    if family == "train":
        train_worker(name, config)
    elif family == "matmul":
        matmul_worker(config)
    elif family == "sst2":
        emit({"tfbert": sst2_tfbert, "keras_hub": sst2_keras_hub, "torch": sst2_torch}[name](config))
    elif family == "infer":
        inference_worker(name, config)
    return 0


# ---- parent side --------------------------------------------------------------------------------------

class Child:
    """A child process running this script with `--_child kind`; exchanges JSON lines with it."""

    def __init__(self, kind: str, config: dict, log_dir: str, onednn: str | None = None):
        """`onednn`: the child's TF_ENABLE_ONEDNN_OPTS (None: unset, TensorFlow's own choice)."""
        self.kind = kind
        self.log_path = os.path.join(log_dir, kind.replace(":", "-") + ".log")
        self.spawned = time.time()
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        if onednn is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = onednn
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--_child", kind, "--_config", json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.ready = self.read()

    def read(self) -> dict:
        """The child's next result line; exits with the end of its log if the child died first."""
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        self.process.wait()
        with open(self.log_path, encoding="utf-8") as f:
            raise SystemExit(f"compare.py: child '{self.kind}' exited with {self.process.returncode}; "
                             f"end of {self.log_path}:\n{f.read()[-3000:]}")

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=120)


def measure_training(config: dict, settings: dict, log_dir: str) -> dict:
    """Section 1, 3, 5, 6: the training children (TRAINERS) and the matmul child, interleaved round after round.
    The children start one at a time, so each first step runs without the others competing for the cores."""
    children = {name: Child(f"train:{name}", config, log_dir, ONEDNN.get(name)) for name in TRAINERS}
    matmul = Child("matmul", config, log_dir)
    times = {seq: {name: [] for name in TRAINERS} for seq in SEQS}
    rates = {"float32": [], "bfloat16": []}
    for seq in SEQS:
        for _ in range(settings["rounds"]):
            for name, child in children.items():
                times[seq][name].append(child.ask(seq=seq, steps_per_round=settings["steps"])["seconds_per_step"])
            answer = matmul.ask(reps=10 * settings["steps"])
            for dtype in rates:
                rates[dtype].append(answer[dtype])
    peak_rss = {name: child.ask(seq=SEQS[0], steps_per_round=1)["peak_rss_gb"] for name, child in children.items()}
    for child in (*children.values(), matmul):
        child.close()
    return {"seconds_per_step": {seq: {n: statistics.median(v) for n, v in by.items()} for seq, by in times.items()},
            "raw_seconds_per_step": times,
            "matmul_gflops": {dtype: statistics.median(v) for dtype, v in rates.items()},
            "peak_rss_gb": peak_rss,
            "first_step_s": {name: child.ready["first_step_s"] for name, child in children.items()},
            "first_step_from_interpreter_s": {
                name: child.ready["first_step_at"] - (child.ready["process_start"] or child.spawned)
                for name, child in children.items()}}


def measure_sst2(config: dict, log_dir: str) -> dict:
    """Section 2 (and 3): one child per implementation, one after the other."""
    results = {}
    for name in SST2_RUNS:
        child = Child(f"sst2:{name}", config, log_dir)
        child.close()
        results[name] = {**child.ready, "examples_per_s": config["rows"] / child.ready["seconds"]}
    return results


def measure_inference(config: dict, settings: dict, log_dir: str) -> dict:
    """Section 4: the SavedModel child and the pipeline child, interleaved rounds, medians."""
    children = {name: Child(f"infer:{name}", config, log_dir) for name in ("tfbert", "torch")}
    rounds = {name: [] for name in children}
    for _ in range(settings["infer_rounds"]):
        for name, child in children.items():
            rounds[name].append(child.ask(latency_n=settings["latency_n"]))
    for child in children.values():
        child.close()
    return {name: {key: statistics.median(r[key] for r in results) for key in results[0] if key != "peak_rss_gb"}
            for name, results in rounds.items()}


def train_step_flops(hf_config: dict, batch: int, seq: int, num_classes: int = NUM_CLASSES) -> float:
    """FLOPs of one BERT classifier training step (forward + backward; the optimizer update is ignored).

    With hidden size H, intermediate size I, L layers, batch B and sequence S (T = B*S tokens), counting a
    multiply-add as 2 FLOPs:

        forward  = L * [2*T*(4*H^2 + 2*H*I)      Q, K, V, attention output and the two FFN matmuls
                        + 2 * 2*B*S^2*H]          attention scores Q.K^T and context P.V (all heads)
                   + 2*B*(H^2 + H*num_classes)    pooler and classifier
        step     = 3 * forward                    the backward pass is about 2x the forward

    Embedding lookups, softmax, LayerNorm, GELU and the optimizer are not matmuls and are left out.
    """
    h, i, layers = hf_config["hidden_size"], hf_config["intermediate_size"], hf_config["num_hidden_layers"]
    tokens = batch * seq
    forward = layers * (2 * tokens * (4 * h * h + 2 * h * i) + 2 * 2 * batch * seq * seq * h)
    forward += 2 * batch * (h * h + h * num_classes)
    return 3.0 * forward


def cpu_model() -> tuple[str, bool]:
    """The CPU model name from /proc/cpuinfo and whether it has the avx512_bf16 flag."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return model, "avx512_bf16" in flags


def machine() -> dict:
    """CPU, cores and the versions of the frameworks compared (read from package metadata, nothing imported)."""
    model, bf16 = cpu_model()
    versions = {}
    for package in ("tensorflow", "keras", "keras-hub", "torch", "transformers", "tfbert"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"cpu": model, "cores": os.cpu_count(), "avx512_bf16": bf16, "python": platform.python_version(),
            **versions}


def target(value: float, goal: float, text: str, at_most: bool = False) -> tuple[str, str]:
    """A target cell and its status: "met" when `value >= goal` (`value <= goal` with `at_most`)."""
    return text, "met" if (value <= goal if at_most else value >= goal) else "missed"


def table_rows(results: dict, hf_config: dict) -> list[tuple[str, str, str, str]]:
    """(measurement, measured, target, status) rows of the report."""
    train, sst2, infer = results["training"], results["sst2"], results["inference"]
    rows = []
    for seq in SEQS:
        step = train["seconds_per_step"][seq]
        base = step["tfbert_fp32"]
        for name, label in TRAINERS.items():
            ratio = base / step[name]
            measured, goal = f"{BATCH / step[name]:.1f} ex/s, {ratio:.2f}x tfbert float32", ("", "")
            if seq == SEQS[0] and name == "tfbert_bf16":
                goal = target(ratio, 1.6, ">= 1.60x float32")
            elif seq == SEQS[0] and name in STEP_TARGETS:
                measured += f" (tfbert float32 is {1 / ratio:.2f}x this)"
                goal = target(1 / ratio, STEP_TARGETS[name], f"tfbert float32 >= {STEP_TARGETS[name]:.2f}x this")
            rows.append((f"train step, seq {seq}: {label}", measured, *goal))
    rates = train["matmul_gflops"]
    for name, dtype in (("tfbert_fp32", "float32"), ("tfbert_bf16", "bfloat16")):
        achieved = train_step_flops(hf_config, BATCH, SEQS[0]) / train["seconds_per_step"][SEQS[0]][name] / 1e9
        share = achieved / rates[dtype]
        goal = target(share, 0.8, ">= 80%") if dtype == "float32" else ("", "")
        rows.append((f"{TRAINERS[name]} step (seq 128) / {dtype} 2048x2048 matmul",
                     f"{achieved:.0f} / {rates[dtype]:.0f} GFLOP/s = {share:.0%}", *goal))
    rows.append(("training processes, peak RSS", ", ".join(
        f"{TRAINERS[n]} {v:.2f} GB" for n, v in train["peak_rss_gb"].items()), "", ""))
    rows += sst2_rows(sst2, results["settings"]["rows"])
    tf_rate, torch_rate = infer["tfbert"]["sentences_per_s"], infer["torch"]["sentences_per_s"]
    rows.append(("inference batch 32 (SST-2 dev), tfbert SavedModel vs PyTorch pipeline",
                 f"{tf_rate:.1f} vs {torch_rate:.1f} sentences/s = {tf_rate / torch_rate:.2f}x",
                 *target(tf_rate / torch_rate, 1.5, ">= 1.50x")))
    tf_ms, torch_ms = infer["tfbert"]["latency_median_ms"], infer["torch"]["latency_median_ms"]
    rows.append(("inference batch 1 latency, median (p99), tfbert vs PyTorch",
                 f"{tf_ms:.1f} ({infer['tfbert']['latency_p99_ms']:.1f}) ms vs {torch_ms:.1f} "
                 f"({infer['torch']['latency_p99_ms']:.1f}) ms = {torch_ms / tf_ms:.2f}x (PyTorch's ms / tfbert's)",
                 *target(torch_ms / tf_ms, 1.5, ">= 1.50x")))
    for name in ("tfbert_fp32", "keras_hub"):
        seconds = train["first_step_s"][name]
        goal = target(seconds, 10.0, "<= 10 s", at_most=True) if name == "tfbert_fp32" else ("", "")
        rows.append((f"first training step, {TRAINERS[name]} (from module top; from interpreter start)",
                     f"{seconds:.1f} s; {train['first_step_from_interpreter_s'][name]:.1f} s", *goal))
    return rows


def sst2_rows(sst2: dict, rows: int) -> list[tuple[str, str, str, str]]:
    """The SST-2 epoch rows: each run's seconds, examples/s, dev accuracy and peak RSS, with tfbert's targets."""
    out = []
    tf_run = sst2["tfbert"]
    for name, label in SST2_RUNS.items():
        run = sst2[name]
        out.append((f"SST-2 {rows:,} rows, 1 epoch: {label}",
                    f"{run['seconds']:.0f} s, {run['examples_per_s']:.1f} ex/s, "
                    f"dev accuracy {run['dev_accuracy']:.4f}, peak RSS {run['peak_rss_gb']:.2f} GB", "", ""))
    for name, need in (("keras_hub", 5.0), ("torch", 1.75)):
        speedup = sst2[name]["seconds"] / tf_run["seconds"]
        out.append((f"SST-2 epoch, tfbert vs {SST2_RUNS[name]}", f"{speedup:.2f}x (its seconds / tfbert's)",
                    *target(speedup, need, f">= {need:.2f}x")))
    out.append(("SST-2 dev accuracy, tfbert", f"{tf_run['dev_accuracy']:.4f}",
                *target(tf_run["dev_accuracy"], 0.85, ">= 0.85")))
    out.append(("SST-2 peak RSS, tfbert training process", f"{tf_run['peak_rss_gb']:.2f} GB",
                *target(tf_run["peak_rss_gb"], 2.0, "<= 2.0 GB", at_most=True)))
    return out


def markdown(machine_info: dict, rows: list[tuple[str, str, str, str]]) -> str:
    """The machine line and the report table in Markdown."""
    m = machine_info
    bf16 = "yes" if m["avx512_bf16"] else "no"
    head = (f"{m['cpu']}, {m['cores']} cores, avx512_bf16 in /proc/cpuinfo flags: {bf16}; "
            f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, KerasHub {m['keras-hub']}, torch {m['torch']}, "
            f"transformers {m['transformers']}, Python {m['python']}\n\n")
    lines = ["| measurement | measured | target | status |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return head + "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced run of a few minutes")
    size.add_argument("--smoke", action="store_true", help="a functional check; the numbers mean nothing")
    for flag in SETTINGS["full"]:
        parser.add_argument(f"--{flag}", type=int, help="override the size's setting")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "tfbert-compare"))
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_config", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args._child:
        return run_child(args._child, json.loads(args._config))
    missing = [m for m in ("keras_hub", "torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"benchmarks/compare.py needs {', '.join(missing)}: pip install --use-pep517 -e \".[bench]\"")
    if not os.path.isdir(SST2):
        raise SystemExit(f"benchmarks/compare.py needs SST-2 at {os.path.normpath(SST2)} (see ../shared/data)")
    from tfbert.checkpoints.presets import resolve  # no TensorFlow import: the parent stays light

    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    settings = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in SETTINGS[size].items()}
    out, log_dir = os.path.abspath(args.out), os.path.join(os.path.abspath(args.out), "logs")
    os.makedirs(log_dir, exist_ok=True)
    checkpoint = resolve(PRESET)
    with open(os.path.join(checkpoint, "config.json"), encoding="utf-8") as f:
        hf_config = json.load(f)
    config = {"checkpoint": checkpoint, "rows": settings["rows"], "dev_rows": settings["dev_rows"],
              "hf_dir": os.path.join(out, "hf-sst2"), "export_base": os.path.join(out, "export-sst2")}
    results = {"machine": machine(), "size": size, "settings": settings, "recipe": RECIPE}
    results["training"] = measure_training(config, settings, log_dir)
    results["sst2"] = measure_sst2(config, log_dir)
    config["export_dir"] = results["sst2"]["tfbert"]["export_dir"]
    results["inference"] = measure_inference(config, settings, log_dir)
    results["rows"] = table_rows(results, hf_config)
    report = markdown(results["machine"], results["rows"])
    print(report)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
    print(f"\n(results: {os.path.join(out, 'results.json')}; child logs: {log_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
