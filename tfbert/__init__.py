"""tfbert: pre-trained BERT in Keras 3 (TensorFlow backend), from checkpoint to TF Serving."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbert.config import BertConfig, ConfigError  # noqa: E402
from tfbert.backbone import BertBackbone  # noqa: E402

__version__ = "0.1.0"

__all__ = ["BertConfig", "ConfigError", "BertBackbone", "BertTokenizer"]


def __getattr__(name):
    # The tokenizer pulls in tensorflow_text; import it only when asked for.
    if name == "BertTokenizer":
        from tfbert.text import BertTokenizer
        return BertTokenizer
    raise AttributeError(name)
