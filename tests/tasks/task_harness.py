"""Shared checks that every task head (classifier, token classifier, QA, MLM) must pass.

Modelled on KerasHub's `TestCase`: one harness gives every head the same coverage, so a head's
own test file only checks what is particular to it. Import it from a test module in
`tests/tasks/` (pytest's default "prepend" import mode puts that directory on `sys.path`):

    from task_harness import run_standard_checks

    def test_standard(tmp_path):
        run_standard_checks(
            build_model=lambda dtype=None: BertClassifier(BertBackbone(tiny_config(), dtype=dtype), 3),
            make_labels=lambda batch, seq: np.arange(batch) % 3,
            expected_output_shape=lambda batch, seq: (batch, 3),
            tmp_path=tmp_path)

`build_model(dtype)` must return a fresh task model whose backbone uses the dtype policy
`dtype` (None = default) and which has a `default_loss()` method. The model's outputs may be
a tensor or a dict/tuple of tensors; `expected_output_shape` then returns the same structure.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import keras
import numpy as np

from tfbert.config import BertConfig

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64)


def tiny_config(**overrides) -> BertConfig:
    """hidden 32, 2 layers, 2 heads, intermediate 64, vocab 100 (STYLE.md's test size)."""
    return BertConfig(**{**TINY, **overrides})


def make_inputs(batch: int = 3, seq: int = 9, vocab_size: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """A padded batch: row i has `seq - i` real tokens (at least 2), [CLS]=2 ... [SEP]=3, two segments."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(5, vocab_size, size=(batch, seq)).astype("int32")
    token_type_ids = np.zeros((batch, seq), "int32")
    attention_mask = np.zeros((batch, seq), "int32")
    for i in range(batch):
        length = max(2, seq - i)
        input_ids[i, 0], input_ids[i, length - 1] = 2, 3
        input_ids[i, length:] = 0
        attention_mask[i, :length] = 1
        token_type_ids[i, length // 2:length] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


def _numpy(structure):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), structure)


def _shapes(structure):
    return keras.tree.map_structure(lambda t: tuple(t.shape), structure)


def check_config_round_trip(model: keras.Model) -> None:
    """get_config -> JSON -> from_config -> get_config is the identity, for every argument."""
    config = model.get_config()
    as_json = json.dumps(config, sort_keys=True)
    revived = model.__class__.from_config(json.loads(as_json))
    assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    serialized = json.dumps(keras.saving.serialize_keras_object(model), sort_keys=True)
    revived = keras.saving.deserialize_keras_object(json.loads(serialized))
    assert type(revived) is type(model)
    assert json.dumps(revived.get_config(), sort_keys=True) == as_json


def check_saving(model: keras.Model, inputs: dict, tmp_path) -> None:
    """A `.keras` file reloads as the same class with identical outputs."""
    path = os.path.join(os.fspath(tmp_path), "model.keras")
    expected = _numpy(model(inputs, training=False))
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    keras.tree.map_structure(lambda a, b: np.testing.assert_array_equal(a, b),
                             expected, _numpy(restored(inputs, training=False)))


def check_sequence_lengths(model: keras.Model, expected_output_shape: Callable, vocab_size: int,
                           lengths=(5, 17), batch: int = 2) -> None:
    """Any sequence length works with one model (no fixed seq in the graph); outputs float32 and finite."""
    for seq in lengths:
        outputs = _numpy(model(make_inputs(batch, seq, vocab_size), training=False))
        assert _shapes(outputs) == expected_output_shape(batch, seq), f"seq={seq}"
        for out in keras.tree.flatten(outputs):
            assert out.dtype == np.float32 and np.isfinite(out).all(), f"seq={seq}"


def check_mixed_precision(build_model: Callable, make_labels: Callable, vocab_size: int,
                          policy: str = "mixed_bfloat16", batch: int = 2, seq: int = 7) -> None:
    """Under a mixed policy the head computes in low precision but returns float32, and the loss is finite."""
    model = build_model(policy)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    dense = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    assert dense and all(layer.compute_dtype == compute_dtype for layer in dense), \
        "every Dense (backbone and head) should inherit the backbone's dtype policy"
    assert all(w.dtype == "float32" for w in model.weights), "variables stay float32 under a mixed policy"
    inputs = make_inputs(batch, seq, vocab_size)
    for out in keras.tree.flatten(model(inputs, training=False)):
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    model.compile(loss=model.default_loss())
    loss = model.evaluate(inputs, make_labels(batch, seq), verbose=0, return_dict=True)["loss"]
    assert np.isfinite(loss)


def check_fit(model: keras.Model, make_labels: Callable, vocab_size: int, jit_compile: bool,
              batch: int = 4, seq: int = 8) -> None:
    """One optimizer step runs (graph mode, optionally XLA), gives a finite loss and moves the weights."""
    inputs = make_inputs(batch, seq, vocab_size)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=model.default_loss(), jit_compile=jit_compile)
    history = model.fit(inputs, make_labels(batch, seq), batch_size=batch, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert any(changed), "no trainable weight changed after a training step"


def run_standard_checks(build_model: Callable, make_labels: Callable, expected_output_shape: Callable,
                        tmp_path, vocab_size: int = TINY["vocab_size"], mixed_precision: bool = True,
                        jit_compile: bool = True) -> None:
    """All of the above for one head.

    Args:
        build_model: `build_model(dtype=None)` -> a fresh task model.
        make_labels: `make_labels(batch, seq)` -> labels for `model.default_loss()`.
        expected_output_shape: `(batch, seq)` -> the outputs' shapes (same structure as the outputs).
        tmp_path: a directory for the `.keras` file.
        mixed_precision / jit_compile: set False to skip the slower checks.
    """
    model = build_model(None)
    check_config_round_trip(model)
    check_saving(model, make_inputs(vocab_size=vocab_size), tmp_path)
    check_sequence_lengths(model, expected_output_shape, vocab_size)
    check_fit(model, make_labels, vocab_size, jit_compile=False)
    if jit_compile:
        check_fit(build_model(None), make_labels, vocab_size, jit_compile=True)
    if mixed_precision:
        check_mixed_precision(build_model, make_labels, vocab_size)


def perturbed_hf_checkpoint(model_cls, config, directory):
    """A random transformers model of `model_cls` (e.g. `BertForTokenClassification`) with every weight
    perturbed (LayerNorm 1/0 and zero biases would hide a mapping error), saved as HF saves it to
    `directory`; returns the model in eval mode."""
    import torch

    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.save_pretrained(directory, safe_serialization=True)
    return model
