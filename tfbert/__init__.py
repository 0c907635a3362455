"""tfbert: pre-trained BERT in Keras 3 (TensorFlow backend), from checkpoint to TF Serving."""

import os as _os
import platform as _platform

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if _platform.machine().lower() in ("x86_64", "amd64"):
    # TensorFlow's oneDNN kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16
    # or AMX; on an AVX2 CPU they made MiniLM's float32 training step 1.2x faster (benchmarks/README.md)
    # with bit-reproducible results under op determinism. Read once, when TensorFlow loads: this takes
    # effect when tfbert is imported first (every pipeline does); TF_ENABLE_ONEDNN_OPTS=0 opts out.
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

__all__ = ["BertConfig", "ConfigError", "BertBackbone", "BertTokenizer", "load_model"]

# Imported on first use: `import tfbert.serving` (the REST client) or `tfbert.errors` must
# not load TensorFlow and Keras.
_LAZY = {"BertConfig": "tfbert.config", "ConfigError": "tfbert.config", "BertBackbone": "tfbert.backbone",
         "BertTokenizer": "tfbert.text", "load_model": "tfbert.training.model_file"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfbert' has no attribute {name!r}")
