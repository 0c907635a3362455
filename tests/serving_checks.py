"""A tiny sentiment export, its fixtures and the checks the serving tests share (imported as a plain module:
a conftest.py in tests/serving would shadow tests/conftest.py for `from conftest import ...`)."""

import importlib.util
import os
import socket

import numpy as np
import pytest

LABELS = ["neg", "neutral", "pos"]
MODEL_NAME = "sentiment"
PREDICT_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines", "predict.py")
TEXTS = ["good movie", "bad film", "not a very great film", "hello world"]


def build_export(tmp_path_factory):
    """A 2-layer random classifier (3 labels) exported with its tokenizer; returns its folders."""
    import keras

    from tfbert import BertBackbone, BertConfig
    from tfbert.export import export_saved_model
    from tfbert.tasks import BertClassifier
    from tfbert.text import BertTokenizer

    tmp_path = tmp_path_factory.mktemp("serving_client")
    words = "the a good bad movie film great awful not very hello world".split()
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    keras.utils.set_random_seed(0)
    model = BertClassifier(BertBackbone(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=64,
                                                   max_position_embeddings=64)), num_classes=3)
    base_dir = str(tmp_path / "export")
    version_dir = export_saved_model(model, tokenizer, base_dir, label_names=LABELS)
    return {"base_dir": base_dir, "version_dir": version_dir, "version": int(os.path.basename(version_dir))}


def assert_same_predictions(results, expected, tolerance=1e-6):
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        assert list(result) == list(reference)  # same outputs, same order
        assert result["label"] == reference["label"] and result["label_id"] == reference["label_id"]
        np.testing.assert_allclose(result["probabilities"], reference["probabilities"], atol=tolerance, rtol=0)
        np.testing.assert_allclose(result["logits"], reference["logits"], atol=tolerance, rtol=0)


def assert_same_classifications(results, expected, tolerance=1e-6):
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        assert [label for label, _ in result] == [label for label, _ in reference] == LABELS
        np.testing.assert_allclose([s for _, s in result], [s for _, s in reference], atol=tolerance, rtol=0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_predict_cli():
    """`pipelines/predict.py` as a module, to call its `run` and `main` in this process."""
    spec = importlib.util.spec_from_file_location("predict_cli", PREDICT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def replay_warmup_requests(version_dir, signature=None):
    """Calls the export's signature with each request of `assets.extra/tf_serving_warmup_requests`, as TF
    Serving does at load (a request that fails fails the load); returns how many were replayed."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from tensorflow_serving.apis import prediction_log_pb2

    signature = signature or tf.saved_model.load(version_dir).signatures["serving_default"]
    path = os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    replayed = 0
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        assert sorted(inputs) == sorted(signature.structured_input_signature[1])
        signature(**inputs)
        replayed += 1
    return replayed


# ---- fixtures (import them into a test module to use them) ----


@pytest.fixture(scope="session")
def export(tiny_sentiment_export):
    return tiny_sentiment_export


@pytest.fixture(scope="session")
def local(export):
    from tfbert.serving import LocalPredictor

    return LocalPredictor(export["base_dir"])


@pytest.fixture(scope="session")
def served_model(export):
    """The export as a server sees it: loaded signatures, their inputs and method names."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(export["version_dir"], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    methods = {name: signature.method_name for name, signature in proto.meta_graphs[0].signature_def.items()}
    loaded = tf.saved_model.load(export["version_dir"])
    return {"loaded": loaded, "methods": methods, "versions": [export["version"]],
            "inputs": {name: fn.structured_input_signature[1] for name, fn in loaded.signatures.items()}}
