"""tfbert.serving's gRPC client against a stub of TF Serving's PredictionService that runs the real export."""

import re

import pytest
from serving_checks import export, local, served_model  # noqa: F401,F811 (fixtures)
from serving_checks import (
    MODEL_NAME,
    TEXTS,
    assert_same_classifications,
    assert_same_predictions,
)

CLASSIFY_METHOD = "tensorflow/serving/classify"


# ---- a TF Serving gRPC stub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_server(request, served_model):
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    received = []

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def _signature(self, model_spec, context, default):
            version = model_spec.version.value if model_spec.HasField("version") else None
            if model_spec.name != MODEL_NAME or (version is not None and version not in served_model["versions"]):
                spec = f"Specific({model_spec.name}, {version})" if version is not None else \
                    f"Latest({model_spec.name})"
                context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec}")
            signature = model_spec.signature_name or default
            if signature not in served_model["inputs"]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Serving signature name: \"{signature}\" not found in signature def")
            return signature, version or served_model["versions"][-1]

        def Predict(self, request, context):
            received.append(request)
            signature, version = self._signature(request.model_spec, context, "serving_default")
            specs = served_model["inputs"][signature]
            if set(request.inputs) != set(specs):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"input size does not match signature: {len(request.inputs)}!={len(specs)} "
                              f"Sent: {sorted(request.inputs)}. Expected: {sorted(specs)}")
            feed = {}
            for name, proto in request.inputs.items():
                spec = specs[name]
                if proto.dtype != spec.dtype.as_datatype_enum:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"Expects arg {name} to be {spec.dtype.name} but "
                                  f"{tf.dtypes.as_dtype(proto.dtype).name} is provided")
                array = tf.make_ndarray(proto)
                if not tf.TensorShape(array.shape).is_compatible_with(spec.shape):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{name}: shape {list(array.shape)} does not fit {spec.shape}")
                feed[name] = tf.constant(array, spec.dtype)
            try:
                outputs = served_model["loaded"].signatures[signature](**feed)
            except (tf.errors.OpError, ValueError) as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e).splitlines()[0])
            wanted = list(request.output_filter) or list(outputs)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = MODEL_NAME
            response.model_spec.signature_name = signature
            response.model_spec.version.value = version
            for name in wanted:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
            return response

        def Classify(self, request, context):
            received.append(request)
            signature, version = self._signature(request.model_spec, context, "serving_default")
            method = served_model["methods"][signature]
            if method != CLASSIFY_METHOD:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Expected classification signature method_name "
                                                                f"to be {CLASSIFY_METHOD}. Was: {method}")
            kind = request.input.WhichOneof("kind")
            if kind is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Input is empty")
            examples = list(getattr(request.input, kind).examples)
            if not examples:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Input is empty")
            if kind == "example_list_with_context":
                context_example = request.input.example_list_with_context.context
                for example in examples:
                    example.MergeFrom(context_example)
            (input_name,) = served_model["inputs"][signature]
            outputs = served_model["loaded"].signatures[signature](
                **{input_name: tf.constant([e.SerializeToString() for e in examples])})
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = MODEL_NAME
            response.model_spec.signature_name = signature
            response.model_spec.version.value = version
            for classes, scores in zip(outputs["classes"].numpy(), outputs["scores"].numpy()):
                classification = response.result.classifications.add()
                for label, score in zip(classes, scores):
                    classification.classes.add(label=label.decode("utf-8"), score=float(score))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    request.addfinalizer(lambda: server.stop(grace=None).wait(5))
    return {"address": f"127.0.0.1:{port}", "requests": received}


def test_grpc_request_is_a_string_tensor_per_text():
    from tensorflow.core.framework import types_pb2

    from tfbert.serving import grpc_classify_request, grpc_inputs_request, grpc_predict_request

    request = grpc_predict_request(MODEL_NAME, ["good movie", "bad", "ünïcode"], signature_name="serving_default",
                                   version=4)
    assert request.model_spec.name == MODEL_NAME and request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 4
    assert list(request.inputs) == ["text"]
    tensor = request.inputs["text"]
    assert tensor.dtype == types_pb2.DT_STRING and [d.size for d in tensor.tensor_shape.dim] == [3]
    assert [v.decode("utf-8") for v in tensor.string_val] == ["good movie", "bad", "ünïcode"]
    pair_request = grpc_predict_request(MODEL_NAME, ["a"], ["b"])
    assert sorted(pair_request.inputs) == ["text", "text_pair"] and not pair_request.model_spec.HasField("version")

    words = grpc_inputs_request(MODEL_NAME, {"tokens": [["Ada", "met", "Bob"], ["Hi", "", ""]]}, "tokens")
    tensor = words.inputs["tokens"]  # a [batch, words] tensor, as a tagger's `tokens` signature takes
    assert [d.size for d in tensor.tensor_shape.dim] == [2, 3]
    assert tensor.string_val == [b"Ada", b"met", b"Bob", b"Hi", b"", b""]

    classify = grpc_classify_request(MODEL_NAME, ["good movie"])
    assert classify.model_spec.signature_name == "classify"
    (example,) = classify.input.example_list.examples
    assert example.features.feature["text"].bytes_list.value == [b"good movie"]


def test_grpc_predictor_matches_local(grpc_server, local, export):
    from tensorflow.core.framework import types_pb2

    from tfbert.serving import GrpcPredictor

    received = grpc_server["requests"]
    received.clear()
    with GrpcPredictor(grpc_server["address"], MODEL_NAME, batch_size=3) as predictor:
        assert_same_predictions(predictor.predict(TEXTS), local.predict(TEXTS), tolerance=1e-7)
        assert len(received) == 2
        first = received[0]
        assert first.model_spec.name == MODEL_NAME and first.model_spec.signature_name == "serving_default"
        assert not first.model_spec.HasField("version")
        assert list(first.inputs) == ["text"] and first.inputs["text"].dtype == types_pb2.DT_STRING
        assert [d.size for d in first.inputs["text"].tensor_shape.dim] == [3]
        assert [d.size for d in received[1].inputs["text"].tensor_shape.dim] == [1]

    received.clear()
    with GrpcPredictor(grpc_server["address"], MODEL_NAME, version=export["version"]) as predictor:
        assert_same_classifications(predictor.classify(TEXTS), local.classify(TEXTS), tolerance=1e-7)
    (classify,) = received
    assert classify.model_spec.signature_name == "classify" and classify.model_spec.version.value == export["version"]
    assert [e.features.feature["text"].bytes_list.value[0].decode() for e in classify.input.example_list.examples] \
        == TEXTS


def test_grpc_errors_name_the_address_and_status(grpc_server):
    from tfbert.serving import GrpcPredictor, ServingClientError

    address = grpc_server["address"]
    with pytest.raises(ServingClientError, match=re.escape(
            f"{address} (model 'other'): Predict failed: NOT_FOUND: Servable not found for request: Latest(other)")):
        GrpcPredictor(address, "other").predict(["x"])
    with pytest.raises(ServingClientError, match="INVALID_ARGUMENT: input size does not match signature") as caught:
        GrpcPredictor(address, MODEL_NAME).predict(["x"], signature="encoded")
    assert caught.value.status == "INVALID_ARGUMENT"
    with pytest.raises(ServingClientError, match="Classify failed: INVALID_ARGUMENT: Expected classification"):
        GrpcPredictor(address, MODEL_NAME).classify(["x"], signature="serving_default")
    with pytest.raises(ServingClientError, match="not a URL"):
        GrpcPredictor("http://" + address, MODEL_NAME)
