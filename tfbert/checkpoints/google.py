"""Original Google BERT checkpoints: `bert_config.json` + `bert_model.ckpt.{index,data-*}`."""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from tfbert.checkpoints.mapping import CheckpointError

# Google name pieces -> HF name pieces; kernels are [in, out] there and [out, in] in HF.
_RENAMES = [
    (r"^bert/", ""),
    # the pre-training heads: the masked-LM output bias, the next-sentence classifier (already [out, in])
    (r"^cls/predictions/output_bias$", "cls/predictions/bias"),
    (r"^cls/seq_relationship/output_weights$", "cls/seq_relationship/weight"),
    (r"^cls/seq_relationship/output_bias$", "cls/seq_relationship/bias"),
    (r"/layer_(\d+)/", r"/layer/\1/"),
    (r"/kernel$", "/weight"),
    (r"/gamma$", "/weight"),
    (r"/beta$", "/bias"),
]
_EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def find_checkpoint(directory: str) -> str | None:
    """The checkpoint prefix in `directory`: `bert_model.ckpt` as Google ships it, else the
    latest checkpoint of a training directory; None when there is none."""
    import tensorflow as tf

    shipped = os.path.join(directory, "bert_model.ckpt")
    if os.path.exists(shipped + ".index"):
        return shipped
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        return latest
    indexes = sorted(glob.glob(os.path.join(directory, "*.index")))
    if len(indexes) > 1:
        raise CheckpointError(f"{directory}: several TensorFlow checkpoints and no 'checkpoint' file to say which "
                              f"is latest: {', '.join(os.path.basename(i) for i in indexes)}")
    return indexes[0][: -len(".index")] if indexes else None


def is_google_directory(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "bert_config.json")) and find_checkpoint(path) is not None


def google_to_hf_name(name: str) -> str:
    for pattern, repl in _RENAMES:
        name = re.sub(pattern, repl, name)
    if name.split("/")[-1] in _EMBEDDING_TABLES:
        name += "/weight"
    return name.replace("/", ".")


def read_state(directory: str) -> tuple[dict[str, np.ndarray], str]:
    """Reads a Google BERT TF checkpoint into HF names and layouts."""
    import tensorflow as tf

    prefix = find_checkpoint(directory)
    if prefix is None:
        raise CheckpointError(f"{directory}: no TensorFlow checkpoint (*.index) found")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:
        raise CheckpointError(f"{prefix}: cannot read TensorFlow checkpoint: {e}") from e
    state = {}
    for name in reader.get_variable_to_shape_map():
        if "adam" in name.lower() or name == "global_step" or name.startswith("_CHECKPOINTABLE"):
            continue  # optimizer slots and bookkeeping
        value = np.asarray(reader.get_tensor(name), dtype=np.float32)
        if name.endswith("/kernel"):
            value = value.T
        state[google_to_hf_name(name)] = value
    return state, prefix
