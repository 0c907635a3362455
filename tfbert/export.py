"""SavedModels for TensorFlow Serving: raw-text, token-id and tf.Example signatures.

`export_saved_model` writes `<base_dir>/<version>/` the way TF Serving's file-system source
polls it. The model is written to a hidden temporary folder beside the versions and renamed
into place only when complete, so a server never sees a half-written version and a crash
leaves nothing under a version number.

Signatures of a classification export (all float32 outputs, whatever the training precision):

- `serving_default` (method `tensorflow/serving/predict`): `text` (and `text_pair` for pair
  models) tf.string [batch] -> `logits`, `probabilities`, `label_id` (int64), `label`
  (tf.string); regression: `score`; multi-label: `probabilities` and `predicted` (bool
  [batch, num_labels], at the threshold saved with the model).
- `encoded` / `encoded_int64`: `input_ids`, `token_type_ids`, `attention_mask` int32 / int64
  [batch, seq] -> the same outputs.
- `classify` (method `tensorflow/serving/classify`): `inputs`, serialized `tf.Example`s with a
  bytes feature `text` (and `text_pair`) -> `classes` (label names) and `scores`, so TF
  Serving's `:classify` API works. Regression exports have `regress` instead (method
  `tensorflow/serving/regress`, output `outputs`) for the `:regress` API.

Tokenization runs in the graph, with the same `BertTokenizer` ops used in training; only ops
of plain TensorFlow and the TF Text ops that stock TF Serving bundles are used (checked by the
tests against `tfbert/serving_ops_allowlist.txt`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence

import keras
import tensorflow as tf

from tfbert import fileio
from tfbert.errors import TfbertError
from tfbert.text import BertTokenizer

logger = logging.getLogger("tfbert")

ALLOWLIST_FILE = os.path.join(os.path.dirname(__file__), "serving_ops_allowlist.txt")
WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "tfbert_export.json"
# tf.Example signatures and the TF Serving method each one needs.
EXAMPLE_METHODS = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}


class ExportError(TfbertError):
    """An export that cannot be written; the message names the directory."""


def find_versions(base_dir: str) -> list[int]:
    """The numeric version folders under `base_dir`, sorted."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(name) for name in os.listdir(base_dir) if re.fullmatch(r"[0-9]+", name))


def next_version(base_dir: str) -> int:
    """One more than the highest numeric version under `base_dir` (1 for a new base)."""
    return max(find_versions(base_dir), default=0) + 1


def merged_copy(model: keras.Model, dtype: str | None = None) -> keras.Model:
    """A copy of a tfbert task model with its LoRA adapters merged into the kernels they adapt
    (`kernel + A @ B * alpha / rank`, what a LoRA layer's `kernel` property returns), so the copy has no
    adapter variables or ops; with `dtype`, the copy's backbone runs under that dtype policy.

    Raises:
        ExportError: the model is not a tfbert task model (no backbone in its config).
    """
    config = model.get_config()
    if not isinstance(config.get("backbone"), dict):
        raise ExportError(f"{model.name}: expected a tfbert task model built on a BertBackbone")
    if dtype is not None:
        config["backbone"]["config"]["dtype"] = dtype
    clone = model.__class__.from_config(config)
    values = {variable.path: variable for variable in model.weights}
    for layer in model._flatten_layers():
        if getattr(layer, "lora_enabled", False):
            values[f"{layer.path}/kernel"] = layer.kernel  # merged: kernel + lora_a @ lora_b * scale
    for variable in clone.weights:
        if variable.path not in values:
            raise ExportError(f"{model.name}: no value for '{variable.path}' in the model being exported")
        variable.assign(keras.ops.convert_to_numpy(values[variable.path]))
    return clone


def has_lora(model: keras.Model) -> bool:
    return any(getattr(layer, "lora_enabled", False) for layer in model._flatten_layers())


def float32_copy(model: keras.Model) -> keras.Model:
    """The same model under the float32 policy, with LoRA adapters merged (`merged_copy`), for serving;
    the model itself when it is float32 already and has no adapters.

    Raises:
        ExportError: the model is not a tfbert task model (no backbone in its config).
    """
    config = model.get_config()
    if not isinstance(config.get("backbone"), dict):
        raise ExportError(f"{model.name}: expected a tfbert task model built on a BertBackbone")
    if (config["backbone"]["config"].get("dtype") == "float32" and keras.config.dtype_policy().name == "float32"
            and not has_lora(model)):
        return model
    return merged_copy(model, "float32")


def export_saved_model(model: keras.Model, tokenizer: BertTokenizer, base_dir: str, version: int | None = None, *,
                       label_names: list[str] | None = None, task: str = "classification",
                       text_pair: bool = False, max_seq_length: int | None = None, threshold: float = 0.5,
                       warmup_texts: list[str] | None = None, overwrite: bool = False,
                       signatures=None, metadata: dict | None = None, skip_padding: bool = True) -> str:
    """Writes a versioned SavedModel for TF Serving and returns its directory.

    The signatures are a task's: `signatures(archive, model, tokenizer, max_seq_length)` adds its
    endpoints to a `keras.export.ExportArchive` (the model given is the float32 serving copy), and
    `metadata` (the task's name, labels, ...) goes to `assets.extra/tfbert_export.json` beside the
    tokenizer's config. Without `signatures`, the text classification signatures are written
    (`serving_default` raw text -> label/probabilities, `encoded`, `classify`/`regress`) from
    `task`, `label_names`, `text_pair` and `threshold`.

    Args:
        model: a task model taking the backbone's input dict (e.g. `BertClassifier`).
        tokenizer: the training tokenizer; its vocabulary becomes `assets/vocab.txt`.
        base_dir: the model base path a server polls; versions are its numeric sub-folders.
        version: defaults to `next_version(base_dir)`.
        label_names: class names (classification, multi-label); `assets/labels.txt`.
        task: "classification", "multi_label" or "regression".
        text_pair: the model reads sentence pairs (`text` and `text_pair`).
        max_seq_length: texts are truncated to this many tokens in the graph; defaults to 128,
            or the model's `max_position_embeddings` when that is smaller.
        threshold: multi-label decision threshold saved in the graph.
        warmup_texts: texts for `assets.extra/tf_serving_warmup_requests` (a few defaults).
        overwrite: replace an existing version instead of failing.
        skip_padding: the serving graph runs the encoder's per-token layers on the real tokens alone
            (`BertBackbone.skip_padding`; outputs at padded positions are then computed from zeros).
            Off for a task whose outputs at padded positions mean something (question answering).

    Raises:
        ExportError: the version exists (without `overwrite`), another version of `base_dir` serves another
            task or input (TF Serving would serve both as one model), or arguments do not fit.
    """
    base_dir = os.path.abspath(os.fspath(base_dir))
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ExportError(f"{base_dir}: is a file, not a directory to write model versions into")
    max_positions = model.get_config().get("backbone", {}).get("config", {}).get("config", {}).get(
        "max_position_embeddings")
    if max_seq_length is None:
        max_seq_length = min(128, max_positions or 128)
    if max_positions and max_seq_length > max_positions:
        raise ExportError(f"max_seq_length {max_seq_length} exceeds the model's max_position_embeddings "
                          f"({max_positions})")
    numbered = version is None  # (the next free number, also if another export takes this one meanwhile)
    version = int(version) if version is not None else next_version(base_dir)
    if version < 0:
        raise ExportError(f"{base_dir}: version must be a non-negative integer, found {version}")
    final_dir = os.path.join(base_dir, str(version))
    if os.path.exists(final_dir) and not overwrite:
        raise ExportError(f"{final_dir}: version {version} already exists; pass overwrite=True (--overwrite) "
                          "to replace it, or leave the version out to write the next one")
    _check_same_interface(base_dir, version, (metadata or {}).get("task") if signatures is not None else task,
                          bool(text_pair) if signatures is None else None)
    os.makedirs(base_dir, exist_ok=True)
    num_outputs = int(model.outputs[0].shape[-1])
    if signatures is None and task in ("classification", "multi_label"):
        label_names = list(label_names) if label_names else [str(i) for i in range(num_outputs)]
        if len(label_names) != num_outputs:
            raise ExportError(f"{base_dir}: {len(label_names)} label names for a model with {num_outputs} outputs")

    _say_labels_changed(base_dir, version, label_names if signatures is None else (metadata or {}).get("labels"))
    serving_model = float32_copy(model)
    fileio.remove_leftovers(base_dir)  # killed exports' folders
    # A hidden sibling of the versions: TF Serving only loads numeric folder names.
    tmp_dir = fileio.scratch_path(os.path.join(base_dir, str(version)))
    try:
        with padding_skipped(serving_model, skip_padding):  # the signatures are traced and written so
            if signatures is None:
                archive = _build_archive(serving_model, tokenizer, task, label_names, text_pair, max_seq_length,
                                         threshold)
                metadata = {"task": task, "labels": label_names, "text_pair": text_pair, "threshold": threshold}
            else:
                archive = _new_archive(serving_model, tokenizer)
                signatures(archive, serving_model, tokenizer, max_seq_length)
                metadata = dict(metadata or {})
                label_names = metadata.get("labels")
            _one_copy_per_variable(archive)
            archive.write_out(tmp_dir, verbose=False)
        _set_example_methods(tmp_dir)
        if label_names:
            with open(os.path.join(tmp_dir, "assets", "labels.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(label_names) + "\n")
        extra = os.path.join(tmp_dir, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        write_warmup_requests(os.path.join(extra, WARMUP_FILE), warmup_texts or DEFAULT_WARMUP_TEXTS,
                              signature_string_inputs(tmp_dir))
        with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump({**metadata, "max_seq_length": max_seq_length, "tokenizer": tokenizer.get_config()}, f,
                      indent=2, ensure_ascii=False)
        final_dir = _replace_dir(tmp_dir, final_dir, overwrite, numbered)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir


def read_metadata(version_dir: str):
    """The parsed `assets.extra/tfbert_export.json` of an export version (a dict when tfbert wrote it);
    {} for a SavedModel without one.

    Raises:
        OSError, ValueError: the file cannot be read, or is not JSON.
    """
    path = os.path.join(version_dir, "assets.extra", METADATA_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_same_interface(base_dir: str, version: int, task: str | None, text_pair: bool | None) -> None:
    """Refuses a version of another task (or, for classification, another input: one text or a pair) than
    the base path's other versions: TF Serving serves the versions of a base path under one model name,
    the newest by default, so its clients would get other inputs and outputs than they were written for."""
    for other in reversed(find_versions(base_dir)):
        if other == version:
            continue  # the version this export replaces (overwrite)
        try:
            existing = read_metadata(os.path.join(base_dir, str(other)))
        except (OSError, ValueError):
            continue  # unreadable: nothing to compare
        kind = existing.get("task") if isinstance(existing, dict) else None
        if kind is None or task is None:
            continue  # written by hand, or signatures without a task named: nothing to compare
        pair = bool(existing.get("text_pair")) if text_pair is not None else None
        if kind != task or (pair is not None and pair != text_pair):
            def shown(name, with_pair):
                return f"{name} model" + ("" if with_pair is None else " on text pairs" if with_pair else
                                          " on single texts")
            raise ExportError(f"{base_dir}: version {other} is a {shown(kind, pair)}, and this is a "
                              f"{shown(task, text_pair if pair is not None else None)}: TF Serving serves the "
                              "versions of a base path as one model, so its clients would get other inputs "
                              "and outputs; export into another directory")


def _say_labels_changed(base_dir: str, version: int, labels: Sequence[str] | None) -> None:
    """Warns when the labels differ from those of the newest other version of the base path: TF Serving
    moves its clients to this version, whose `label_id` and `probabilities` positions mean other labels."""
    for other in reversed(find_versions(base_dir)):
        if other == version:
            continue
        try:
            existing = read_metadata(os.path.join(base_dir, str(other))).get("labels")
        except (OSError, ValueError, AttributeError):
            return
        if labels and existing and list(existing) != list(labels):
            logger.warning("%s: version %d answers with the labels %s, this version with %s: a client that reads "
                           "label_id or probabilities by position gets other labels from it", base_dir, other,
                           ", ".join(existing), ", ".join(labels))
        return


@contextlib.contextmanager
def padding_skipped(model: keras.Model, skip: bool = True):
    """`model.backbone.skip_padding` set to `skip` inside the `with` block, so that the serving signatures
    traced there skip padding in their dense layers (or not), and restored after it: `model` may be the
    caller's own model (`float32_copy` returns a float32 model without LoRA as it is)."""
    backbone = model.backbone
    before = backbone.skip_padding
    backbone.skip_padding = skip
    try:
        yield
    finally:
        backbone.skip_padding = before


def _replace_dir(new_dir: str, final_dir: str, overwrite: bool, numbered: bool = False) -> str:
    """Puts the written `new_dir` at `final_dir` and returns where it went: with `numbered` (no version
    given) at the next free number when another export took `final_dir` while this one was writing."""
    if os.path.exists(final_dir) and overwrite:
        # one atomic exchange on Linux: a server polling the folder always finds a whole version
        fileio.replace_dir(new_dir, final_dir, fileio.scratch_path(final_dir, "old"))
        return final_dir
    base_dir = os.path.dirname(final_dir)
    while True:
        if not os.path.exists(final_dir):
            try:
                os.rename(new_dir, final_dir)  # fails if another export created it meanwhile (whole, not empty)
                return final_dir
            except OSError:
                if not os.path.isdir(final_dir):
                    raise
        if not numbered:
            raise ExportError(f"{final_dir}: created by another export while this one was writing")
        taken, final_dir = final_dir, os.path.join(base_dir, str(next_version(base_dir)))
        logger.warning("%s: written by another export meanwhile; this one is version %s", taken,
                       os.path.basename(final_dir))


DEFAULT_WARMUP_TEXTS = ["This is a warm-up request.", "", "Short.",
                        "A longer warm-up request, so that the server also traces a longer sequence length " * 4]


def _new_archive(model: keras.Model, tokenizer: BertTokenizer) -> keras.export.ExportArchive:
    """An ExportArchive tracking the model's variables and the vocabulary (its asset)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer.vocab_table)
    return archive


def _one_copy_per_variable(archive: keras.export.ExportArchive) -> None:
    """Has the archive save each weight once. On the TensorFlow backend `track()` lists the model's
    `keras.Variable`s and `write_out` adds the `tf.Variable`s inside them that the endpoints captured,
    two objects per weight that the checkpoint does not merge: every export held its weights twice, on
    disk and in a server's memory (keras-team/keras#23553). Listing the captured `tf.Variable`s
    themselves (under a distribution strategy, the first replica's, which the endpoints capture) makes
    the two lists name the same objects."""
    trackable = getattr(archive, "_tf_trackable", None)
    captured_by = getattr(archive, "_get_variables_used_by_endpoints", None)
    if trackable is None or captured_by is None:  # (a Keras whose archive is built otherwise)
        return
    captured = {id(variable) for group in captured_by() for variable in group}

    def saved_once(variable):
        value = variable.value if isinstance(variable, keras.Variable) else variable
        value = getattr(value, "_primary", value)  # a MirroredVariable's component on the first replica
        # a variable no endpoint reads (a dropout seed) is saved once as it is, from this list alone
        return value if id(value) in captured else variable

    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        setattr(trackable, name, [saved_once(variable) for variable in getattr(trackable, name)])


def _build_archive(model, tokenizer, task, label_names, text_pair, max_seq_length, threshold):
    """A `keras.export.ExportArchive` with our signatures.

    ExportArchive (not a bare `tf.saved_model.save` of a tf.Module) is what makes the
    variables restorable by the session-based C++ loader that TF Serving and saved_model_cli
    use; tracking the vocabulary table brings `vocab.txt` in as an asset.
    """
    archive = _new_archive(model, tokenizer)
    labels = tf.constant(label_names or [""], tf.string)

    def heads(features):
        logits = tf.cast(model(features, training=False), tf.float32)
        if task == "regression":
            return {"score": logits[:, 0]}
        if task == "multi_label":
            probabilities = tf.sigmoid(logits)
            return {"logits": logits, "probabilities": probabilities, "predicted": probabilities > threshold}
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(logits, axis=-1)
        return {"logits": logits, "probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(labels, label_id)}

    # One tf.function, so the tokenizer graph is traced once and called from every text signature
    # (tracing it per signature, and again when saving, was about half of the export time).
    @tf.function(autograph=False)
    def tokenize(text, pair=None):
        return tokenizer(text, pair, max_length=max_seq_length, padding="longest", truncation=True)

    if text_pair:
        def serve_text(text, text_pair):
            return heads(tokenize(text, text_pair))
        text_signature = [tf.TensorSpec([None], tf.string, name="text"),
                          tf.TensorSpec([None], tf.string, name="text_pair")]
    else:
        def serve_text(text):
            return heads(tokenize(text))
        text_signature = [tf.TensorSpec([None], tf.string, name="text")]
    archive.add_endpoint("serving_default", serve_text, input_signature=text_signature)

    for name, dtype in (("encoded", tf.int32), ("encoded_int64", tf.int64)):
        def serve_encoded(input_ids, token_type_ids, attention_mask):
            return heads({"input_ids": tf.cast(input_ids, tf.int32), "token_type_ids": tf.cast(token_type_ids, tf.int32),
                          "attention_mask": tf.cast(attention_mask, tf.int32)})
        archive.add_endpoint(name, serve_encoded, input_signature=[
            tf.TensorSpec([None, None], dtype, name=n) for n in ("input_ids", "token_type_ids", "attention_mask")])

    def serve_examples(inputs):
        # no default: an Example without the feature (a misspelt name) is refused ("Feature: text ... is
        # required but could not be found"), not answered as an empty text
        spec = {"text": tf.io.FixedLenFeature([], tf.string)}
        if text_pair:
            spec["text_pair"] = tf.io.FixedLenFeature([], tf.string)
        parsed = tf.io.parse_example(inputs, spec)
        out = heads(tokenize(parsed["text"], parsed.get("text_pair")))
        if task == "regression":
            return {"outputs": out["score"]}
        classes = tf.tile(tf.expand_dims(labels, 0), [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": out["probabilities"]}
    archive.add_endpoint("regress" if task == "regression" else "classify", serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    return archive


def _set_example_methods(saved_model_dir: str) -> None:
    """Saving marks every signature as predict; TF Serving's :classify and :regress APIs need
    the `classify` / `regress` signatures to carry their own method names."""
    proto = _read_saved_model(saved_model_dir)
    for meta_graph in proto.meta_graphs:
        for name, method in EXAMPLE_METHODS.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "wb") as f:
        f.write(proto.SerializeToString())


def write_warmup_requests(path: str, texts: list[str], input_names: Sequence[str] = ("text",)) -> None:
    """`assets.extra/tf_serving_warmup_requests`: PredictionLogs TF Serving replays at load
    (`--enable_model_warmup`, on by default), so the first real request does not pay for the first
    call. A request that does not fit the signature fails the version's load, so `input_names` are
    the `serving_default` signature's own string inputs (`signature_string_inputs`): `text`, `text`
    and `text_pair`, `question` and `context`; the i-th input gets the texts turned by i places."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for size in (1, len(texts)):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
            for turn, name in enumerate(input_names):
                batch = (texts[turn:] + texts[:turn])[:size]
                request.inputs[name].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def signature_string_inputs(saved_model_dir: str, signature: str = "serving_default") -> list[str]:
    """The names of a SavedModel signature's inputs, sorted, all strings (texts), as the warm-up
    requests need (an input they left out would fail TF Serving's load)."""
    from tensorflow.core.framework import types_pb2

    inputs = _read_saved_model(saved_model_dir).meta_graphs[0].signature_def[signature].inputs
    others = sorted(name for name, info in inputs.items() if info.dtype != types_pb2.DT_STRING)
    if others:
        raise ExportError(f"{saved_model_dir}: signature '{signature}' takes inputs other than texts "
                          f"({', '.join(others)}): no warm-up requests can be written for it")
    return sorted(inputs)


def _read_saved_model(saved_model_dir: str):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def saved_model_op_types(saved_model_dir: str) -> set[str]:
    """Every op type in a SavedModel's graph and its function library."""
    proto = _read_saved_model(saved_model_dir)
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def read_allowlist(path: str = ALLOWLIST_FILE) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.split("#")[0].strip() for line in f if line.split("#")[0].strip()}



__all__ = ["export_saved_model", "next_version", "ExportError", "saved_model_op_types", "read_allowlist",
           "write_warmup_requests", "signature_string_inputs", "find_versions", "float32_copy"]
