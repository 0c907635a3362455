"""tfbert.serving's REST client against a stub of TF Serving's REST front end.

The stub checks each request the way TF Serving's JSON front end does (paths, keys, dtypes, shapes,
signature method names) and runs the real exported SavedModel, answering in TF Serving's formats
(`predictions` / `results` / `error`), so the client is tested against the real protocol.
"""

import base64
import http.server
import json
import re
import socket
import threading

import numpy as np
import pytest
from serving_checks import export, local, served_model  # noqa: F401,F811 (fixtures)
from serving_checks import (
    MODEL_NAME,
    TEXTS,
    assert_same_classifications,
    assert_same_predictions,
    closed_port,
)

CLASSIFY_METHOD = "tensorflow/serving/classify"


# ---- a TF Serving REST stub --------------------------------------------------------------------

_REST_PATH = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?:(?P<verb>predict|classify)")


class _RestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _json_value(value, as_bytes=False):
    """A numpy output value as TF Serving writes it: floats in their shortest float32 form."""
    if isinstance(value, np.ndarray):
        return [_json_value(v, as_bytes) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()} if as_bytes else value.decode("utf-8")
    if isinstance(value, np.floating):
        return float(str(np.float32(value)))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(type(value))


def _check_json_tensor(value, spec, where):
    """One instance's value for an input of `spec` ([batch, ...]): rank and element types."""
    import tensorflow as tf

    array = np.asarray(value, dtype=object)
    rank = len(spec.shape) - 1
    if array.ndim != rank or any(d is not None and d != n for d, n in zip(spec.shape[1:], array.shape)):
        raise _RestError(400, f"{where}: expected shape {spec.shape[1:]}, found {json.dumps(value)}")
    for leaf in array.reshape(-1):
        ok = {tf.string: isinstance(leaf, str), tf.bool: isinstance(leaf, bool)}.get(
            spec.dtype, isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
            and (spec.dtype.is_floating or isinstance(leaf, int)))
        if not ok:
            raise _RestError(400, f"{where}: JSON Value: {json.dumps(leaf)} is not of expected type: {spec.dtype.name}")


def _feature(value, name):
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, str) or (isinstance(v, dict) and set(v) == {"b64"}) for v in values):
        data = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode("utf-8") for v in values]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
    if all(isinstance(v, (bool, int)) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    raise _RestError(400, f"Feature: {name} has element with unexpected JSON type: {json.dumps(value)}")


def _rest_predict(served, body):
    import tensorflow as tf

    unexpected = set(body) - {"signature_name", "instances"}
    if unexpected:  # TF Serving also takes the columnar "inputs"; tfbert's client sends rows only
        raise _RestError(400, f"unexpected keys {sorted(unexpected)}; expected 'signature_name' and 'instances'")
    signature = _signature_name(served, body)
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise _RestError(400, "Missing 'inputs' or 'instances' key" if instances is None
                         else "Excepting 'instances' to be an list/array")
    if not instances:
        raise _RestError(400, "No values in 'instances' array")
    specs = served["inputs"][signature]
    names = sorted(specs)
    columns = {name: [] for name in names}
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) == {"b64"}:
            raise _RestError(400, f"Expecting object but got list at item {i} of input list"
                             if len(names) > 1 else "the stub expects one object per instance")
        if sorted(instance) != names:
            raise _RestError(400, f"Failed to process element: {i} of 'instances' list. JSON object: "
                                  f"{json.dumps(instance)} keys must be equal to: {','.join(names)}")
        for name in names:
            _check_json_tensor(instance[name], specs[name], f"Failed to process element: {i} key: {name}")
            columns[name].append(instance[name])
    try:
        outputs = served["loaded"].signatures[signature](
            **{name: tf.constant(column, specs[name].dtype) for name, column in columns.items()})
    except (tf.errors.OpError, ValueError) as e:
        raise _RestError(400, str(e).splitlines()[0]) from None
    outputs = {name: value.numpy() for name, value in sorted(outputs.items())}
    rows = []
    for i in range(len(instances)):
        row = {name: _json_value(value[i], name.endswith("_bytes")) for name, value in outputs.items()}
        rows.append(row if len(row) > 1 else next(iter(row.values())))
    return {"predictions": rows}


def _rest_classify(served, body):
    import tensorflow as tf

    unexpected = set(body) - {"signature_name", "examples", "context"}
    if unexpected:
        raise _RestError(400, f"unexpected keys {sorted(unexpected)}")
    signature = _signature_name(served, body)
    method = served["methods"][signature]
    if method != CLASSIFY_METHOD:
        raise _RestError(400, f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {method}")
    examples = body.get("examples")
    if examples is None:
        raise _RestError(400, "When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list) or not examples:
        raise _RestError(400, "Expecting 'examples' value to be a non-empty list/array")
    context = body.get("context", {})
    serialized = []
    for example in [context] + examples:
        if not isinstance(example, dict):
            raise _RestError(400, f"Example must be JSON object but got JSON {json.dumps(example)}")
    for example in examples:
        if set(example) & set(context):
            raise _RestError(400, "features in 'context' must not appear in 'examples'")
        features = {name: _feature(value, name) for name, value in {**context, **example}.items()}
        serialized.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    (input_name,) = served["inputs"][signature]
    outputs = served["loaded"].signatures[signature](**{input_name: tf.constant(serialized)})
    classes, scores = outputs["classes"].numpy(), outputs["scores"].numpy()
    return {"results": [[[_json_value(c), _json_value(s)] for c, s in zip(row_classes, row_scores)]
                        for row_classes, row_scores in zip(classes, scores)]}


def _signature_name(served, body):
    signature = body.get("signature_name", "serving_default")
    if not isinstance(signature, str):
        raise _RestError(400, "'signature_name' key must be a string value.")
    if signature not in served["inputs"]:
        raise _RestError(400, f"Serving signature name: \"{signature}\" not found in signature def")
    return signature


@pytest.fixture(scope="module")
def rest_server(request, served_model):
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                match = _REST_PATH.fullmatch(self.path)
                if not match:
                    raise _RestError(404, f"Malformed request: POST {self.path}")
                version = match["version"]
                if match["name"] != MODEL_NAME or (version and int(version) not in served_model["versions"]):
                    spec = f"Specific({match['name']}, {version})" if version else f"Latest({match['name']})"
                    raise _RestError(404, f"Servable not found for request: {spec}")
                try:
                    parsed = json.loads(body)
                except ValueError as e:
                    raise _RestError(400, f"JSON Parse error: {e}") from None
                requests.append({"path": self.path, "body": parsed,
                                 "content_type": self.headers.get("Content-Type")})
                if not isinstance(parsed, dict):
                    raise _RestError(400, f"JSON Value: {json.dumps(parsed)} Is not object")
                verb = _rest_predict if match["verb"] == "predict" else _rest_classify
                self._answer(200, verb(served_model, parsed))
            except _RestError as e:
                self._answer(e.status, {"error": str(e)})

        def _answer(self, status, payload):
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    request.addfinalizer(stop)
    host, port = server.server_address
    return {"url": f"http://{host}:{port}", "requests": requests}


def test_rest_request_bodies_are_tf_serving_row_and_example_formats():
    from tfbert.serving import rest_classify_request, rest_predict_request

    assert rest_predict_request(["good movie", "bad"]) == {
        "signature_name": "serving_default", "instances": [{"text": "good movie"}, {"text": "bad"}]}
    assert rest_predict_request(["a"], ["b"], signature_name="pairs") == {
        "signature_name": "pairs", "instances": [{"text": "a", "text_pair": "b"}]}
    assert rest_classify_request(["good movie"]) == {"signature_name": "classify", "examples": [{"text": "good movie"}]}
    assert rest_classify_request(["a"], ["b"]) == {"signature_name": "classify",
                                                   "examples": [{"text": "a", "text_pair": "b"}]}
    with pytest.raises(ValueError, match=r"texts\[0\]: not encodable as UTF-8"):
        rest_predict_request(["\udcff"])


def test_regress_requests_and_answers_are_tf_servings():
    from tfbert.serving import ServingClientError, grpc_regress_request, parse_rest_regressions, rest_regress_request

    assert rest_regress_request(["good", "bad"], ["a", "b"]) == {"signature_name": "regress", "examples": [
        {"text": "good", "text_pair": "a"}, {"text": "bad", "text_pair": "b"}]}
    # TF Serving's MakeJsonFromRegressionResult: {"results": [...]}, non-finite values as strings
    assert parse_rest_regressions({"results": [0.25, "NaN", -1]}, 3)[::2] == [0.25, -1.0]
    with pytest.raises(ServingClientError, match=r"u:regress: expected 'results' with 2 values, found 1 values"):
        parse_rest_regressions({"results": [0.5]}, 2, "u:regress")
    request = grpc_regress_request("m", ["good"], version=3)
    assert request.model_spec.signature_name == "regress" and request.model_spec.version.value == 3
    (example,) = request.input.example_list.examples
    assert example.features.feature["text"].bytes_list.value == [b"good"]


def test_pre_split_sentences_go_padded_to_the_tokens_signature_in_batches():
    from tfbert.serving import Predictor, rest_inputs_request

    sent = []

    class Recording(Predictor):
        def _predict_batch(self, inputs, signature):
            sent.append((signature, inputs))
            return [{}] * len(inputs["tokens"])

    assert len(Recording(batch_size=2).predict_words([["Ada", "met", "Bob"], ["Hi"], ["in", "Paris"]])) == 3
    assert sent == [("tokens", {"tokens": [["Ada", "met", "Bob"], ["Hi", "", ""]]}),
                    ("tokens", {"tokens": [["in", "Paris"]]})]  # each batch as wide as its longest sentence
    assert rest_inputs_request(sent[0][1], "tokens") == {"signature_name": "tokens", "instances": [
        {"tokens": ["Ada", "met", "Bob"]}, {"tokens": ["Hi", "", ""]}]}
    for sentences, message in (([["a", ""]], "sentence 0: word 1 is empty"), ([["a"], []], "sentence 1: no words"),
                               (["a b"], "a list of sentences, each a list of words")):
        with pytest.raises((ValueError, TypeError), match=message):
            Recording().predict_words(sentences)
    with pytest.raises(ValueError, match="tokens: rows of different lengths"):
        rest_inputs_request({"tokens": [["a", "b"], ["c"]]})


def test_rest_predictor_matches_local(rest_server, local, export):
    from tfbert.serving import (
        RestPredictor,
        rest_classify_request,
        rest_predict_request,
    )

    requests = rest_server["requests"]
    requests.clear()
    predictor = RestPredictor(rest_server["url"] + "/", MODEL_NAME, batch_size=3)
    assert_same_predictions(predictor.predict(TEXTS), local.predict(TEXTS))
    assert [r["path"] for r in requests] == [f"/v1/models/{MODEL_NAME}:predict"] * 2  # batches of 3 and 1
    assert [r["body"] for r in requests] == [rest_predict_request(TEXTS[:3]), rest_predict_request(TEXTS[3:])]
    assert requests[0]["content_type"] == "application/json"

    requests.clear()
    pinned = RestPredictor(rest_server["url"].replace("http://", ""), MODEL_NAME, version=export["version"])
    assert_same_classifications(pinned.classify(TEXTS), local.classify(TEXTS))
    assert requests == [{"path": f"/v1/models/{MODEL_NAME}/versions/{export['version']}:classify",
                         "body": rest_classify_request(TEXTS), "content_type": "application/json"}]


def test_rest_errors_carry_the_server_message_and_url(rest_server, export):
    from tfbert.serving import RestPredictor, ServingClientError

    url = rest_server["url"]
    with pytest.raises(ServingClientError) as caught:
        RestPredictor(url, MODEL_NAME).predict(["good movie"], signature="encoded")
    message = str(caught.value)
    assert message.startswith(f"POST {url}/v1/models/{MODEL_NAME}:predict: HTTP 400 Bad Request: ")
    assert "keys must be equal to: attention_mask,input_ids,token_type_ids" in message
    assert caught.value.status == 400 and caught.value.server_message in message

    with pytest.raises(ServingClientError, match=re.escape(
            f"POST {url}/v1/models/other:predict: HTTP 404 Not Found: Servable not found for request: Latest(other)")):
        RestPredictor(url, "other").predict(["x"])
    with pytest.raises(ServingClientError, match=re.escape("Specific(sentiment, 99)")):
        RestPredictor(url, MODEL_NAME, version=99).predict(["x"])
    with pytest.raises(ServingClientError, match="Expected classification signature method_name to be "
                                                 "tensorflow/serving/classify. Was: tensorflow/serving/predict"):
        RestPredictor(url, MODEL_NAME).classify(["x"], signature="serving_default")
    # Bodies the client never sends, to show the stub checks what TF Serving checks.
    predictor = RestPredictor(url, MODEL_NAME)
    with pytest.raises(ServingClientError, match="No values in 'instances' array"):
        predictor.post("predict", {"instances": []})
    with pytest.raises(ServingClientError, match="is not of expected type: string"):
        predictor.post("predict", {"instances": [{"text": 3}]})
    with pytest.raises(ServingClientError, match="unexpected keys"):
        predictor.post("predict", {"instances": [{"text": "x"}], "inputs": {"text": ["x"]}})
    port = closed_port()
    with pytest.raises(ServingClientError, match=re.escape(
            f"POST http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict: cannot reach TF Serving")):
        RestPredictor(f"http://127.0.0.1:{port}", MODEL_NAME).predict(["x"])


def test_silent_servers_time_out():
    from tfbert.serving import GrpcPredictor, RestPredictor, ServingClientError

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        with pytest.raises(ServingClientError, match=re.escape(f"{MODEL_NAME}:predict: no answer within 0.5 s")):
            RestPredictor(f"http://127.0.0.1:{port}", MODEL_NAME, timeout=0.5).predict(["x"])
        with pytest.raises(ServingClientError, match=re.escape(f"127.0.0.1:{port}: no answer to Classify within "
                                                               "0.5 s")):
            GrpcPredictor(f"127.0.0.1:{port}", MODEL_NAME, timeout=0.5).classify(["x"])


def test_rest_answers_are_parsed_in_tf_serving_shapes():
    from tfbert.serving import (
        ServingClientError,
        parse_rest_classifications,
        parse_rest_predictions,
    )

    answer = {"predictions": [{"probabilities": [0.25, 0.75], "label": "pos", "label_id": 1, "logits": [0.0, 1.1]}]}
    assert list(parse_rest_predictions(answer, 1)[0]) == ["label", "label_id", "probabilities", "logits"]
    assert parse_rest_predictions({"predictions": [1.5, -2.0]}, 2) == [{"score": 1.5}, {"score": -2.0}]
    assert parse_rest_classifications({"results": [[["a", 0.5], ["b", 0.5]]]}, 1) == [[("a", 0.5), ("b", 0.5)]]
    with pytest.raises(ServingClientError, match="expected 'predictions' with 2 rows, found 1 rows"):
        parse_rest_predictions({"predictions": [1.0]}, 2, "u")
    with pytest.raises(ServingClientError, match="expected 'results' with 1 rows"):
        parse_rest_classifications({"result": []}, 1, "u")
