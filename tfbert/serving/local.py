"""`LocalPredictor`: an export run in this process, through the signatures TF Serving would call."""

from __future__ import annotations

import os
import re

import numpy as np

from tfbert.serving.base import DEFAULT_SIGNATURE, SAVED_MODEL_FILE, Predictor, ServingClientError, make_example
from tfbert.serving.results import classifications, rows_from_columns


def resolve_export_dir(export_dir: str, version: int | None = None) -> str:
    """The SavedModel folder of an export: `export_dir` itself when it holds `saved_model.pb`,
    else its numeric version sub-folder `version` (default: the highest one); a training run's folder
    stands for its `saved_model/`.

    Raises:
        ServingClientError: no such folder, version, or SavedModel (the message says which).
    """
    path = os.path.abspath(os.fspath(export_dir))
    if not os.path.isdir(path):
        raise ServingClientError(f"{path}: no such export folder", target=path)
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        if version is not None and os.path.basename(path) != str(version):
            raise ServingClientError(f"{path}: is a SavedModel folder, not a base folder with version {version}",
                                     target=path)
        return path
    versions = sorted(int(name) for name in os.listdir(path)
                      if re.fullmatch(r"\d+", name) and os.path.isfile(os.path.join(path, name, SAVED_MODEL_FILE)))
    if not versions and os.path.isdir(os.path.join(path, "saved_model")):  # a run folder: its export
        return resolve_export_dir(os.path.join(path, "saved_model"), version)
    if not versions:
        raise ServingClientError(f"{path}: no {SAVED_MODEL_FILE} here and no numeric version folders holding one; "
                                 "expected an export written by tfbert.export (<base>/<version>/)", target=path)
    if version is None:
        return os.path.join(path, str(versions[-1]))
    if int(version) not in versions:
        raise ServingClientError(f"{path}: no version {version}; found versions {versions}", target=path)
    return os.path.join(path, str(int(version)))


def read_export_metadata(version_dir: str) -> dict:
    """`assets.extra/tfbert_export.json` of an export ({} for SavedModels not written by tfbert)."""
    from tfbert.export import METADATA_FILE, read_metadata

    path = os.path.join(version_dir, "assets.extra", METADATA_FILE)
    try:
        metadata = read_metadata(version_dir)
    except (OSError, ValueError) as e:
        raise ServingClientError(f"{path}: unreadable export metadata: {e}", target=path) from None
    if not isinstance(metadata, dict):
        raise ServingClientError(f"{path}: expected a JSON object, found {type(metadata).__name__}", target=path)
    return metadata


class LocalPredictor(Predictor):
    """Runs an export in this process, through the same signatures TF Serving would call.

    Args:
        export_dir: a version folder (`<base>/3`) or a base folder (its highest version, or
            `version`).
        version: the version to load from a base folder.
        batch_size: texts per signature call.

    Attributes:
        export_dir: the version folder loaded.
        metadata: the export's `tfbert_export.json` ({} when absent): task, labels, ...
        text_pair: the model reads sentence pairs.

    Raises:
        ServingClientError: the folder holds no loadable SavedModel.
    """

    def __init__(self, export_dir: str, version: int | None = None, batch_size: int = 64):
        super().__init__(batch_size)
        self.export_dir = resolve_export_dir(export_dir, version)
        self.metadata = read_export_metadata(self.export_dir)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        try:
            self._model = tf.saved_model.load(self.export_dir)
        except (OSError, ValueError, tf.errors.OpError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ServingClientError(f"{self.export_dir}: cannot load the SavedModel: {first_line}",
                                     target=self.export_dir) from None
        default = self._model.signatures.get(DEFAULT_SIGNATURE)
        self.text_pair = bool(self.metadata.get("text_pair",
                                                default is not None and "text_pair" in self._input_names(default)))

    @property
    def signatures(self) -> list[str]:
        return sorted(self._model.signatures.keys())

    @staticmethod
    def _input_names(function) -> list[str]:
        return sorted(function.structured_input_signature[1])

    def _signature(self, name: str):
        if name not in self._model.signatures:
            raise ServingClientError(f"{self.export_dir}: no signature {name!r}; the export has "
                                     f"{', '.join(self.signatures)}", target=self.export_dir)
        return self._model.signatures[name]

    def _call(self, function, name: str, **inputs) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            outputs = function(**{key: tf.constant(value, tf.string) for key, value in inputs.items()})
        except (tf.errors.OpError, ValueError, TypeError) as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ServingClientError(f"{self.export_dir}: signature {name!r} failed: {message}",
                                     target=self.export_dir) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def _predict_batch(self, inputs, signature):
        function = self._signature(signature)
        expected = self._input_names(function)
        if set(inputs) == {"text", "text_pair"} and "text_pair" not in expected and "text" in expected:
            raise ServingClientError(f"{self.export_dir}: the model reads single texts, but text pairs were given",
                                     target=self.export_dir)
        if set(inputs) == {"text"} and "text_pair" in expected:
            raise ServingClientError(f"{self.export_dir}: the model reads sentence pairs (text, text_pair); give "
                                     "a pair for every text (a TAB between the two in input lines)",
                                     target=self.export_dir)
        if sorted(inputs) != expected:
            hint = f"; use {DEFAULT_SIGNATURE!r}" if "input_ids" in expected else ""
            raise ServingClientError(f"{self.export_dir}: signature {signature!r} takes {', '.join(expected)}, not "
                                     f"{', '.join(sorted(inputs))}{hint}", target=self.export_dir)
        return rows_from_columns(self._call(function, signature, **inputs))

    def _classify_batch(self, texts, pairs, signature):
        outputs = self._call_examples(texts, pairs, signature)
        return classifications(outputs.get("classes"), outputs.get("scores"), len(texts))

    def _regress_batch(self, texts, pairs, signature):
        outputs = self._call_examples(texts, pairs, signature)
        if "outputs" not in outputs:
            raise ServingClientError(f"{self.export_dir}: signature {signature!r} has no `outputs` to regress "
                                     f"(it answers {', '.join(sorted(outputs))})", target=self.export_dir)
        return [float(value) for value in outputs["outputs"].reshape(len(texts), -1)[:, 0]]

    def _call_examples(self, texts, pairs, signature) -> dict:
        """A tf.Example signature (`classify`, `regress`) called on the texts as serialized Examples."""
        function = self._signature(signature)
        inputs = self._input_names(function)
        if inputs != ["inputs"]:
            raise ServingClientError(f"{self.export_dir}: signature {signature!r} takes {', '.join(inputs)}, not "
                                     "serialized tf.Examples (`inputs`)", target=self.export_dir)
        if self.text_pair and pairs is None:
            raise ServingClientError(f"{self.export_dir}: the model reads sentence pairs (text, text_pair); give "
                                     "a pair for every text", target=self.export_dir)
        serialized = [make_example(text, None if pairs is None else pairs[i]).SerializeToString()
                      for i, text in enumerate(texts)]
        return self._call(function, signature, inputs=serialized)
