"""The one runner: fine-tunes any task's model end to end and writes the run's outputs.

`train(config)` is what every training pipeline runs (`train_cls.py`, `train_ner.py`); the task comes
from the config (`config.TASK`, a `tfbert.tasks` task) and supplies its data, features, head, loss and
metrics, its files and its SavedModel. Everything else is here, once: seeding and determinism, the
distribution strategy, the optimizer recipe, `fit` with `BackupAndRestore` resume, the best epoch and
early stopping, TensorBoard, the run directory, metrics.json and config.yaml, the Hugging Face export
and the SavedModel export. A hyperparameter search (`tfbert.tuning`) runs trials through the same
functions: `prepare` once, then `start_run` + `fit_and_evaluate` per trial, `finish_run` for the best.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import operator
import os
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfbert import fileio
from tfbert.config import ConfigError
from tfbert.data import pipeline
from tfbert.export import find_versions, has_lora, merged_copy, next_version
from tfbert.tasks import Task, TaskData, task_for
from tfbert.text import BertTokenizer
from tfbert.training import callbacks as cbs
from tfbert.training import distribution, finished_run, parameter_efficient, resume, tensorboard_logs
from tfbert.training.optimization import create_optimizer
from tfbert.training.run_config import (RunConfig, check_unused_fields, with_new_fields,
                                        without_placement)

logger = logging.getLogger("tfbert")

# What training tells metrics.json about itself (before the evaluation results); a search's best model,
# exported from its trial's weights, takes them from the trial's metrics.json.
TRAINING_FACTS = ("best_metric", "steps_per_epoch", "replicas", "resumed_from_epoch", "resumed_from_batch",
                  "epochs_run", "optimizer_steps", "parameters", "examples_per_second", "before_training")


def _dtype_policy(config: RunConfig) -> str | None:
    return None if config.mixed_precision == "none" else config.mixed_precision


def build_model(config: RunConfig, task: Task, data: TaskData, total_steps: int,
                batch_spec=None, vocab_size: int | None = None) -> keras.Model:
    """The task's model with the optimizer, loss and training metrics compiled in, built in the scope
    of the run's `tf.distribute` strategy (`config.strategy`), which Keras then uses for fit and predict.
    With `batch_spec` (a training dataset's `element_spec`) the training state is built too (see
    `build_training_state`).

    Raises:
        ConfigError: `max_seq_length` longer than the model's positions, or a tokenizer (of
            `vocab_size` tokens) with ids past the model's embeddings: before any training.
    """
    with distribution.strategy_for(config).scope():
        model = task.build_model(config, data, _dtype_policy(config))
        check_model_fits(config, model.backbone.config, vocab_size)
        model.backbone.skip_padding = skips_padding(config, task)
        parameter_efficient.apply_to_model(
            model, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, lora_targets=config.lora_targets,
            freeze_layers=config.freeze_layers, freeze_embeddings=config.freeze_embeddings)
        optimizer = create_optimizer(
            model, learning_rate=config.learning_rate, total_steps=total_steps, warmup_ratio=config.warmup_ratio,
            schedule=config.lr_scheduler_type, clipnorm=config.max_grad_norm or None,
            weight_decay=config.weight_decay, layerwise_lr_decay=config.layerwise_lr_decay,
            epsilon=config.adam_epsilon, num_layers=model.backbone.config.num_hidden_layers,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            loss_scale=config.mixed_precision == "mixed_float16")
        model.compile(optimizer=optimizer, loss=task.loss(model), metrics=task.train_metrics(config),
                      jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
        if batch_spec is not None:
            build_training_state(model, batch_spec)
    return model


def check_model_fits(config: RunConfig, bert_config, vocab_size: int | None) -> None:
    """`build_model`'s checks of the run's inputs against the model (see there)."""
    positions = bert_config.max_position_embeddings
    if config.max_seq_length > positions:
        raise ConfigError(f"max_seq_length: {config.max_seq_length} exceeds the model's max_position_embeddings "
                          f"({positions}, {config.model}); pass --max_seq_length {positions} or less")
    if vocab_size is not None and vocab_size > bert_config.vocab_size:
        raise ConfigError(f"{config.model}: the tokenizer's vocabulary (vocab.txt) has {vocab_size} tokens, the "
                          f"model's embeddings {bert_config.vocab_size} (config.json vocab_size): the vocabulary "
                          "does not belong to this model")


def skips_padding(config: RunConfig, task: Task) -> bool:
    """`--skip_padding`, where it can apply: not with static shapes (the token count changes from batch to
    batch, which TPUs cannot compile), not under `--jit_compile` (XLA would compile every batch), not for a
    task whose loss reads padded positions."""
    return (config.skip_padding and task.skips_padding and not config.uses_static_shapes()
            and not config.jit_compile)


def build_training_state(model: keras.Model, batch_spec) -> None:
    """Creates the optimizer's slots and the loss and metric variables now, from the shapes and dtypes of
    a training batch (`batch_spec`: a dataset's `element_spec`), in the current strategy scope.

    Without a `tf.distribute` strategy Keras creates them inside the first traced training step, and a
    `tf.function` that creates variables is traced a second time without them: the whole forward and
    backward graph twice. For MiniLM that was 4.5 of the first step's 11 seconds (issue 12). Keras'
    own symbolic build does the work; it runs on the KerasTensors it makes from `batch_spec`."""
    model._symbolic_build(data_batch=batch_spec)


@dataclasses.dataclass
class PreparedData:
    """What every run on the same data shares: the task, its examples, the tokenizer, the evaluation batches.

    `prepare` builds it once; a hyperparameter search hands it to every trial, so the data is
    read and the tokenizer loaded once per search. The validation and test datasets are not
    shuffled, so they are cached per (batch size, max_seq_length, padding) and reused. The
    training dataset is built again for every run: a shuffled `tf.data` pipeline continues its
    shuffle sequence when it is iterated again, so a reused one would give a second run other
    batches than a fresh run with the same seed.
    """

    task: Task
    data: TaskData
    tokenizer: BertTokenizer
    _eval_datasets: dict = dataclasses.field(default_factory=dict, repr=False)
    _truncation: dict = dataclasses.field(default_factory=dict, repr=False)

    def truncation_report(self, max_seq_length: int) -> dict:
        """The task's truncation report of the training examples, computed once per length."""
        if max_seq_length not in self._truncation:
            self._truncation[max_seq_length] = self.task.truncation_report(self.data, self.tokenizer,
                                                                           max_seq_length)
        return self._truncation[max_seq_length]

    def dataset(self, split: str, config: RunConfig) -> tf.data.Dataset:
        """The batched (features, labels) dataset of `split` ("train", "validation" or "test")."""
        def build():
            return self.task.make_dataset(self.data, split, self.tokenizer, config, training=split == "train")

        if split == "train":
            return build()
        key = (split, config.batch_size, config.max_seq_length, config.padding, config.uses_static_shapes())
        if key not in self._eval_datasets:
            self._eval_datasets[key] = build()
        return self._eval_datasets[key]


@dataclasses.dataclass
class RunInputs:
    """A compiled model and the datasets of one run, built by `start_run`."""

    model: keras.Model
    train: tf.data.Dataset
    validation: tf.data.Dataset | None  # None: no validation split (--validation_fraction 0)
    steps_per_epoch: int
    # `train` built again: a dataset whose shuffle has not drawn an order yet (`resume.fit_from`)
    rebuild_train: Callable[[], tf.data.Dataset] | None = None


def prepare(config: RunConfig) -> PreparedData:
    """Reads (and checks) every split and loads the tokenizer a run config names; prints what was read."""
    task = task_for(config)
    check_unused_fields(config)
    data = task.load_data(config)
    strategy = distribution.strategy_for(config)
    output_dir = config.resolved_output_dir()
    work_dir = (output_dir if distribution.is_chief(strategy)
                else os.path.join(output_dir, f"worker-{distribution.worker_index(strategy)}"))
    if has_validation(data):
        best_metric_of(config, task)  # an unknown --metric_for_best fails here, before any training
    prepared = PreparedData(task, data, task.load_tokenizer(config, data, work_dir))
    print(f"data: {data.description}: train {len(data.train)}, validation {_size(data.validation)}, "
          f"test {len(data.test) if data.test else 0}; {describe_truncation(prepared, config.max_seq_length)}",
          flush=True)
    return prepared


def describe_truncation(prepared: PreparedData, max_seq_length: int) -> str:
    """"T of N training examples truncated at L tokens[, W split into overlapping windows]"."""
    truncation = prepared.truncation_report(max_seq_length)
    if truncation.get("joined"):  # masked LM's documents
        return f"{truncation['examples']} training documents joined and cut into blocks of {max_seq_length} tokens"
    return (f"{truncation['truncated']} of {truncation['examples']} training examples truncated at {max_seq_length} "
            "tokens" + (f", {truncation['windowed']} split into overlapping windows" if truncation.get("windowed")
                        else ""))


def start_run(config: RunConfig, prepared: PreparedData) -> RunInputs:
    """Seeds everything, builds the run's datasets and its compiled model (see `build_model`)."""
    strategy = distribution.strategy_for(config)
    distribution.check_run_fits(strategy, config.batch_size, config.steps_per_execution)
    print(distribution.describe(strategy, config.batch_size), flush=True)
    seed_everything(config)

    def training_batches() -> tf.data.Dataset:
        train = prepared.dataset("train", config)
        return shard_by_data(train) if distribution.is_multi_worker(strategy) else train

    train_ds = training_batches()
    validation_ds = prepared.dataset("validation", config) if has_validation(prepared.data) else None
    steps = pipeline.count_batches(train_ds)
    if steps == 0:  # only when partial batches are dropped (config.batching)
        raise ConfigError(f"batch_size: {config.batch_size} is more than the training examples of any batch (length "
                          "bucket); this run trains on whole batches only (static shapes or multi_worker), so lower "
                          "--batch_size")
    lengths = pipeline.static_lengths(config.max_seq_length, config.padding)
    if config.uses_static_shapes():
        print(f"static shapes: batches of {config.batch_size} x {', '.join(map(str, lengths))} tokens, "
              f"{len(lengths)} shape{'s' if len(lengths) > 1 else ''} to compile; training drops each epoch's "
              "partial batches, evaluation pads them", flush=True)
    elif config.jit_compile and config.padding != "max_length":
        print(f"XLA: one program is compiled per batch shape (length and batch size); --static_shapes bounds them "
              f"to {len(lengths)}", flush=True)
    total_updates = check_updates(config, steps)
    model = build_model(config, prepared.task, prepared.data, total_updates, batch_spec=train_ds.element_spec,
                        vocab_size=prepared.tokenizer.vocab_size)
    counts = parameter_efficient.parameter_counts(model)
    print(f"parameters: {counts['trainable']:,} trainable of {counts['total']:,} "
          f"({counts['trainable'] / max(counts['total'], 1):.2%})", flush=True)
    return RunInputs(model, train_ds, validation_ds, steps, rebuild_train=training_batches)


def check_updates(config: RunConfig, steps: int) -> int:
    """The optimizer updates of a run of `steps` batches per epoch: one per `gradient_accumulation_steps`
    batches (`optimization.create_optimizer`), said when the last batches fill no group.

    Raises:
        ConfigError: the run has fewer batches than one update takes, so it would train nothing.
    """
    batches, group = steps * config.epochs, config.gradient_accumulation_steps
    if batches < group:
        raise ConfigError(f"gradient_accumulation_steps: {group} batches per optimizer update, but the run has "
                          f"{steps} batch{'es' if steps > 1 else ''} per epoch x {config.epochs} epoch"
                          f"{'s' if config.epochs > 1 else ''} = {batches}: it would make no update; lower "
                          "gradient_accumulation_steps or batch_size, or train more epochs (the flags, or a "
                          "search's space)")
    if batches % group:
        left = "the last batch of the run fills no group and is not" if batches % group == 1 else \
            f"the last {batches % group} batches of the run fill no group and are not"
        updates = batches // group
        print(f"gradient accumulation: {updates} update{'s' if updates > 1 else ''} of {group} batches; {left} applied",
              flush=True)
    return batches // group


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The training batches of a multi-worker run: each worker takes its share of every global batch
    (`AutoShardPolicy.DATA`), so the workers together take the steps of one process with the same
    global batch. The batches are whole (`RunConfig.batching` drops partial ones there), so no worker
    is ever left without examples."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def check_backup_matches(backup_dir: str, config: RunConfig) -> None:
    """Refuses to resume an interrupted run that was started with other settings.

    The default output directory is named after the data and the model only, so a second command
    with other hyperparameters would otherwise silently continue the first run. The run's config is
    kept beside the backup (both are deleted once the run has written its outputs).

    Raises:
        ConfigError: the backup belongs to a run with other settings (the fields are named).
    """
    import yaml

    path = os.path.join(backup_dir, "run_config.yaml")
    current = without_placement(config.to_dict(), "output_dir", "log_dir", "run_name")
    # A TPU has static shapes whatever the flag says: other batches, so a run that cannot change devices.
    current["static_shapes"] = config.uses_static_shapes()
    # the same data file with other contents is other data (and the same contents under another path, the same)
    prefix, contents = "contents of ", config.data_fingerprints()
    current.update({prefix + name: value for name, value in contents.items()})
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = yaml.safe_load(f) or {}
        saved_contents = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
        saved = with_new_fields(type(config), saved, current)
        moved = config.moved_data_files(saved, current, saved_contents, contents)
        changed = sorted(k for k in current if saved.get(k) != current[k] and k not in moved
                         and not (k.startswith(prefix) and k not in saved))
        if changed:
            # to resume: the settings it started with (its flags, and its data files' contents as they were)
            data = [k[len(prefix):] for k in changed if k.startswith(prefix)]
            again = ("restore " + " and ".join(f"the contents {name} had" for name in data)
                     + (" and run the command it started with" if len(data) < len(changed) else "")
                     if data else "run the command it started with")
            raise ConfigError(
                f"{backup_dir}: holds an interrupted run started with other settings "
                f"({', '.join(f'{k}: {saved.get(k)!r} -> {current[k]!r}' for k in changed)}); to resume it, "
                f"{again}; or pass another --output_dir, or delete {backup_dir} to start over")
        return
    os.makedirs(backup_dir, exist_ok=True)
    with fileio.atomic_write(path) as f:
        yaml.safe_dump(current, f, sort_keys=True)


def check_backup_fits(backup_dir: str, model: keras.Model, resuming: bool) -> None:
    """Refuses to resume onto a model whose variables differ from the backup's: the same settings
    but other data (a label added to the training file gives the head another shape), which Keras
    would report as a bare weight-loading error. The shapes are kept beside the backup (written
    when a run starts, compared when it resumes).

    Raises:
        ConfigError: the first variables that differ, named, and what to do.
    """
    path = os.path.join(backup_dir, "model_variables.json")
    current = {v.path: list(v.shape) for v in model.weights}
    if resuming and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        changed = [f"{name}: {saved.get(name)} -> {current.get(name)}" for name in sorted(set(saved) | set(current))
                   if saved.get(name) != current.get(name)]
        if changed:
            raise ConfigError(f"{backup_dir}: holds an interrupted run whose model had other variables "
                              f"({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''}): the data changed "
                              "(e.g. its labels); pass another --output_dir, or delete the backup folder to start over")
        return
    os.makedirs(backup_dir, exist_ok=True)
    fileio.write_json(path, current)


def seed_everything(config: RunConfig) -> None:
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
    return "min" if bare in ("loss", "mse", "mae", "rmse", "perplexity") or bare.endswith(("_loss", "_error")) \
        else "max"


def has_validation(data: TaskData) -> bool:
    return data.validation is not None and len(data.validation) > 0


def _size(examples) -> int:
    return len(examples) if examples is not None else 0


def move_aside_old_logs(log_dir: str, held: str = "an earlier run's logs") -> None:
    """A fresh run (not a resume), or a resumed one whose folder another run has taken since, never writes
    into another run's TensorBoard folder, where its curves would mix with the other's: a non-empty folder
    is renamed `<log_dir>.old-<time>` (and reported)."""
    if os.path.isdir(log_dir) and os.listdir(log_dir):
        old = f"{os.path.normpath(log_dir)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.rename(log_dir, old)
        print(f"TensorBoard: {log_dir} held {held}; moved them to {old}", flush=True)


def validation_metric_names(config: RunConfig, task: Task | None = None) -> list[str]:
    """The `val_*` metrics a run of the config's task reports each epoch, plus `val_loss`."""
    return sorted({f"val_{name}" for name in (task or task_for(config)).metric_names(config)} | {"val_loss"})


def say_finished_run_is_trained_again(output_dir: str) -> None:
    """The same command after a run finished trains it again (to serve a new version, say): said, with
    what is replaced and what stays, so that a command run again by mistake does not pass unnoticed."""
    finished = os.path.join(output_dir, "metrics.json")  # written last: the run finished
    if not os.path.exists(finished):
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(finished)))
    kept = find_versions(os.path.join(output_dir, "saved_model"))
    print(f"{output_dir} holds a run that finished on {when}: training again from the start; its metrics.json and "
          "model files are replaced" + (f", its SavedModel versions ({', '.join(map(str, kept))}) stay and this "
                                        "run's is the next" if kept else "")
          + (", its evaluations/ (of the earlier model) stay" if os.path.isdir(os.path.join(output_dir, "evaluations"))
             else "")
          + " (--output_dir or --run_name for a run folder of its own)", flush=True)


def best_metric_of(config: RunConfig, task: Task | None = None) -> str:
    """`--metric_for_best`, else the task's default (e.g. val_accuracy, val_f1).

    Raises:
        ConfigError: `--metric_for_best` is not a metric the run reports (names the ones it does).
    """
    known = validation_metric_names(config, task) + ["loss"]  # (the training loss, as Keras logs it, too)
    if config.metric_for_best and config.metric_for_best not in known:
        raise ConfigError(f"metric_for_best: {config.metric_for_best} is not a metric of a "
                          f"{(task or task_for(config)).name} run; choose one of {', '.join(known)}")
    return config.metric_for_best or (task or task_for(config)).default_best_metric(config)


def train(config: RunConfig) -> dict:
    """Runs one fine-tuning job of the config's task; returns what it writes to `metrics.json`.

    Re-running the same command after a crash (or `kill -9`) resumes from the last backup: the model
    and optimizer state are backed up under `<output_dir>/backup/` at every epoch end (Keras'
    `BackupAndRestore`) and every `backup_every_n_steps` batches within an epoch (`resume.StepBackup`).
    """
    started = time.time()
    strategy = distribution.strategy_for(config)  # first: splitting the CPU into devices must precede any TF op
    # (start_run checks it again, for a search's trials; here before the data is read)
    distribution.check_run_fits(strategy, config.batch_size, config.steps_per_execution)
    if distribution.is_chief(strategy):  # a folder another run holds: refused before the data is read
        fileio.check_free(config.resolved_output_dir(), "training run")
    # a run refused before it trains (its data, its settings) leaves no empty run folder
    with fileio.made_dirs(config.resolved_output_dir()):
        seed_everything(config)
        prepared = prepare(config)
        return fit_and_evaluate(config, prepared, started=started)


def fit_and_evaluate(config: RunConfig, prepared: PreparedData, inputs: RunInputs | None = None, *,
                     best_weights: str | None = None, extra_callbacks: tuple = (), write_exports: bool = True,
                     evaluate_test: bool = True, started: float | None = None,
                     export_version: int | None = None, shown_as: str | None = None,
                     hparams_session: bool = True) -> dict:
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
        export_version: the SavedModel's version under `saved_model/` (default: the next free one).
        shown_as: the folder the outputs are moved to once written (a search's best model, written in a
            hidden folder and swapped in whole): the paths printed, and the summary's `saved_model`,
            name it instead of `output_dir`.
        hparams_session: write the run's session for TensorBoard's HParams tab (its config fields and final
            metrics); a search's best model has none, as its trial has one in the search's experiment.

    Returns:
        The run summary, also written to `<output_dir>/metrics.json`.
    """
    started = time.time() if started is None else started
    output_dir = config.resolved_output_dir()
    with fileio.made_dirs(output_dir):  # (a run refused before training leaves no empty run folder)
        inputs = inputs or start_run(config, prepared)
    # Only the chief writes the run's outputs (in a multi-worker cluster every worker keeps a backup of
    # its own, in its own folder); it holds the folder's lock, so that a second run started on the same
    # --output_dir is refused instead of mixing its backup, logs and exports with the first one's.
    chief = distribution.is_chief(inputs.model.distribute_strategy)
    with fileio.lock_dir(output_dir, "training run") if chief else contextlib.nullcontext():
        if chief:
            fileio.remove_leftovers(output_dir)  # a killed run's temporary files
        return _fit_and_evaluate(config, prepared, inputs, best_weights=best_weights,
                                 extra_callbacks=extra_callbacks, write_exports=write_exports,
                                 evaluate_test=evaluate_test, started=started, export_version=export_version,
                                 shown_as=shown_as, hparams_session=hparams_session)


def _fit_and_evaluate(config: RunConfig, prepared: PreparedData, inputs: RunInputs, *, best_weights, extra_callbacks,
                      write_exports, evaluate_test, started, export_version, shown_as, hparams_session) -> dict:
    output_dir, log_dir = config.resolved_output_dir(), config.resolved_log_dir()
    model, steps = inputs.model, inputs.steps_per_epoch
    strategy = model.distribute_strategy
    chief, worker = distribution.is_chief(strategy), distribution.worker_index(strategy)
    backup_dir = os.path.join(output_dir, "backup" if chief else f"backup-worker-{worker}")
    metadata = os.path.join(backup_dir, "training_metadata.json")
    fileio.remove_leftovers(backup_dir)  # a backup being written when the run was killed
    check_backup_complete(backup_dir)
    check_backup_matches(backup_dir, config)
    epochs_done = _epoch_count(metadata) or 0  # (whole: check_backup_complete mended or refused it)
    start = resume.read_position(backup_dir, epochs_done)
    check_backup_fits(backup_dir, model, resuming=os.path.exists(metadata) or start.batch > 0)
    # The chief keeps its backup until the outputs are written (Keras would delete it when training
    # ends): a run killed during the test evaluation or the export resumes there, without training again.
    trained = os.path.join(backup_dir, "training_done.json")
    # the workers of a cluster resume from the point they all hold (else from an earlier one, together),
    # or, when the chief's backup says training had finished, from there, training nothing
    finished_here = chief and os.path.exists(trained) and os.path.exists(metadata)
    *position, training_done = distribution.same_position(strategy, (start.epoch, start.batch), epochs_done,
                                                          backup_dir, finished_here)
    start = resume.Position(*position)
    resumed_from_epoch = start.epoch
    resuming = start != resume.Position(0)
    if training_done and not chief:  # the chief evaluates and exports alone: this worker has nothing to join
        print(f"worker {worker}: training had finished ({resumed_from_epoch} epoch(s)) on the chief; nothing to "
              "train", flush=True)
        # (a backup of an earlier point, from a worker stopped before its last epoch's backup, would make
        # Keras' BackupAndRestore train this worker from there, alone)
        fileio.remove_dir(backup_dir)
        return {"worker": worker, "epochs_run": 0, "optimizer_steps": None}
    if resuming:
        print(f"resuming from the backup in {backup_dir}: {start.describe(steps)} already done", flush=True)
    if chief and resuming:
        writer = tensorboard_logs.owner(log_dir)
        if writer not in (None, os.path.abspath(output_dir)):
            move_aside_old_logs(log_dir, f"the logs of the run in {writer}, started there since this one was stopped")
        else:  # the killed run's points past the backup would be logged a second time
            updates = (start.epoch * steps + start.batch) // max(1, config.gradient_accumulation_steps)
            tensorboard_logs.drop_points_after(log_dir, start.epoch, updates)
    elif chief:
        say_finished_run_is_trained_again(output_dir)
        move_aside_old_logs(log_dir)
    if chief:
        tensorboard_logs.claim(log_dir, output_dir)

    task = prepared.task
    validating = inputs.validation is not None
    # Without a validation split the last epoch is kept (as transformers' Trainer does without evaluation).
    best_metric = best_metric_of(config, task) if validating else None
    mode = metric_direction(best_metric) if validating else None
    # The validation loss is computed only when it picks the best epoch (the default metrics omit it).
    with_loss = best_metric == "val_loss"
    best_weights = best_weights or os.path.join(output_dir, "best.weights.h5")
    epochs = config.epochs
    if training_done:
        epochs = resumed_from_epoch  # fit restores the last epoch's weights (on the chief) and trains none
    if training_done and chief:
        print(f"training had finished ({resumed_from_epoch} epoch(s)); evaluating and writing the outputs",
              flush=True)
    callbacks = [keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch", double_checkpoint=True,
                                                  delete_checkpoint=not chief)]
    every_n_steps = config.backup_every_n_steps if resume.divides(steps, config.steps_per_execution) else 0
    if every_n_steps or start.batch:  # (a backup within an epoch is restored even when no more are taken)
        callbacks.append(resume.StepBackup(backup_dir, every_n_steps, steps, start))
    if config.backup_every_n_steps and not every_n_steps and config.backup_every_n_steps < steps:
        print(f"backups at epoch ends only: --steps_per_execution {config.steps_per_execution} does not divide "
              f"an epoch's {steps} batches (--backup_every_n_steps needs it to)", flush=True)
    training_logger = None
    if chief:
        training_logger = cbs.TrainingLogger(log_dir, config.batch_size, config.log_every_n_steps)
        callbacks += [keras.callbacks.TensorBoard(log_dir, write_graph=False, update_freq="epoch"), training_logger]
    if validating:
        # Every worker evaluates (not only the chief), so that early stopping ends all of them at once.
        callbacks[:0] = [cbs.ValidationMetrics(lambda m: task.evaluate(
            m, inputs.validation, prepared.data, "validation", prepared.tokenizer, config, with_loss=with_loss))]
    if validating and chief:
        best_record = os.path.join(backup_dir, "best_value.json")
        best_so_far = cbs.RecordBestValue.read(best_record, best_metric) if resumed_from_epoch else None
        checkpoint = cbs.AtomicModelCheckpoint(best_weights, monitor=best_metric, mode=mode,
                                               save_best_only=True, save_weights_only=True, verbose=0,
                                               initial_value_threshold=best_so_far)
        callbacks[1:1] = [checkpoint, cbs.RecordBestValue(checkpoint, best_record)]
    if config.early_stopping_patience and validating:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=best_metric, mode=mode,
                                                       patience=config.early_stopping_patience,
                                                       restore_best_weights=True))
    callbacks.extend(extra_callbacks)
    before = evaluate_before_training(config, prepared, inputs, backup_dir, log_dir) if validating and chief else None
    try:
        history = resume.fit_from(model, inputs.train, start, epochs=epochs, steps=steps, callbacks=callbacks,
                                  steps_per_execution=config.steps_per_execution,
                                  rebuild_train=inputs.rebuild_train)
    except distribution.LOST_WORKER_ERRORS as e:
        if not distribution.is_multi_worker(strategy):
            raise
        raise distribution.lost_worker(e, backup_dir) from None
    optimizer_steps = int(model.optimizer.iterations.numpy())  # before the best weights (and their
    # optimizer state, which .weights.h5 files include) are loaded back

    if not chief:
        print(f"worker {worker}: training done; the chief (worker 0) writes the outputs", flush=True)
        return {"worker": worker, "epochs_run": len(history.epoch), "optimizer_steps": optimizer_steps}
    if os.path.exists(metadata):  # (an early-stopped run, resumed, must not train on where it stopped)
        fileio.write_json(trained, {"epochs": _epoch_count(metadata)})
    if validating and os.path.exists(best_weights):
        model.load_weights(best_weights)
    summary = {
        "best_metric": best_metric,
        "steps_per_epoch": steps,
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "resumed_from_epoch": resumed_from_epoch,
        "resumed_from_batch": start.batch,
        "epochs_run": len(history.epoch),
        "optimizer_steps": optimizer_steps,
        "parameters": parameter_efficient.parameter_counts(model),
        "examples_per_second": (float(np.median(training_logger.examples_per_second))
                                if training_logger.examples_per_second else None),
    }
    if before is not None:
        summary["before_training"] = before
    if write_exports:
        export_version = recorded_export_version(backup_dir, os.path.join(output_dir, "saved_model"), export_version)
    summary = finish_run(model, config, prepared, summary, validation_dataset=inputs.validation,
                         write_exports=write_exports, evaluate_test=evaluate_test, started=started,
                         with_loss=with_loss, export_version=export_version, shown_as=shown_as,
                         hparams_session=hparams_session)
    fileio.remove_dir(backup_dir)  # every output is written: nothing left to resume
    return summary


def check_backup_complete(backup_dir: str) -> None:
    """Mends or refuses an epoch backup (Keras' `BackupAndRestore`) that lacks a part.

    Keras writes an epoch's weights in place, then `training_metadata.json` (after copying both to
    `.bkp`). A run killed while it wrote its first epoch's backup leaves weights (whole or not) without
    an epoch count: they are discarded (the run resumes from its step backup or from the start). One
    killed while writing an epoch count leaves a file that is not JSON beside whole weights (Keras
    opens it once they are written): the count is written again, one more than the previous one (the
    `.bkp`), or 1 with none. Both are said. An epoch count without any weights (Keras would resume onto
    the untrained model), or weights without an epoch count beside a previous one (not a state Keras
    leaves: files deleted by hand) are refused.

    Raises:
        ConfigError: naming the backup and what to do.
    """
    weights = [os.path.join(backup_dir, name) for name in ("latest.weights.h5", "latest.weights.h5.bkp")]
    metadata = os.path.join(backup_dir, "training_metadata.json")
    previous = metadata + ".bkp"
    if os.path.exists(metadata) and _epoch_count(metadata) is None and os.path.exists(weights[0]):
        epoch = (_epoch_count(previous) or 0) + 1
        fileio.write_json(metadata, {"epoch": epoch, "batch": 0})
        print(f"{metadata}: cut short when the run was stopped, after that epoch's weights were written: "
              f"written again ({epoch} epoch(s) done)", flush=True)
        return
    has_weights, has_metadata = any(map(os.path.exists, weights)), os.path.exists(metadata)
    if has_weights and not has_metadata and not os.path.exists(previous):
        for path in weights:  # the first epoch's backup, being written when the run was stopped
            if os.path.exists(path):
                os.remove(path)
        print(f"{backup_dir}: weights without an epoch count, as a run stopped while writing its first epoch's "
              f"backup leaves them: discarded (the run resumes from a backup within that epoch if it has one)",
              flush=True)
        return
    if has_weights != has_metadata:
        lacking = "latest.weights.h5" if has_metadata else "training_metadata.json"
        raise ConfigError(f"{backup_dir}: an incomplete backup (no {lacking}): it cannot be resumed; delete "
                          f"{backup_dir} to train from the start")


def _epoch_count(path: str) -> int | None:
    """The epoch of a `training_metadata.json` (or its `.bkp`), or None: missing, or not whole."""
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_export_version(backup_dir: str, base_dir: str, version: int | None) -> int:
    """The SavedModel version a run writes, kept in its backup before the export starts: a run killed
    after its export (before the backup was removed) writes the same version again when resumed,
    instead of a copy under the next number. Default: the next free version of `base_dir`."""
    record = os.path.join(backup_dir, "export_version.json")
    if os.path.exists(record):
        with open(record, encoding="utf-8") as f:
            return int(json.load(f)["version"])
    version = version if version is not None else next_version(base_dir)
    fileio.write_json(record, {"version": version})
    return version


BEFORE_TRAINING_STEP = -1  # TensorBoard's step of the untrained model's figures: the first epoch's is 0


def evaluate_before_training(config: RunConfig, prepared: PreparedData, inputs: RunInputs, backup_dir: str,
                             log_dir: str) -> dict | None:
    """The validation metrics of the untrained model, for tasks that ask (`Task.evaluate_before_training`):
    printed, written to TensorBoard and kept in the backup folder, so a resumed run reports the same figures.
    TensorBoard: run `<log_dir>/before_training`, the tags of Keras' epoch scalars (`epoch_loss`, ...) at
    step -1, one before the first epoch's (Keras counts epochs from 0), so the charts put it before it."""
    if not prepared.task.evaluate_before_training:
        return None
    record = os.path.join(backup_dir, "before_training.json")
    if os.path.exists(record):
        with open(record, encoding="utf-8") as f:
            return json.load(f)
    metrics = prepared.task.evaluate(inputs.model, inputs.validation, prepared.data, "validation",
                                     prepared.tokenizer, config)
    metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    os.makedirs(backup_dir, exist_ok=True)
    print("before training, validation: " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
    with tf.summary.create_file_writer(os.path.join(log_dir, "before_training")).as_default():
        for name, value in metrics.items():
            tf.summary.scalar(f"epoch_{name}", value, step=BEFORE_TRAINING_STEP)
    fileio.write_json(record, metrics)
    return metrics


def finish_run(model: keras.Model, config: RunConfig, prepared: PreparedData, summary: dict, *,
               validation_dataset: tf.data.Dataset | None = None, write_exports: bool = True,
               evaluate_test: bool = True, started: float | None = None, with_loss: bool = False,
               export_version: int | None = None, shown_as: str | None = None,
               hparams_session: bool = True) -> dict:
    """Evaluates a trained model on validation (and test) and writes the run's outputs.

    `fit_and_evaluate` ends with it; a search calls it on the best trial's weights to export them
    as a train_cls run directory. `summary` holds the training facts (steps, epochs run, ...).
    `shown_as`, `hparams_session`: as in `fit_and_evaluate`.
    """
    started = time.time() if started is None else started
    output_dir = config.resolved_output_dir()
    os.makedirs(output_dir, exist_ok=True)
    data, task = prepared.data, prepared.task
    results = {}
    if has_validation(data):
        validation_dataset = validation_dataset or prepared.dataset("validation", config)
        results["validation"] = task.evaluate(model, validation_dataset, data, "validation", prepared.tokenizer,
                                              config, with_loss=with_loss)
    if data.test is not None and evaluate_test:
        results["test"] = task.evaluate(model, prepared.dataset("test", config), data, "test", prepared.tokenizer,
                                        config, with_loss=with_loss)
    print_results(results)
    truncation = prepared.truncation_report(config.max_seq_length)
    summary = {
        "run_name": config.resolved_run_name(),
        "data": data.description,
        "num_examples": {"train": len(data.train), "validation": _size(data.validation),
                         "test": len(data.test) if data.test else 0},
        "truncation": truncation,
        **summary,
        "seconds": round(time.time() - started, 1),
        "label_vocab": data.label_names,
        "config": config.to_dict(),
        **{k: {m: v for m, v in r.items() if m != "report"} for k, r in results.items()},
    }
    if write_exports:
        # metrics.json says the folder holds a finished run (written last): gone before the first output is
        # replaced, so that a run stopped while writing them is not taken for the earlier one (export, evaluate)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(output_dir, "metrics.json"))
        write_outputs(model, prepared, config, results, shown_as, hparams_session)
        written = (os.path.abspath(os.path.join(output_dir, "saved_model", str(export_version)))
                   if export_version is not None else None)
        before = bool(written and os.path.isdir(written))  # written whole (exports are atomic), then killed
        if not before:
            written = task.export(model, prepared.tokenizer, data, config, os.path.join(output_dir, "saved_model"),
                                  version=export_version)
        summary["saved_model"] = _shown(written, output_dir, shown_as)  # where it is served from
        print(f"SavedModel for TF Serving: {summary['saved_model']}"
              + (" (written before the run was stopped)" if before else ""), flush=True)
    fileio.write_json(os.path.join(output_dir, "metrics.json"), summary, default=float)
    return summary


def print_results(results: dict) -> None:
    """Each split's numbers on a line (`test: accuracy=0.9640  macro_f1=...`), then its report (NER's
    per-type table, ...)."""
    for split, split_metrics in results.items():
        shown = "  ".join(f"{k}={v:.4f}" for k, v in split_metrics.items() if isinstance(v, float))
        print(f"{split}: {shown}", flush=True)
        if "report" in split_metrics:
            print(split_metrics["report"], flush=True)


def _shown(path: str, output_dir: str, shown_as: str | None) -> str:
    """`path` (in `output_dir`) as it will be named once the folder is moved to `shown_as`."""
    if not shown_as:
        return path
    moved = os.path.join(shown_as, os.path.relpath(path, output_dir))
    return os.path.abspath(moved) if os.path.isabs(path) else os.path.normpath(moved)


def write_outputs(model: keras.Model, prepared: PreparedData, config: RunConfig, results: dict,
                  shown_as: str | None = None, hparams_session: bool = True) -> None:
    """config.yaml, model.keras, the HF-format model, TensorBoard summaries and the task's own files."""
    data, task = prepared.data, prepared.task
    output_dir, log_dir = config.resolved_output_dir(), config.resolved_log_dir()
    config.save_yaml(os.path.join(output_dir, "config.yaml"))
    if has_lora(model):
        # The adapters alone (small) with a pointer to the base model; model.keras holds them merged.
        parameter_efficient.save_adapters(model, os.path.join(output_dir, "adapters"), config.model,
                                          dataclasses.asdict(config))
    with fileio.atomic_path(os.path.join(output_dir, "model.keras")) as path:
        (merged_copy(model) if has_lora(model) else model).save(path)
    hf_dir = os.path.join(output_dir, "hf_model")
    tmp = fileio.scratch_path(hf_dir)
    task.save_pretrained(model, tmp, data)
    prepared.tokenizer.save_pretrained(tmp)
    fileio.replace_dir(tmp, hf_dir, aside=fileio.scratch_path(hf_dir, "old"))
    final = {f"final/{split}_{k}": v for split, r in results.items() for k, v in r.items() if isinstance(v, float)}
    hparams = {k: v for k, v in config.to_dict().items() if v is not None} if hparams_session else None
    cbs.write_run_summary(log_dir, config.to_dict(), hparams, final)
    task.write_extras(model, data, config, results, output_dir, log_dir)
    shown = ["metrics.json"] + [name for name in ("best.weights.h5", "model.keras", "hf_model/", "adapters/",
                                                  "labels.txt")
                                if os.path.exists(os.path.join(output_dir, name))]
    print(f"outputs: {_shown(output_dir, output_dir, shown_as)} ({', '.join(shown + ['saved_model/'])}); "
          f"TensorBoard: tensorboard --logdir {os.path.dirname(log_dir) or log_dir}", flush=True)


def export_run(run_dir: str, base_dir: str | None = None, version: int | None = None, overwrite: bool = False,
               max_seq_length: int | None = None) -> str:
    """Exports a finished run directory (model.keras, config.yaml, hf_model/) as a SavedModel again, with
    the signatures of the task that trained it.

    Args:
        run_dir: the run's `--output_dir`.
        base_dir: the serving base path; defaults to `<run_dir>/saved_model`.
        max_seq_length: defaults to the run's `max_seq_length`.

    Raises:
        ExportError: not a finished run, or an unreadable config.yaml (named).
    """
    from tfbert.export import ExportError

    config = finished_run.read_config(run_dir, "exports", error=ExportError)
    if max_seq_length is not None:  # (0 too is a value given, and refused, not the run's length)
        try:
            config.max_seq_length = operator.index(max_seq_length)  # (an int of numpy's too)
            config.validate(source="--max_seq_length")
        except (TypeError, ValueError) as e:
            raise ExportError(f"--max_seq_length: {e}" if isinstance(e, TypeError) else str(e)) from None
    task = task_for(config)
    model, tokenizer = finished_run.load_model(run_dir)
    return task.export(model, tokenizer, task.data_for_export(run_dir, config), config,
                       base_dir or os.path.join(run_dir, "saved_model"), version, overwrite=overwrite)
