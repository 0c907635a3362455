"""A run's `model.keras` loaded back: the Keras classes tfbert registers (the task models, their layers
and the optimizer) are imported here, so that `keras.models.load_model` finds them by name."""

from __future__ import annotations

import os

import keras

import tfbert.tasks  # noqa: F401  (registers BertClassifier, BertTokenClassifier, ... and the backbone's layers)
import tfbert.training.optimization  # noqa: F401  (registers BertAdamW and its schedule)
from tfbert.tasks.token_classification import MaskedTokenAccuracy  # (NER's training metric)

MODEL_FILE = "model.keras"


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """The task model a run saved: `path` is the run folder (its `model.keras`) or a `.keras` file.
    With `compile`, its optimizer (with its state), loss and metrics too, to train it further.

    Raises:
        FileNotFoundError: no such folder or file (named).
    """
    path = os.fspath(path)
    file = os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: no such file" + (" (the run has not finished)" if os.path.isdir(path)
                                                           else ""))
    # (by its bare name too: an NER model.keras saved before the metric was registered names it so)
    return keras.models.load_model(file, compile=compile,
                                   custom_objects={"MaskedTokenAccuracy": MaskedTokenAccuracy})
