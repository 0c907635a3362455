"""tfbert.serving_client and pipelines/predict.py against a real tiny export.

No TF Serving binary is needed: the REST and gRPC servers here are stubs that check each
request the way TF Serving's JSON and proto front ends do (paths, keys, dtypes, shapes,
signature method names) and run the *real* exported SavedModel, answering in TF Serving's
formats (REST `predictions` / `results` / `error`, gRPC PredictResponse and
ClassificationResponse), so the clients are tested against the real protocol.
"""

import base64
import http.server
import importlib.util
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT_SCRIPT = os.path.join(ROOT, "pipelines", "predict.py")
LABELS = ["neg", "neutral", "pos"]
MODEL_NAME = "sentiment"
TEXTS = ["good movie", "bad film", "not a very great film", "hello world"]
CLASSIFY_METHOD = "tensorflow/serving/classify"


# ---- a tiny export, shared by the module ---------------------------------------------------


@pytest.fixture(scope="module")
def export(tmp_path_factory):
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


@pytest.fixture(scope="module")
def local(export):
    from tfbert.serving_client import LocalPredictor

    return LocalPredictor(export["base_dir"])


@pytest.fixture(scope="module")
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


def _assert_same_predictions(results, expected, tolerance=1e-6):
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        assert list(result) == list(reference)  # same outputs, same order
        assert result["label"] == reference["label"] and result["label_id"] == reference["label_id"]
        np.testing.assert_allclose(result["probabilities"], reference["probabilities"], atol=tolerance, rtol=0)
        np.testing.assert_allclose(result["logits"], reference["logits"], atol=tolerance, rtol=0)


def _assert_same_classifications(results, expected, tolerance=1e-6):
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        assert [label for label, _ in result] == [label for label, _ in reference] == LABELS
        np.testing.assert_allclose([s for _, s in result], [s for _, s in reference], atol=tolerance, rtol=0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- reading texts -------------------------------------------------------------------------


def test_load_texts_reads_arguments_files_and_stdin(tmp_path):
    from tfbert.data.readers import DataError
    from tfbert.serving_client import load_text_pairs, load_texts

    path = tmp_path / "texts.txt"
    path.write_bytes(b"\xef\xbb\xbfgood movie\r\n\n   \nbad\tfilm\nlast line")
    assert load_texts(None, str(path), None) == ["good movie", "bad\tfilm", "last line"]
    assert load_texts(["first"], str(path), io.StringIO("ignored")) == ["first", "good movie", "bad\tfilm", "last line"]
    assert load_texts(None, None, io.StringIO("a\nb\n")) == ["a", "b"]
    assert load_texts([], None, None) == []

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert load_texts(None, None, Terminal("never read\n")) == []

    path.write_bytes(b"fine\nalso fine\nbroken \xff byte\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: invalid UTF-8: byte 0xff at byte offset 7")):
        load_texts(None, str(path), None)
    stdin = io.TextIOWrapper(io.BytesIO(b"ok\n\xc3(\n"), encoding="utf-8")
    with pytest.raises(DataError, match=r"<stdin>:2: invalid UTF-8"):
        load_texts(None, None, stdin)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'missing.txt'}: no such file")):
        load_texts(None, str(tmp_path / "missing.txt"), None)

    path.write_text("a man sleeps\ta person rests\n\nit rains\tthe sun\tshines\n", encoding="utf-8")
    assert load_text_pairs(None, str(path), None) == (["a man sleeps", "it rains"],
                                                     ["a person rests", "the sun\tshines"])
    path.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: expected a text, a TAB and its text pair")):
        load_text_pairs(None, str(path), None)
    with pytest.raises(DataError, match="argument 1: expected"):
        load_text_pairs(["no tab"], None, None)


# ---- in-process ------------------------------------------------------------------------------


def test_local_predictor_from_base_and_version_folders(export, local):
    from tfbert.serving_client import LocalPredictor

    assert local.export_dir == export["version_dir"]
    assert local.metadata["labels"] == LABELS and local.text_pair is False
    results = local.predict(TEXTS)
    assert len(results) == len(TEXTS)
    for result in results:
        assert list(result) == ["label", "label_id", "probabilities", "logits"]
        assert isinstance(result["label"], str) and isinstance(result["label_id"], int)
        assert result["label"] == LABELS[result["label_id"]] == LABELS[int(np.argmax(result["probabilities"]))]
        assert all(isinstance(p, float) for p in result["probabilities"])
        assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-6)

    from_version = LocalPredictor(export["version_dir"], batch_size=3)  # two signature calls
    _assert_same_predictions(from_version.predict(TEXTS), results, tolerance=1e-6)

    classified = local.classify(TEXTS)
    for classes, result in zip(classified, results):
        assert [label for label, _ in classes] == LABELS
        np.testing.assert_allclose([score for _, score in classes], result["probabilities"], atol=1e-6)
    assert local.predict([]) == []


def test_local_predictor_refuses_what_it_cannot_run(export, local, tmp_path):
    from tfbert.serving_client import ServingClientError

    with pytest.raises(ServingClientError, match="no signature 'nope'; the export has classify, encoded"):
        local.predict(["x"], signature="nope")
    with pytest.raises(ServingClientError, match="signature 'encoded' takes attention_mask, input_ids"):
        local.predict(["x"], signature="encoded")
    with pytest.raises(ServingClientError, match="reads single texts, but text pairs were given"):
        local.predict(["x"], pairs=["y"])
    with pytest.raises(ValueError, match="1 text pairs for 2 texts"):
        local.predict(["x", "y"], pairs=["z"])
    with pytest.raises(TypeError, match="not one string"):
        local.predict("one string")


def test_resolve_export_dir_picks_the_highest_version(tmp_path):
    from tfbert.serving_client import ServingClientError, resolve_export_dir

    for version in ("1", "2", "10", ".tmp-11-abc", "not-a-version"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "12").mkdir()  # a version folder without a SavedModel is skipped
    assert resolve_export_dir(str(tmp_path)) == str(tmp_path / "10")
    assert resolve_export_dir(str(tmp_path), 2) == str(tmp_path / "2")
    assert resolve_export_dir(str(tmp_path / "2")) == str(tmp_path / "2")
    with pytest.raises(ServingClientError, match=re.escape(f"{tmp_path}: no version 3; found versions [1, 2, 10]")):
        resolve_export_dir(str(tmp_path), 3)
    with pytest.raises(ServingClientError, match="no such export folder"):
        resolve_export_dir(str(tmp_path / "missing"))
    with pytest.raises(ServingClientError, match=re.escape(f"{tmp_path / '12'}: no saved_model.pb here")):
        resolve_export_dir(str(tmp_path / "12"))


# ---- the command line --------------------------------------------------------------------------


def _load_cli():
    spec = importlib.util.spec_from_file_location("predict_cli", PREDICT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_subprocesses_print_jsonl_and_a_table_from_stdin(export, local):
    def start(*args):
        return subprocess.Popen([sys.executable, PREDICT_SCRIPT, *args], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # Both interpreters at once: each spends most of its time importing TensorFlow.
    jsonl = start("--export_dir", export["base_dir"], "good movie", "bad film", "--format", "jsonl")
    table = start("--export_dir", export["version_dir"], "--format", "table")
    outputs = {}
    for name, process, stdin in (("jsonl", jsonl, ""), ("table", table, "good movie\n\nbad film\n")):
        stdout, stderr = process.communicate(stdin, timeout=120)
        outputs[name] = (process.returncode, stdout, stderr)

    code, stdout, stderr = outputs["jsonl"]
    assert code == 0, stderr[-2000:]
    lines = stdout.strip().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    expected = local.predict(["good movie", "bad film"])
    assert [r["text"] for r in records] == ["good movie", "bad film"]
    _assert_same_predictions([{k: v for k, v in r.items() if k != "text"} for r in records], expected)

    code, stdout, stderr = outputs["table"]
    assert code == 0, stderr[-2000:]
    header, rule, *rows = stdout.strip().splitlines()
    assert header.split() == ["text", "label", "probability"] and set(rule) <= {"-", " "}
    assert len(rows) == 2
    for row, text, result in zip(rows, ["good movie", "bad film"], expected):
        assert row.startswith(text) and result["label"] in row.split()
        assert f"{result['probabilities'][result['label_id']]:.4f}" in row


def test_cli_errors_are_one_line(export, monkeypatch, capsys):
    cli = _load_cli()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    missing = os.path.join(export["base_dir"], "missing")
    assert cli.main(["--export_dir", missing, "good movie"]) == 1
    assert capsys.readouterr() == ("", f"predict.py: error: {missing}: no such export folder\n")
    assert cli.main(["--export_dir", export["base_dir"]]) == 1
    assert capsys.readouterr().err == ("predict.py: error: no texts: give TEXT arguments, --input_file, "
                                       "or lines on stdin\n")
    port = _closed_port()
    assert cli.main(["--rest_url", f"http://127.0.0.1:{port}", "--model_name", MODEL_NAME, "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"predict.py: error: POST http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict: "
                          "cannot reach TF Serving") and err.count("\n") == 1
    assert cli.main(["--grpc_address", f"127.0.0.1:{port}", "--model_name", MODEL_NAME, "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"predict.py: error: 127.0.0.1:{port}: cannot reach TF Serving over gRPC") \
        and err.count("\n") == 1
    assert cli.main(["--rest_url", "http://127.0.0.1:1", "x"]) == 1
    assert "--model_name is needed" in capsys.readouterr().err


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
    from tfbert.serving_client import rest_classify_request, rest_predict_request

    assert rest_predict_request(["good movie", "bad"]) == {
        "signature_name": "serving_default", "instances": [{"text": "good movie"}, {"text": "bad"}]}
    assert rest_predict_request(["a"], ["b"], signature_name="pairs") == {
        "signature_name": "pairs", "instances": [{"text": "a", "text_pair": "b"}]}
    assert rest_classify_request(["good movie"]) == {"signature_name": "classify", "examples": [{"text": "good movie"}]}
    assert rest_classify_request(["a"], ["b"]) == {"signature_name": "classify",
                                                   "examples": [{"text": "a", "text_pair": "b"}]}
    with pytest.raises(ValueError, match=r"texts\[0\]: not encodable as UTF-8"):
        rest_predict_request(["\udcff"])


def test_rest_predictor_matches_local(rest_server, local, export):
    from tfbert.serving_client import RestPredictor, rest_classify_request, rest_predict_request

    requests = rest_server["requests"]
    requests.clear()
    predictor = RestPredictor(rest_server["url"] + "/", MODEL_NAME, batch_size=3)
    _assert_same_predictions(predictor.predict(TEXTS), local.predict(TEXTS))
    assert [r["path"] for r in requests] == [f"/v1/models/{MODEL_NAME}:predict"] * 2  # batches of 3 and 1
    assert [r["body"] for r in requests] == [rest_predict_request(TEXTS[:3]), rest_predict_request(TEXTS[3:])]
    assert requests[0]["content_type"] == "application/json"

    requests.clear()
    pinned = RestPredictor(rest_server["url"].replace("http://", ""), MODEL_NAME, version=export["version"])
    _assert_same_classifications(pinned.classify(TEXTS), local.classify(TEXTS))
    assert requests == [{"path": f"/v1/models/{MODEL_NAME}/versions/{export['version']}:classify",
                         "body": rest_classify_request(TEXTS), "content_type": "application/json"}]


def test_rest_errors_carry_the_server_message_and_url(rest_server, export):
    from tfbert.serving_client import RestPredictor, ServingClientError

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
    port = _closed_port()
    with pytest.raises(ServingClientError, match=re.escape(
            f"POST http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict: cannot reach TF Serving")):
        RestPredictor(f"http://127.0.0.1:{port}", MODEL_NAME).predict(["x"])


def test_silent_servers_time_out():
    from tfbert.serving_client import GrpcPredictor, RestPredictor, ServingClientError

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
    from tfbert.serving_client import ServingClientError, parse_rest_classifications, parse_rest_predictions

    answer = {"predictions": [{"probabilities": [0.25, 0.75], "label": "pos", "label_id": 1, "logits": [0.0, 1.1]}]}
    assert list(parse_rest_predictions(answer, 1)[0]) == ["label", "label_id", "probabilities", "logits"]
    assert parse_rest_predictions({"predictions": [1.5, -2.0]}, 2) == [{"score": 1.5}, {"score": -2.0}]
    assert parse_rest_classifications({"results": [[["a", 0.5], ["b", 0.5]]]}, 1) == [[("a", 0.5), ("b", 0.5)]]
    with pytest.raises(ServingClientError, match="expected 'predictions' with 2 rows, found 1 rows"):
        parse_rest_predictions({"predictions": [1.0]}, 2, "u")
    with pytest.raises(ServingClientError, match="expected 'results' with 1 rows"):
        parse_rest_classifications({"result": []}, 1, "u")


# ---- a TF Serving gRPC stub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_server(request, served_model):
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

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

    from tfbert.serving_client import grpc_classify_request, grpc_predict_request

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

    classify = grpc_classify_request(MODEL_NAME, ["good movie"])
    assert classify.model_spec.signature_name == "classify"
    (example,) = classify.input.example_list.examples
    assert example.features.feature["text"].bytes_list.value == [b"good movie"]


def test_grpc_predictor_matches_local(grpc_server, local, export):
    from tensorflow.core.framework import types_pb2

    from tfbert.serving_client import GrpcPredictor

    received = grpc_server["requests"]
    received.clear()
    with GrpcPredictor(grpc_server["address"], MODEL_NAME, batch_size=3) as predictor:
        _assert_same_predictions(predictor.predict(TEXTS), local.predict(TEXTS), tolerance=1e-7)
        assert len(received) == 2
        first = received[0]
        assert first.model_spec.name == MODEL_NAME and first.model_spec.signature_name == "serving_default"
        assert not first.model_spec.HasField("version")
        assert list(first.inputs) == ["text"] and first.inputs["text"].dtype == types_pb2.DT_STRING
        assert [d.size for d in first.inputs["text"].tensor_shape.dim] == [3]
        assert [d.size for d in received[1].inputs["text"].tensor_shape.dim] == [1]

    received.clear()
    with GrpcPredictor(grpc_server["address"], MODEL_NAME, version=export["version"]) as predictor:
        _assert_same_classifications(predictor.classify(TEXTS), local.classify(TEXTS), tolerance=1e-7)
    (classify,) = received
    assert classify.model_spec.signature_name == "classify" and classify.model_spec.version.value == export["version"]
    assert [e.features.feature["text"].bytes_list.value[0].decode() for e in classify.input.example_list.examples] \
        == TEXTS


def test_grpc_errors_name_the_address_and_status(grpc_server):
    from tfbert.serving_client import GrpcPredictor, ServingClientError

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


# ---- output formats ------------------------------------------------------------------------------


def test_rows_and_formats():
    from tfbert.serving_client import format_jsonl, format_table, rows_from_columns

    rows = rows_from_columns({"predicted": np.array([[True, False, True]]), "probabilities": np.float32([[.9, .1, .6]]),
                              "logits": np.float32([[2.0, -2.0, 0.4]])})
    assert rows == [{"predicted": [True, False, True], "probabilities": pytest.approx([.9, .1, .6]),
                     "logits": pytest.approx([2.0, -2.0, 0.4])}]
    assert isinstance(rows[0]["predicted"][0], bool)
    assert rows_from_columns({"score": np.float32([1.5, 2.5])}) == [{"score": 1.5}, {"score": 2.5}]

    table = format_table(["a\ttabbed text", "b"], [rows[0], {"predicted": [False, False, False]}],
                         label_names=["x", "y", "z"]).splitlines()
    assert table[0].split() == ["text", "predicted"] and "a\\ttabbed text" in table[2] and "x, z" in table[2]
    assert table[3].split() == ["b", "-"]
    classified = format_table(["good"], [[("neg", 0.2), ("pos", 0.8)]])
    assert classified.splitlines()[2].split()[:3] == ["good", "pos", "0.8000"]

    lines = format_jsonl(["good", "odd"], [[("neg", 0.2), ("pos", 0.8)], {"score": float("nan")}], pairs=["p", "q"])
    first, second = (json.loads(line) for line in lines.splitlines())
    assert first == {"text": "good", "text_pair": "p", "classes": [{"label": "neg", "score": 0.2},
                                                                   {"label": "pos", "score": 0.8}]}
    assert second == {"text": "odd", "text_pair": "q", "score": None}
