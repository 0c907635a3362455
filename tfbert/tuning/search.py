"""The driver: `run_search` runs (or resumes) a search and writes its outputs.

Outputs of a search (`<output_dir>` defaults to `runs/<search_name>`):
    trials/               the KerasTuner project: oracle.json, trial_<id>/{trial.json, checkpoint.weights.h5,
                          metrics.json, trial_run.json}
    results.csv, results.md   one row per trial (hyperparameters, objective, steps, seconds, status, error)
    best_hparams.yaml     the best trial as a full ClassifierRunConfig: `train_cls.py --config best_hparams.yaml`
    best_model/           the best model as a train_cls run directory (saved_model/, hf_model/, ...)
    search.json           the settings the search started with; a resumed search must match them
TensorBoard: `<log_dir>/<trial_id>/` per trial (train/ and validation/ curves, and the HParams
session with the trial's values and metrics), `<log_dir>/best_model/` for the export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil

import yaml
from keras_tuner.engine.trial import TrialStatus

from tfbert import fileio
from tfbert.checkpoints import read_config
from tfbert.config import ConfigError
from tfbert.data import pipeline
from tfbert.export import find_versions, next_version
from tfbert.training import distribution, parameter_efficient, runner
from tfbert.training.run_config import MaskedLMRunConfig, with_new_fields
from tfbert.tuning.distributed import configure_distribution, serve_oracle
from tfbert.tuning.hypermodel import BertHyperModel
from tfbert.tuning.oracles import done_count, make_oracle, planned_trials
from tfbert.tuning.progress import format_value
from tfbert.tuning.reporting import write_results, write_search_summary
from tfbert.tuning.settings import SearchError, TuneRunConfig, resolved_objective
from tfbert.tuning.space import ParamSpec, load_search_space
from tfbert.tuning.tuner import BertTuner


def _check_settings(config: TuneRunConfig, space, output_dir: str, project_dir: str, worker: bool = False) -> None:
    """A search resumes only with the settings it started with (KerasTuner would silently keep
    the old search space and scores of another objective); a worker that sees the chief's
    settings (a shared output directory) checks that it runs the same search."""
    settings_file = os.path.join(output_dir, "search.json")
    settings = json.loads(json.dumps(config.search_settings(space), default=str))
    if (worker or os.path.exists(os.path.join(project_dir, "oracle.json"))) and os.path.exists(settings_file):
        with open(settings_file, encoding="utf-8") as f:
            previous = json.load(f)
        if isinstance(previous.get("run"), dict):  # (run fields added to tfbert since: at their defaults)
            previous["run"] = with_new_fields(config.BASE_CONFIG, previous["run"], settings["run"])
        # ("data" is compared where the search recorded it: searches started before it was, resume as they did)
        moved = config.moved_data_files(previous.get("run", {}), settings["run"], previous.get("data", {}),
                                        settings["data"])
        if moved:  # the same data under another path: not a change
            settings = {**settings, "run": {**settings["run"], **{k: previous["run"].get(k) for k in moved}}}
        changed = [key for key in sorted(set(settings) | set(previous)) if settings.get(key) != previous.get(key)
                   and (key != "data" or key in previous)]
        if changed:
            details = []
            for key in changed:
                if key in ("run", "search_space", "data") and isinstance(previous.get(key), dict):
                    old, new = previous[key], settings.get(key, {})
                    details += [f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}"
                                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
                else:
                    details.append(f"{key}: {previous.get(key)!r} -> {settings.get(key)!r}")
            if worker:
                raise SearchError(f"this worker's flags differ from the chief's ({'; '.join(details)}); "
                                  f"give the workers the chief's flags")
            raise SearchError(f"{output_dir} holds a search started with other settings ({'; '.join(details)}"
                              + ("; data.* is the contents of a data file" if "data" in changed else "")
                              + "); pass --overwrite to start over, or another --search_name / --output_dir")
    if not worker:
        os.makedirs(output_dir, exist_ok=True)
        fileio.write_json(settings_file, settings)


def _remove_previous_search(output_dir: str, project_dir: str, log_dir: str) -> None:
    """--overwrite: removes what an earlier search of this name wrote (and only that)."""
    trial_ids = [entry[len("trial_"):] for entry in (os.listdir(project_dir) if os.path.isdir(project_dir) else [])
                 if entry.startswith("trial_")]
    for trial_id in trial_ids:
        shutil.rmtree(os.path.join(log_dir, trial_id), ignore_errors=True)
    shutil.rmtree(os.path.join(log_dir, "best_model"), ignore_errors=True)
    if os.path.isdir(log_dir):
        for entry in os.listdir(log_dir):
            if entry.startswith("events.out.tfevents"):
                os.remove(os.path.join(log_dir, entry))
    # the previous best model stays, served, until the new search's best is swapped in (which carries over its
    # SavedModel versions and evaluations/): marked, so that it is not taken for the new search's export
    if os.path.isdir(os.path.join(output_dir, "best_model")):
        with open(os.path.join(output_dir, "best_model", _PREVIOUS_SEARCH), "w", encoding="utf-8") as f:
            f.write("the best model of a search started over with --overwrite\n")
    _remove_unfinished_exports(output_dir)
    for name in ("results.csv", "results.md", "best_hparams.yaml", "search.json"):
        if os.path.exists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))


def run_search(config: TuneRunConfig, prepared: runner.PreparedData | None = None) -> dict:
    """Runs (or resumes) the search `config` describes; see the module docstring for its outputs.

    In one process it runs every trial. With `role="chief"` it serves the oracle to workers and
    writes the results; with `role="worker"` it runs the trials the chief hands out.

    Returns:
        For a search in one process or on the chief: "best_trial", "best_value", "best_hparams"
        (the YAML path), "export" (the best_model directory or None), "results" (csv path),
        "completed", "failed". On a worker: "trials_run".

    Raises:
        SearchError: too many consecutive failures, no trial completed, settings that differ from
            the search being resumed, an address the chief cannot listen on.
        ValueError: a bad search space or objective.
    """
    space = load_search_space(config.search_space)
    objective = resolved_objective(config)
    role, tuner_id, address = configure_distribution(config)
    output_dir = config.resolved_output_dir()
    # One search (or its chief) per output folder: a second one started there is refused, not mixed in.
    with contextlib.nullcontext() if role == "worker" else fileio.lock_dir(output_dir, "search"):
        return _search(config, prepared, space, objective, role, tuner_id, address)


def _say_overridden_flags(config: TuneRunConfig, space: dict[str, ParamSpec]) -> None:
    """Names the recipe values given (by flag or --config: `RunConfig.from_args`' `given_fields`) for
    fields the search space sets, which the trials do not use: `--epochs 1` to keep a search short would
    otherwise train 1-3 epochs unsaid."""
    given = [(name, spec) for name, spec in space.items()
             if name in getattr(config, "given_fields", ()) and getattr(config, name) is not None  # (YAML's null)
             and not (spec.kind == "fixed" and spec.values[0] == getattr(config, name))]
    if given:
        listed = "; ".join(f"--{name} {getattr(config, name)} ({spec.describe()})" for name, spec in given)
        first = given[0][0]
        print(f"searched, so not taken from the flags: {listed}. To use a flag's value, give it in --search_space "
              f"as a bare value (`{first}: {getattr(config, first)}`) or take the field out of the search "
              f"(`{first}: null`)", flush=True)


def _search(config: TuneRunConfig, prepared, space, objective, role, tuner_id, address) -> dict:
    is_worker = role == "worker"
    output_dir, log_dir = config.resolved_output_dir(), config.resolved_log_dir()
    project_dir = os.path.join(output_dir, "trials")
    if config.tuner == "grid":
        continuous = [s.name for s in space.values() if s.kind == "float" and s.step is None]
        if continuous:
            print(f"grid: {', '.join(continuous)} are continuous ranges; KerasTuner's grid tries 10 evenly spaced "
                  f"values of each (give 'values' or 'step' in --search_space for a real grid)", flush=True)

    _say_overridden_flags(config, space)

    overwrite = config.overwrite and not is_worker  # a worker must never delete the chief's project
    if config.overwrite and is_worker:
        print("--overwrite is for the chief; this worker ignores it", flush=True)
    if overwrite:
        _remove_previous_search(output_dir, project_dir, log_dir)
    _check_settings(config, space, output_dir, project_dir, worker=is_worker)
    os.makedirs(log_dir, exist_ok=True)

    # Every trial runs in this strategy's scope (KerasTuner's `distribution_strategy`), made from
    # the same --strategy / --devices / --tpu flags as a train_cls run, before any TensorFlow op.
    strategy = distribution.strategy_for(config) if role != "chief" else None
    hypermodel = BertHyperModel(config, space, prepared)
    if role != "chief":
        hypermodel.prepared  # bad data or model flags fail here, once, not as failed trials
        check_model_settings(config, space, hypermodel.prepared.tokenizer.vocab_size)
        check_accumulation(config, space, hypermodel.prepared)
    oracle = make_oracle(config, space)
    resuming = not overwrite and os.path.exists(os.path.join(project_dir, f"{tuner_id or 'tuner0'}.json"))
    tuner = BertTuner(oracle, hypermodel, config, log_dir, directory=output_dir, project_name="trials",
                      overwrite=overwrite, executions_per_trial=config.executions_per_trial,
                      tuner_id=tuner_id, distribution_strategy=strategy)
    planned = planned_trials(oracle)
    if not is_worker:
        if not any(entry.startswith("events.out.tfevents") for entry in os.listdir(log_dir)):
            write_search_summary(log_dir, space, objective, config)
        done = done_count(oracle)
        interrupted = len(oracle._retry_queue)
        if resuming:
            counted = (f"{done} of {planned} trials done" if planned is None or done <= planned else
                       f"{done} trials done, more than --max_trials {planned}")
            print(f"resuming the search in {output_dir}: {counted}"
                  + (f", {interrupted} interrupted trial(s) run again" if interrupted else ""), flush=True)
        if planned is not None and done >= planned and not interrupted:
            print(f"{'all ' if done == planned else ''}{done} trials are done; nothing to run (raise --max_trials "
                  f"to run more, --overwrite to start over)", flush=True)
    print(f"search {config.resolved_run_name()}: {config.tuner}, {planned} trials, objective {objective.name} "
          f"({objective.direction}); trials in {project_dir}, TensorBoard: tensorboard --logdir {log_dir}", flush=True)

    if role == "chief":
        tuner.save()
        serve_oracle(tuner, address)
    else:
        tuner.search()
    if is_worker:
        print(f"{tuner_id}: the chief has no more trials; done", flush=True)
        return {"trials_run": len(tuner.progress.durations)}
    return _finish_search(tuner, config, space, output_dir, log_dir)


def check_model_settings(config: TuneRunConfig, space, vocab_size: int | None = None) -> None:
    """The checks a trial makes when it builds its model (the sequence length against the model's
    positions, the vocabulary against its embeddings, --freeze_layers against its layers), made once
    from the checkpoint's config before the first trial; a search-space value is named with its file.

    Raises:
        ConfigError, ParameterEfficientError: as a trial would, naming the flag or the entry.
    """
    bert_config = read_config(config.model)
    spec = space.get("max_seq_length")
    if spec is None:
        runner.check_model_fits(config, bert_config, vocab_size)  # the flag's length, and the vocabulary
    else:  # the search space's lengths replace the flag's
        lengths = spec.extremes
        too_long = [length for length in lengths if length > bert_config.max_position_embeddings]
        if too_long:
            raise ConfigError(f"{config.search_space or 'default search space'}: max_seq_length: {too_long[0]} "
                              f"exceeds the model's max_position_embeddings ({bert_config.max_position_embeddings}, "
                              f"{config.model})")
        runner.check_model_fits(dataclasses.replace(config, max_seq_length=min(lengths)), bert_config, vocab_size)
    parameter_efficient.check_settings(bert_config.num_hidden_layers, lora_rank=config.lora_rank,
                                       freeze_layers=config.freeze_layers)


def check_accumulation(config: TuneRunConfig, space, prepared: runner.PreparedData) -> None:
    """Refuses, before the first trial, a gradient_accumulation_steps that no trial could fill with one
    update: more batches per update than the most batches a trial has (the smallest batch size, at each end
    of the searched lengths, times the most epochs). A value that only some trials cannot fill fails those
    trials, each with the reason (`runner.check_updates`).

    Raises:
        ConfigError: naming the search space's entry, or the flag.
    """
    spec = space.get("gradient_accumulation_steps")
    group = max(int(g) for g in spec.extremes) if spec else config.gradient_accumulation_steps
    if group <= 1:
        return

    def extremes(name):
        return space[name].extremes if name in space else (getattr(config, name),)

    batch_size, epochs = min(int(b) for b in extremes("batch_size")), max(int(e) for e in extremes("epochs"))
    base = config.base_run_config()
    if not isinstance(base, MaskedLMRunConfig) and not base.batching(training=True)["drop_remainder"]:
        # an example (question, sentence) is at least one row of a batch, and no batch is dropped: enough
        # examples settle it without reading the data through the tokenizer (masked LM joins documents)
        if -(-len(prepared.data.train) // batch_size) * epochs >= group:
            return
    counts = []
    for length in sorted({int(n) for n in extremes("max_seq_length")}):
        try:
            train = prepared.dataset("train", config.base_run_config(batch_size=batch_size, max_seq_length=length))
        except (ConfigError, ValueError):
            continue  # a length the trials with it refuse themselves
        counts.append(pipeline.count_batches(train))
    if counts and max(counts) * epochs < group:
        where = (f"{config.search_space or 'default search space'}: gradient_accumulation_steps" if spec
                 else "--gradient_accumulation_steps")
        most = max(counts) * epochs
        raise ConfigError(f"{where}: {group} batches per optimizer update, but a trial has at most {max(counts)} "
                          f"batches per epoch (batch_size {batch_size}) x {epochs} epoch{'s' if epochs > 1 else ''}: "
                          f"no trial with it would make an update; lower it (any value above {most} fails the same)")


def _finish_search(tuner: BertTuner, config: TuneRunConfig, space, output_dir: str, log_dir: str) -> dict:
    oracle, hypermodel = tuner.oracle, tuner.hypermodel
    rows = write_results(oracle, hypermodel, tuner.project_dir, output_dir)
    completed = [r for r in rows if r["status"] == TrialStatus.COMPLETED]
    failed = [r for r in rows if r["status"] == TrialStatus.FAILED]
    print(f"results: {os.path.join(output_dir, 'results.md')} ({len(completed)} completed, {len(failed)} failed)",
          flush=True)
    if oracle.stop_reason:
        raise SearchError(f"search stopped: {oracle.stop_reason}. Fix the search space or flags and run again "
                          "with --overwrite (a search resumes only with the settings it started with); the same "
                          "command again goes on with the next trials (for a failure that will not recur)")
    best = oracle.get_best_trials(1)
    if not best or best[0].status != TrialStatus.COMPLETED:
        raise SearchError(f"no trial completed; see {os.path.join(output_dir, 'results.md')}")
    best = best[0]
    # With several executions per trial the exported weights are the best execution's: its seed too
    best_config = hypermodel.run_config(best.hyperparameters, run_name=f"{config.resolved_run_name()}-best",
                                        output_dir=None, log_dir=None,
                                        seed=config.seed + _best_execution(tuner, best.trial_id))
    best_hparams = os.path.join(output_dir, "best_hparams.yaml")
    with fileio.atomic_write(best_hparams) as f:
        f.write(f"# Best trial {best.trial_id} of the search {config.resolved_run_name()}: "
                f"{oracle.objective.name}={best.score:.6g}\n# python pipelines/{config.TRAIN_SCRIPT} --config {best_hparams}\n")
        yaml.safe_dump(best_config.with_absolute_paths().to_dict(), f, sort_keys=False)  # (run from anywhere)
    print(f"best trial {best.trial_id}: {oracle.objective.name}={format_value(best.score)}; "
          f"{', '.join(f'{k}={format_value(v)}' for k, v in hypermodel.values(best.hyperparameters).items())}",
          flush=True)
    print(f"best hyperparameters: {best_hparams} (python pipelines/{config.TRAIN_SCRIPT} --config {best_hparams})",
          flush=True)
    export = _export_best(tuner, config, best, best_config, output_dir, log_dir)
    return {"best_trial": best.trial_id, "best_value": best.score, "best_hparams": best_hparams, "export": export,
            "results": os.path.join(output_dir, "results.csv"), "completed": len(completed), "failed": len(failed)}


def _best_execution(tuner: BertTuner, trial_id: str) -> int:
    """Which execution of the trial scored best (0 with one execution, or when another machine ran it)."""
    record = os.path.join(tuner.get_trial_dir(trial_id), "trial_run.json")
    if not os.path.exists(record):
        return 0
    with open(record, encoding="utf-8") as f:
        return int(json.load(f).get("best_execution", 0))


_REPLACED = "{}/.best_model-replaced"  # where the previous best_model/ goes where no atomic swap exists
_PREVIOUS_SEARCH = ".previous_search"  # in a best_model/ of the search before an --overwrite


def _remove_unfinished_exports(output_dir: str, keep: str | None = None) -> None:
    """Removes the hidden folders `_export_best` builds best models in (`.best_model-*`), but `keep`."""
    for name in os.listdir(output_dir) if os.path.isdir(output_dir) else []:
        if name.startswith(".best_model-") and os.path.join(output_dir, name) != keep:
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def _exported(directory: str, trial_id: str, mode: str) -> bool:
    """Whether `directory` holds a finished export of `trial_id` made by `mode` (its metrics.json,
    written last, says so)."""
    marker = os.path.join(directory, "metrics.json")
    if not os.path.exists(marker) or os.path.exists(os.path.join(directory, _PREVIOUS_SEARCH)):
        return False
    with open(marker, encoding="utf-8") as f:
        exported = json.load(f)
    return exported.get("best_trial") == trial_id and exported.get("export") == mode


def _swap_in(staging: str, export_dir: str, output_dir: str) -> None:
    """Puts the finished `staging` folder in place of `export_dir`, carrying over the SavedModel versions
    the previous best models exported (hard links): a server that serves several versions, or a user
    going back to one, still finds them. Their `evaluations/` (evaluate.py's) stay too, as a run's do
    when it is trained again."""
    fileio.remove_leftovers(staging)  # a link_tree killed midway
    fileio.remove_leftovers(os.path.join(staging, "saved_model"))
    carried = [os.path.join("saved_model", str(v)) for v in find_versions(os.path.join(export_dir, "saved_model"))]
    if os.path.isdir(os.path.join(export_dir, "evaluations")):
        carried.append("evaluations")
    for name in carried:
        if not os.path.exists(os.path.join(staging, name)):
            fileio.link_tree(os.path.join(export_dir, name), os.path.join(staging, name))
    fileio.replace_dir(staging, export_dir, aside=_REPLACED.format(output_dir))


def _export_best(tuner: BertTuner, config: TuneRunConfig, best, best_config, output_dir, log_dir) -> str | None:
    """Writes the best trial's model to `<output_dir>/best_model` (its weights, or retrained). The model is
    built in a hidden folder beside it and swapped in whole when every file is written: the previous
    best model stays whole until then (a server may be polling its saved_model/), and a killed export,
    a retrain above all, resumes from the hidden folder's backup when the same command runs again."""
    if config.export == "none":
        return None
    export_dir = os.path.join(output_dir, "best_model")
    if _exported(export_dir, best.trial_id, config.export):
        print(f"best model: {export_dir} (exported before)", flush=True)
        return export_dir
    staging = os.path.join(output_dir, f".best_model-trial{best.trial_id}-{config.export}")
    if _exported(staging, best.trial_id, config.export):  # written whole, killed before the swap
        _swap_in(staging, export_dir, output_dir)
        print(f"best model: {export_dir}", flush=True)
        return export_dir
    _remove_unfinished_exports(output_dir, keep=staging)  # another best trial's, or another mode's
    # The SavedModel gets the version after the previous best model's, so that a server polling
    # best_model/saved_model loads the new one (it keeps a version number it has loaded).
    shutil.rmtree(os.path.join(staging, "saved_model"), ignore_errors=True)  # a killed attempt's: never served
    version = next_version(os.path.join(export_dir, "saved_model"))
    final_config = dataclasses.replace(best_config, output_dir=export_dir, log_dir=os.path.join(log_dir, "best_model"))
    export_config = dataclasses.replace(final_config, output_dir=staging)
    hypermodel = tuner.hypermodel
    checkpoint = tuner._get_checkpoint_fname(best.trial_id)
    mode = config.export
    if mode == "best_trial" and not os.path.exists(checkpoint):
        print(f"best model: {checkpoint} is not on this machine (a worker elsewhere ran the trial); "
              f"retraining with the best values instead", flush=True)
        mode = "retrain"
    if mode == "retrain":
        print(f"best model: retraining with the best values into {export_dir}", flush=True)
        summary = runner.fit_and_evaluate(export_config, hypermodel.prepared, runner.start_run(
            export_config, hypermodel.prepared), export_version=version, shown_as=export_dir, hparams_session=False)
    else:
        print(f"best model: exporting the weights of trial {best.trial_id} into {export_dir}", flush=True)
        hypermodel.run_overrides = dict(output_dir=staging, log_dir=export_config.log_dir,
                                        run_name=export_config.run_name, seed=export_config.seed)
        try:
            model = tuner.load_model(best)
        finally:
            hypermodel.run_overrides = {}
        trial_dir = tuner.get_trial_dir(best.trial_id)
        execution = _best_execution(tuner, best.trial_id)
        run_dir = os.path.join(trial_dir, f"execution{execution}") if config.executions_per_trial > 1 else trial_dir
        with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
            trial_summary = json.load(f)
        facts = {k: trial_summary[k] for k in runner.TRAINING_FACTS if k in trial_summary}
        summary = runner.finish_run(model, export_config, hypermodel.prepared, facts,
                                    with_loss=facts["best_metric"] == "val_loss", export_version=version,
                                    shown_as=export_dir, hparams_session=False)
    # the files name the folder they end up in, not the hidden one they were written in
    # (the runner's summary names best_model/saved_model/<version> already: shown_as)
    summary.update(best_trial=best.trial_id, export=config.export, config=final_config.to_dict())
    if os.path.exists(os.path.join(staging, "config.yaml")):
        final_config.save_yaml(os.path.join(staging, "config.yaml"))
    fileio.write_json(os.path.join(staging, "metrics.json"), summary, default=float)
    _swap_in(staging, export_dir, output_dir)
    print(f"best model: {export_dir} (SavedModel {summary.get('saved_model')})", flush=True)
    return export_dir
