"""`GrpcPredictor`: TF Serving's gRPC `PredictionService` (Predict and Classify); needs `grpcio` and
`tensorflow-serving-api`."""

from __future__ import annotations

from typing import Callable, Sequence

from tfbert.serving.base import (CLASSIFY_SIGNATURE, DEFAULT_SIGNATURE, REGRESS_SIGNATURE, Predictor,
                                 ServingClientError, check_inputs, check_texts, make_example)
from tfbert.serving.results import rows_from_columns


def _model_spec(model_name: str, signature_name: str, version: int | None):
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    if version is not None:
        spec.version.value = int(version)
    return spec


def grpc_predict_request(model_name: str, texts: Sequence[str], pairs: Sequence[str] | None = None,
                         signature_name: str = DEFAULT_SIGNATURE, version: int | None = None):
    """A `PredictRequest`: inputs `text` (and `text_pair`), DT_STRING tensors of shape [n].

    Returns:
        `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    texts, pairs = check_texts(texts, pairs)
    inputs = {"text": texts} if pairs is None else {"text": texts, "text_pair": pairs}
    return grpc_inputs_request(model_name, inputs, signature_name, version)


def grpc_inputs_request(model_name: str, inputs: dict[str, Sequence[str]], signature_name: str = DEFAULT_SIGNATURE,
                        version: int | None = None):
    """A `PredictRequest` with one DT_STRING tensor of shape [n] (or [n, m]: lists of strings) per named input."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    inputs = check_inputs(inputs)
    request = predict_pb2.PredictRequest(model_spec=_model_spec(model_name, signature_name, version))
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(_string_tensor(tf, values))
    return request


def _string_tensor(tf, values: list):
    """A DT_STRING tensor of shape [n] (strings) or [n, m] (equal-length lists of strings)."""
    if values and isinstance(values[0], list):
        encoded = [[value.encode("utf-8") for value in row] for row in values]
        return tf.make_tensor_proto(encoded, dtype=tf.string, shape=[len(values), len(values[0])])
    return tf.make_tensor_proto([value.encode("utf-8") for value in values], dtype=tf.string, shape=[len(values)])


def grpc_classify_request(model_name: str, texts: Sequence[str], pairs: Sequence[str] | None = None,
                          signature_name: str = CLASSIFY_SIGNATURE, version: int | None = None):
    """A `ClassificationRequest` whose `input.example_list` holds one tf.Example per text.

    Returns:
        `tensorflow_serving.apis.classification_pb2.ClassificationRequest`.
    """
    from tensorflow_serving.apis import classification_pb2

    return classification_pb2.ClassificationRequest(model_spec=_model_spec(model_name, signature_name, version),
                                                    input=_example_input(texts, pairs))


def grpc_regress_request(model_name: str, texts: Sequence[str], pairs: Sequence[str] | None = None,
                         signature_name: str = REGRESS_SIGNATURE, version: int | None = None):
    """A `RegressionRequest` whose `input.example_list` holds one tf.Example per text.

    Returns:
        `tensorflow_serving.apis.regression_pb2.RegressionRequest`.
    """
    from tensorflow_serving.apis import regression_pb2

    return regression_pb2.RegressionRequest(model_spec=_model_spec(model_name, signature_name, version),
                                            input=_example_input(texts, pairs))


def _example_input(texts: Sequence[str], pairs: Sequence[str] | None):
    """The `Input` of a Classify or Regress request: one tf.Example per text (and pair)."""
    from tensorflow_serving.apis import input_pb2

    texts, pairs = check_texts(texts, pairs)
    examples = [make_example(text, None if pairs is None else pairs[i]) for i, text in enumerate(texts)]
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))


class GrpcPredictor(Predictor):
    """Queries TF Serving's gRPC API (`--port`, 8500 by convention).

    Args:
        address: `host:port` of the server.
        model_name: the served model's name.
        version: a model version; the latest one when None.
        timeout: seconds to wait for each answer.
        batch_size: texts per request.

    Raises:
        ServingClientError: `grpcio`/`tensorflow-serving-api` are missing, or (from
        predict/classify) the server cannot be reached or answers with an error status.
    """

    def __init__(self, address: str, model_name: str, version: int | None = None, timeout: float = 30.0,
                 batch_size: int = 64):
        super().__init__(batch_size)
        address = address.strip()
        if address.startswith(("http://", "https://")) or not address:
            raise ServingClientError(f"{address!r}: expected a gRPC address host:port (8500 by convention), not "
                                     "a URL; a REST URL goes to RestPredictor", target=address)
        if not model_name:
            raise ServingClientError(f"{address}: a model name is needed", target=address)
        try:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError as e:
            raise ServingClientError(f"gRPC needs grpcio and tensorflow-serving-api ({e}); "
                                     "pip install tensorflow-serving-api", target=address) from None
        self._grpc = grpc
        self.address = address
        self.model_name = model_name
        self.version = None if version is None else int(version)
        self.timeout = float(timeout)
        # Long batches of probabilities can pass gRPC's 4 MB default.
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1),
                                                                ("grpc.max_send_message_length", -1)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _rpc(self, method: Callable, request, name: str):
        grpc = self._grpc
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            target = f"{self.address} (model {self.model_name!r})"
            if code == grpc.StatusCode.UNAVAILABLE:
                message = f"{self.address}: cannot reach TF Serving over gRPC ({details})"
            elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                message = f"{self.address}: no answer to {name} within {self.timeout:g} s"
            else:
                message = f"{target}: {name} failed: {getattr(code, 'name', code)}: {details}"
            raise ServingClientError(message, target=self.address, status=getattr(code, "name", None),
                                     server_message=details) from None

    def _predict_batch(self, inputs, signature):
        import tensorflow as tf

        size = len(next(iter(inputs.values())))
        request = grpc_inputs_request(self.model_name, inputs, signature, self.version)
        response = self._rpc(self._stub.Predict, request, "Predict")
        columns = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        rows = rows_from_columns(columns)
        if len(rows) != size:
            raise ServingClientError(f"{self.address}: Predict answered {len(rows)} rows for {size} examples",
                                     target=self.address)
        return rows

    def _regress_batch(self, texts, pairs, signature):
        request = grpc_regress_request(self.model_name, texts, pairs, signature, self.version)
        response = self._rpc(self._stub.Regress, request, "Regress")
        results = [float(regression.value) for regression in response.result.regressions]
        if len(results) != len(texts):
            raise ServingClientError(f"{self.address}: Regress answered {len(results)} values for {len(texts)} "
                                     "texts", target=self.address)
        return results

    def _classify_batch(self, texts, pairs, signature):
        request = grpc_classify_request(self.model_name, texts, pairs, signature, self.version)
        response = self._rpc(self._stub.Classify, request, "Classify")
        results = [[(c.label, float(c.score)) for c in classification.classes]
                   for classification in response.result.classifications]
        if len(results) != len(texts):
            raise ServingClientError(f"{self.address}: Classify answered {len(results)} rows for {len(texts)} "
                                     "texts", target=self.address)
        return results

    def close(self) -> None:
        self._channel.close()
