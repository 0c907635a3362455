"""Fixtures of the serving tests: one tiny export per session, loaded in-process and as a server sees it."""

import os

import pytest


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
