"""A finished training run read back from its folder, to export it again (`runner.export_run`) or to
evaluate it on new data (`tfbert.training.evaluation`): its config (of the task that trained it), model
and tokenizer, with the checks that it is a run and that it finished.
"""

from __future__ import annotations

import json
import logging
import os
import time

from tfbert.errors import TfbertError
from tfbert.text import BertTokenizer
from tfbert.training import model_file
from tfbert.training.run_config import RunConfig, config_class_for

logger = logging.getLogger("tfbert")


class RunFolderError(TfbertError):
    """Not a finished training run's folder; the message names it and what is missing."""


def read_config(run_dir: str, action: str = "reads", error: type[TfbertError] = RunFolderError) -> RunConfig:
    """The run config of a finished run (the class of the task that trained it, from `hf_model/`).

    Args:
        action: what the caller does with the run ("exports", "evaluates"), for the warning about a
            later, interrupted run in the same folder.
        error: the error class raised.

    Raises:
        error: no such folder, a search's folder, a run not finished (or a later run there stopped while
            writing its outputs: it removed metrics.json first), or an unreadable config.yaml; each message
            names the path.
    """
    if not os.path.isdir(run_dir):
        raise error(f"{run_dir}: no such run folder")
    if os.path.exists(os.path.join(run_dir, "search.json")):  # a search's output folder (tfbert.tuning)
        raise error(f"{run_dir}: a search's folder, not a training run: its best model is the run "
                    f"{os.path.join(run_dir, 'best_model')}")
    # metrics.json is written last: a run killed while writing its outputs (labels.txt, ...) has none
    needed = [os.path.join(run_dir, name) for name in ("model.keras", "config.yaml", "hf_model", "metrics.json")]
    missing = [path for path in needed if not os.path.exists(path)]
    if missing:
        raise error(f"{run_dir}: not a finished training run (missing {', '.join(missing)}); if it was "
                    "stopped, run its training command again to finish it")
    # (a later run there, the same command again, removes metrics.json before it replaces the first output;
    # stopped in training, it leaves a backup, which a finished run removes last)
    backup = os.path.join(run_dir, "backup")
    if os.path.isdir(backup) and os.listdir(backup):
        finished_at = os.path.getmtime(needed[-1])
        logger.warning("%s holds an interrupted run besides the finished one: this %s the run that finished "
                       "on %s; run the training command again to finish the later one", run_dir, action,
                       time.strftime("%Y-%m-%d %H:%M", time.localtime(finished_at)))
    with open(os.path.join(run_dir, "hf_model", "config.json"), encoding="utf-8") as f:
        config_cls = config_class_for(json.load(f).get("architectures") or [])
    try:
        return config_cls(**config_cls.load_yaml(os.path.join(run_dir, "config.yaml")))
    except (TypeError, ValueError) as e:
        raise error(f"{os.path.join(run_dir, 'config.yaml')}: {e}") from None


def load_model(run_dir: str):
    """(model, tokenizer) of a finished run: `model.keras` (uncompiled; a LoRA run's merged) and the
    tokenizer of its `hf_model/`."""
    return (model_file.load_model(run_dir, compile=False),
            BertTokenizer.from_pretrained(os.path.join(run_dir, "hf_model")))
