"""What a search is told: its config (a task's run flags plus the search flags), the objective those
flags name, and the error a search raises."""

from __future__ import annotations

import dataclasses
import os
import typing

import keras_tuner

from tfbert.errors import TfbertError
from tfbert.tasks import task_for
from tfbert.training import runner
from tfbert.training.runner import validation_metric_names  # (re-exported by tfbert.tuning)
from tfbert.training.run_config import (ClassifierRunConfig, QARunConfig, RunConfig, TokenClassifierRunConfig,
                                       without_placement)
from tfbert.tuning.space import ParamSpec, load_search_space

TUNERS = ("random", "bayesian", "hyperband", "grid")
EXPORTS = ("best_trial", "retrain", "none")
ROLES = ("chief", "worker")

# With no data flags the search runs on BBC News; these keep that default search under 20 minutes
# on 2 CPU cores (8 trials of 1-3 epochs over 320 articles cut at 64 tokens).
DEFAULT_DATA_MAX_TRAIN_EXAMPLES = 320
DEFAULT_DATA_MAX_SEQ_LENGTH = 64


class SearchError(TfbertError, RuntimeError):
    """A search that cannot start or cannot go on; the message says why and what to do."""


@dataclasses.dataclass
class SearchSettings:
    """The search fields, mixed into a task's run config by `search_config_for` (`TuneRunConfig` for
    classification, `TuneNerRunConfig` for NER): the training flags (data, model, the fixed recipe
    values) plus these. Values in the search space override the recipe flags.

    With no data flags it searches on a 320-example subset of the task's default data cut at 64 tokens,
    so the default search ends within 20 minutes on 2 CPU cores; --max_train_examples 0 takes all of it.
    """

    BASE_CONFIG: typing.ClassVar[type] = RunConfig  # the run config of one trial
    TRAIN_SCRIPT: typing.ClassVar[str] = ""  # the pipeline that trains one such run
    # Training examples of the default data a default search uses (None: all of them).
    DEFAULT_DATA_EXAMPLES: typing.ClassVar[int | None] = DEFAULT_DATA_MAX_TRAIN_EXAMPLES
    DEFAULT_DATA_SEQ_LENGTH: typing.ClassVar[int | None] = DEFAULT_DATA_MAX_SEQ_LENGTH

    # train_cls fields whose default differs for the default (BBC News) search; None = train_cls' default
    max_seq_length: int | None = None
    max_train_examples: int | None = None
    # search
    tuner: str = dataclasses.field(default="random", metadata={"choices": TUNERS, "help": "search algorithm"})
    max_trials: int = dataclasses.field(default=8, metadata={"help": "trials to run at most (hyperband and grid "
                                                                     "may need fewer)"})
    executions_per_trial: int = dataclasses.field(default=1, metadata={
        "help": "runs per trial with seeds seed, seed+1, ...; the objective is their mean"})
    objective: str | None = dataclasses.field(default=None, metadata={
        "help": "validation metric to optimise: val_loss or val_<a metric the task reports>, e.g. val_macro_f1 "
                "(classification), val_f1 (NER, QA), val_exact_match (QA); losses and errors are minimised, the "
                "rest maximised; unset: the task's metric_for_best (an unknown name is refused with the list)"})
    search_space: str | None = dataclasses.field(default=None, metadata={
        "help": "YAML file of search-space entries that replace the default ones, key by key"})
    search_name: str | None = dataclasses.field(default=None, metadata={
        "help": "names the output and TensorBoard directories; unset: tune-<data>-<model>"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "start over instead of resuming the search found in the output directory"})
    export: str = dataclasses.field(default="best_trial", metadata={
        "choices": EXPORTS, "help": "best_trial: export the best trial's weights; retrain: train again with "
                                   "the best values; none: only write best_hparams.yaml"})
    max_consecutive_failures: int = dataclasses.field(default=3, metadata={
        "help": "stop the search after this many failed trials in a row"})
    role: str | None = dataclasses.field(default=None, metadata={
        "choices": ROLES, "help": "distributed search: the chief runs the oracle, workers run trials"})
    oracle_address: str | None = dataclasses.field(default=None, metadata={
        "help": "host:port of the chief's oracle (the chief listens there)"})
    worker_index: int | None = dataclasses.field(default=None, metadata={
        "help": "this worker's number (0, 1, ...); a restarted worker with the same number resumes its trial"})

    def __post_init__(self):
        default_data = not (self.train_file or self.dataset)
        if self.max_seq_length is None:  # the task's own default, or a shorter one for the default data
            task_default = next(f.default for f in dataclasses.fields(self.BASE_CONFIG) if f.name == "max_seq_length")
            self.max_seq_length = (self.DEFAULT_DATA_SEQ_LENGTH if default_data and self.DEFAULT_DATA_SEQ_LENGTH
                                   else task_default)
        if self.max_train_examples is None and default_data:
            self.max_train_examples = self.DEFAULT_DATA_EXAMPLES
        if self.max_train_examples == 0:
            self.max_train_examples = None
        super().__post_init__()

    def validate(self, source: str = "run config") -> None:
        super().validate(source)

        def fail(field, expected, found):
            raise ValueError(f"{source}: field '{field}' must be {expected}, found {found!r}")

        for name, choices in (("tuner", TUNERS), ("export", EXPORTS)):
            if getattr(self, name) not in choices:
                fail(name, " | ".join(choices), getattr(self, name))
        if self.role is not None and self.role not in ROLES:
            fail("role", " | ".join(ROLES), self.role)
        for name in ("max_trials", "executions_per_trial", "max_consecutive_failures"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "a positive integer", getattr(self, name))
        if self.strategy == "multi_worker":
            fail("strategy", "one process's strategy (auto, default, one_device, mirrored or tpu): a search "
                 "spreads over machines by its trials (--role chief / worker, --oracle_address), not by "
                 "multi_worker", self.strategy)
        if self.role and not self.oracle_address:
            raise ValueError(f"{source}: --role {self.role} needs --oracle_address host:port (the chief's)")
        if self.test_file and self.export == "none":
            fail("test_file", "unset with --export none: the trials are scored on the validation data, and the test "
                 "data only by the exported best model", self.test_file)
        alone = " (without it the search runs in this process)"
        if self.oracle_address is not None and not self.role:
            fail("oracle_address", "given with --role chief or worker" + alone, self.oracle_address)
        if self.worker_index is not None and self.role != "worker":
            fail("worker_index", "given with --role worker" + (f" (role is {self.role})" if self.role else alone),
                 self.worker_index)
        if self.oracle_address:
            parse_address(self.oracle_address, source)
        if self.role == "worker" and self.worker_index is None and "KERASTUNER_TUNER_ID" not in os.environ:
            raise ValueError(f"{source}: --role worker needs --worker_index (0, 1, ...: one number per worker)")
        objective = resolved_objective(self)  # an unknown objective or a bad search-space file fails before any work
        if self.metric_for_best is not None and self.metric_for_best != objective.name:
            fail("metric_for_best", f"unset or the search's objective ({objective.name}): each trial's best epoch "
                 "is picked by --objective", self.metric_for_best)
        if not (self.validation_fraction or self.validation_file or self.dataset):
            fail("validation_fraction", "above 0, or a validation_file given: a search ranks its trials on "
                 "validation data", self.validation_fraction)
        self.check_search_space(load_search_space(self.search_space))

    def check_search_space(self, space: dict[str, ParamSpec]) -> None:
        """Every value a trial may take (a fixed value, each choice, each end of a range: the run config's
        limits are intervals) is one a training run accepts with this search's other settings: a space that
        cannot train is refused before the first trial, not found by failed trials."""
        source = self.search_space or "default search space"
        for spec in space.values():
            ends = spec.extremes
            for value in ends:
                try:
                    self.base_run_config(**{spec.name: value})
                except ValueError as e:
                    what = {"fixed": "the value", "choice": "the choice"}.get(spec.kind) or (
                        "min" if value == ends[0] else "max")
                    reason = str(e).removeprefix("run config: ")
                    raise ValueError(f"{source}: {spec.name}: {what} {value!r} is not one a training run "
                                     f"takes: {reason}") from None

    def resolved_run_name(self) -> str:
        if self.search_name:
            return self.search_name
        name = super().resolved_run_name()
        return name if self.run_name else "tune-" + name[len(self.RUN_PREFIX) + 1:]

    def base_run_config(self, **overrides) -> RunConfig:
        """The training run config of this search's data, model and fixed recipe values; its best
        epoch is picked by the search's objective."""
        names = {f.name for f in dataclasses.fields(self.BASE_CONFIG)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values["metric_for_best"] = resolved_objective(self).name
        values.update(overrides)
        return self.BASE_CONFIG(**values)

    def search_settings(self, space: dict[str, "ParamSpec"]) -> dict:
        """What must not change when a search resumes (max_trials may grow; outputs may move)."""
        run = without_placement(self.base_run_config().to_dict(), "run_name", "output_dir", "log_dir",
                                "log_every_n_steps", "metric_for_best", *space)
        return {"tuner": self.tuner, "objective": resolved_objective(self).name,
                "executions_per_trial": self.executions_per_trial,
                "search_space": {name: spec.to_yaml() for name, spec in space.items()}, "run": run,
                "data": self.data_fingerprints()}


def search_config_for(run_config_cls: type, train_script: str,
                      default_data_examples: int | None = DEFAULT_DATA_MAX_TRAIN_EXAMPLES,
                      default_data_seq_length: int | None = DEFAULT_DATA_MAX_SEQ_LENGTH) -> type:
    """The search config of a task: its run config's flags plus the search settings; a default search
    (no data flags) trains on `default_data_examples` of the default data (None: all), cut at
    `default_data_seq_length` tokens (None: the task's default)."""
    return dataclasses.make_dataclass(
        f"Tune{run_config_cls.__name__}", fields=[], bases=(SearchSettings, run_config_cls),
        namespace={"BASE_CONFIG": run_config_cls, "TRAIN_SCRIPT": train_script, "__module__": __name__,
                   "DEFAULT_DATA_EXAMPLES": default_data_examples, "DEFAULT_DATA_SEQ_LENGTH": default_data_seq_length,
                   "__doc__": SearchSettings.__doc__})


TuneRunConfig = search_config_for(ClassifierRunConfig, "train_cls.py")
# NER needs a few hundred updates before entities appear (320 sentences gave F1 0 in every trial):
# the default NER search takes all 3,394 WNUT-17 training sentences.
TuneNerRunConfig = search_config_for(TokenClassifierRunConfig, "train_ner.py", default_data_examples=None)
# QA: every XQuAD-en training question, at the task's 384 tokens (a shorter window than doc_stride allows
# would not move forward).
TuneQaRunConfig = search_config_for(QARunConfig, "train_qa.py", default_data_examples=None,
                                    default_data_seq_length=None)


def parse_address(address: str, source: str = "--oracle_address") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{source}: field 'oracle_address' must be host:port (e.g. 10.0.0.2:8000), "
                         f"found {address!r}")
    return host.strip("[]"), int(port)


def resolved_objective(config: TuneRunConfig) -> keras_tuner.Objective:
    """`keras_tuner.Objective(name, direction)` of `--objective` (default: train_cls' best metric)."""
    name = config.objective or runner.best_metric_of(config)
    known = validation_metric_names(config)
    if name not in known:
        raise ValueError(f"--objective {name}: not a validation metric of a {task_for(config).name} run; "
                         f"choose one of {', '.join(known)}")
    return keras_tuner.Objective(name, direction=runner.metric_direction(name))
