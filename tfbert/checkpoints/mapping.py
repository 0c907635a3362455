"""Names of BERT weights in Hugging Face checkpoints, mapped to `BertBackbone` variables.

Hugging Face's `BertModel` names (without any `bert.` prefix) and layout
(torch `Linear.weight` is [out, in]) are the canonical form here: the Google
checkpoint reader converts to it, and `save_pretrained` writes it.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfbert.errors import TfbertError

logger = logging.getLogger("tfbert")


class CheckpointError(TfbertError):
    """A checkpoint that cannot be loaded into the model; the message names file and key."""


@dataclasses.dataclass
class LoadReport:
    """What a checkpoint load did: which keys were used and which were not."""

    source: str
    loaded: list[str]
    missing: list[str]        # model weights the checkpoint did not have (kept at their initial values)
    unexpected: list[str]     # checkpoint keys the model does not use (e.g. an MLM or NSP head)

    def summary(self) -> str:
        lines = [f"{self.source}: loaded {len(self.loaded)} weights"]
        if self.missing:
            lines.append(f"  not in checkpoint (left at initial values): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  in checkpoint but unused: {', '.join(self.unexpected)}")
        return "\n".join(lines)


def _dense(prefix, layer):
    return [(f"{prefix}.weight", layer.kernel, True), (f"{prefix}.bias", layer.bias, False)]


def _norm(prefix, layer):
    return [(f"{prefix}.weight", layer.gamma, False), (f"{prefix}.bias", layer.beta, False)]


def weight_map(backbone) -> list[tuple[str, object, bool]]:
    """(HF key, Keras variable, whether the HF tensor is the transpose) for every weight."""
    emb = backbone.embeddings
    entries = [
        ("embeddings.word_embeddings.weight", emb.word_embeddings.embeddings, False),
        ("embeddings.position_embeddings.weight", emb.position_embeddings.embeddings, False),
        ("embeddings.token_type_embeddings.weight", emb.token_type_embeddings.embeddings, False),
        *_norm("embeddings.LayerNorm", emb.layer_norm),
    ]
    for i, block in enumerate(backbone.encoder_layers):
        p = f"encoder.layer.{i}"
        entries += [
            *_dense(f"{p}.attention.self.query", block.query),
            *_dense(f"{p}.attention.self.key", block.key),
            *_dense(f"{p}.attention.self.value", block.value),
            *_dense(f"{p}.attention.output.dense", block.attention_output),
            *_norm(f"{p}.attention.output.LayerNorm", block.attention_layer_norm),
            *_dense(f"{p}.intermediate.dense", block.intermediate),
            *_dense(f"{p}.output.dense", block.output_dense),
            *_norm(f"{p}.output.LayerNorm", block.output_layer_norm),
        ]
    entries += _dense("pooler.dense", backbone.pooler)
    return entries


# Weights a BERT checkpoint may lack without harming the encoder: a sentence-embedding or
# token-level checkpoint often has no pooler.
OPTIONAL_PREFIXES = ("pooler.",)

# Buffers, not weights.
_IGNORED_KEYS = ("embeddings.position_ids",)


def normalize_key(key: str) -> str:
    """Strips the model prefix and renames legacy LayerNorm gamma/beta."""
    if key.startswith("bert."):  # BertFor* task models nest the encoder under "bert."
        key = key[len("bert."):]
    if key.endswith(".gamma"):
        key = key[: -len(".gamma")] + ".weight"
    elif key.endswith(".beta"):
        key = key[: -len(".beta")] + ".bias"
    return key


def assign_state(backbone, state: dict[str, np.ndarray], source: str) -> LoadReport:
    """Copies a HF-named state dict into `backbone`; checks every shape.

    Raises:
        CheckpointError: a shape mismatch or a missing encoder weight, naming the key.
    """
    by_key: dict[str, np.ndarray] = {}
    original_name: dict[str, str] = {}
    for key, value in state.items():
        norm = normalize_key(key)
        by_key[norm] = value
        original_name[norm] = key
    loaded, missing = [], []
    assignments = []
    for key, variable, transpose in weight_map(backbone):
        if key not in by_key:
            missing.append(key)
            continue
        value = np.asarray(by_key.pop(key))
        expected = tuple(variable.shape)[::-1] if transpose else tuple(variable.shape)
        if tuple(value.shape) != expected:
            raise CheckpointError(f"{source}: weight '{original_name[key]}' has shape {tuple(value.shape)} "
                                  f"but the model built from its config expects {expected}")
        if transpose:
            value = value.T
        assignments.append((variable, value))
        loaded.append(key)
    required_missing = [k for k in missing if not k.startswith(OPTIONAL_PREFIXES)]
    if required_missing:
        raise CheckpointError(f"{source}: checkpoint lacks encoder weights: {', '.join(required_missing)}"
                              f"{' (and the pooler)' if len(required_missing) < len(missing) else ''}")
    for variable, value in assignments:
        variable.assign(value.astype(np.float32))
    unexpected = sorted(original_name[k] for k in by_key if k not in _IGNORED_KEYS)
    report = LoadReport(source=source, loaded=loaded, missing=missing, unexpected=unexpected)
    if missing:  # e.g. no pooler: a classifier on pooled_output would train a random one
        logger.warning(report.summary())
    elif unexpected:
        logger.info(report.summary())
    return report


def backbone_state(backbone) -> dict[str, np.ndarray]:
    """The backbone's weights under HF `BertModel` names and layouts, as float32 numpy."""
    state = {}
    for key, variable, transpose in weight_map(backbone):
        value = np.asarray(variable.numpy(), dtype=np.float32)
        state[key] = np.ascontiguousarray(value.T if transpose else value)
    return state
