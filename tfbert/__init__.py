"""tfbert: pre-trained BERT in Keras 3 (TensorFlow backend), from checkpoint to TF Serving."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["BertConfig", "ConfigError", "BertBackbone", "BertTokenizer"]

# Imported on first use: `import tfbert.serving` (the REST client) or `tfbert.errors` must
# not load TensorFlow and Keras.
_LAZY = {"BertConfig": "tfbert.config", "ConfigError": "tfbert.config", "BertBackbone": "tfbert.backbone",
         "BertTokenizer": "tfbert.text"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfbert' has no attribute {name!r}")
