"""Tasks on `BertBackbone`: each a head model (a functional Keras model built on `backbone.input`) and
a `Task` that gives the one runner its data, features, loss, metrics, outputs and SavedModel."""

from __future__ import annotations

import importlib

from tfbert.tasks.base import BertTaskModel, Task, TaskData
from tfbert.tasks.classifier import BertClassifier
from tfbert.tasks.masked_lm import BertMaskedLM
from tfbert.tasks.question_answerer import BertQuestionAnswerer
from tfbert.tasks.token_classifier import BertTokenClassifier

# config.TASK -> the module and class of its task (imported on first use).
TASKS = {"classification": ("tfbert.tasks.classification", "ClassificationTask"),
         "token_classification": ("tfbert.tasks.token_classification", "TokenClassificationTask"),
         "question_answering": ("tfbert.tasks.question_answering", "QuestionAnsweringTask"),
         "masked_lm": ("tfbert.tasks.masked_language_modeling", "MaskedLanguageModelingTask")}


def task_for(config) -> Task:
    """The task that runs a run config (`config.TASK`)."""
    name = getattr(config, "TASK", None)
    if name not in TASKS:
        raise ValueError(f"{type(config).__name__}: no task named {name!r}; known: {', '.join(TASKS)}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BertTaskModel", "BertClassifier", "BertTokenClassifier", "BertQuestionAnswerer", "BertMaskedLM", "Task", "TaskData", "TASKS", "task_for"]
