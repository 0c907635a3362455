"""Predictions from an exported tfbert model: in-process, over TF Serving's REST API or gRPC.

Three predictors with one interface, so the same code can test an export locally and then
query the server it is deployed to:

- `LocalPredictor(export_dir)`: loads the SavedModel written by `tfbert.export` with
  `tf.saved_model.load` and calls its signatures directly.
- `RestPredictor(url, model_name)`: `POST {url}/v1/models/{name}[/versions/{v}]:predict` with
  the row ("instances") format, and `:classify` with "examples"; standard library only.
- `GrpcPredictor("host:8500", model_name)`: `PredictionService.Predict` and `.Classify`
  (needs `grpcio` and `tensorflow-serving-api`).

`predict(texts)` returns one dict per text holding the signature's outputs as plain Python
values (`label`, `label_id`, `probabilities`, `logits`; `score` for regression; `predicted`
for multi-label); `classify(texts)` returns one list of `(class, score)` per text.

    predictor = LocalPredictor("exports/sentiment")           # the highest version
    predictor.predict(["a good film"])[0]["label"]            # 'pos'
    RestPredictor("http://localhost:8501", "sentiment").classify(["a good film"])
    # [[('neg', 0.02), ('neutral', 0.05), ('pos', 0.93)]]

Request builders (`rest_predict_request`, `rest_classify_request`, `grpc_predict_request`,
`grpc_classify_request`) are public so other clients can send exactly the same payloads.
"""

from __future__ import annotations

import codecs
import http.client
import json
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any, Callable, Iterable, Sequence

import numpy as np

from tfbert.data.readers import DataError
from tfbert.errors import TfbertError

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
SAVED_MODEL_FILE = "saved_model.pb"
STDIN_NAME = "<stdin>"
# The order outputs are listed in (the rest follow alphabetically): the answer first.
OUTPUT_ORDER = ("label", "label_id", "score", "predicted", "probabilities", "logits")
# TF Serving's row format drops the output name when a signature has a single output; the
# only single-output text signature tfbert writes is regression's `score`.
SINGLE_OUTPUT_NAME = "score"

Result = dict[str, Any]
Classification = list[tuple[str, float]]


class ServingClientError(TfbertError):
    """A prediction that could not be made: a bad export folder, an unreachable server, or an
    error answer. The message names the folder, URL or address, and the server's own message.

    Attributes:
        target: the export folder, URL or gRPC address the error is about.
        status: the HTTP status or gRPC status code name, when a server answered.
        server_message: the server's error message, when it sent one.
    """

    def __init__(self, message: str, *, target: str | None = None, status: int | str | None = None,
                 server_message: str | None = None):
        super().__init__(message)
        self.target = target
        self.status = status
        self.server_message = server_message


# ---- input texts ---------------------------------------------------------------------------


def load_texts(texts: Sequence[str] | None = None, file: str | None = None, stdin: IO | None = None) -> list[str]:
    """The texts to predict: the given ones, then one per line of `file`, else of `stdin`.

    Lines are decoded as UTF-8 (a leading byte-order mark is dropped); the line end ("\\n" or
    "\\r\\n") is removed and blank lines are skipped. `stdin` is read only when neither
    `texts` nor `file` gives anything and it is not a terminal.

    For sentence-pair models each line holds the text, a TAB, then the text pair
    (`"A man sleeps.\\tA person rests."`); `load_text_pairs` splits them at the first TAB.
    `load_texts` keeps such lines whole.

    Args:
        texts: texts given directly (e.g. command-line arguments).
        file: a UTF-8 text file with one text per line.
        stdin: a stream read like `file` when nothing else is given (e.g. `sys.stdin`).

    Returns:
        The texts in order; empty when nothing was given.

    Raises:
        DataError: the file cannot be read, or a line is not valid UTF-8 (names `file:line`).
    """
    return [text for _, text in _read_sources(texts, file, stdin)]


def load_text_pairs(texts: Sequence[str] | None = None, file: str | None = None,
                    stdin: IO | None = None) -> tuple[list[str], list[str]]:
    """Like `load_texts`, for sentence-pair models: each text or line is `text<TAB>text_pair`.

    Returns:
        (texts, text_pairs), split at the first TAB of each line.

    Raises:
        DataError: as `load_texts`, or a line without a TAB (names `file:line`).
    """
    firsts, seconds = [], []
    for location, line in _read_sources(texts, file, stdin):
        if "\t" not in line:
            raise DataError(f"expected a text, a TAB and its text pair, found no TAB in {_preview(line)!r}", location)
        first, second = line.split("\t", 1)
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def _read_sources(texts, file, stdin) -> list[tuple[str, str]]:
    """(location, text) for every text: "argument N", "file:line" or "<stdin>:line"."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    found = [(f"argument {i + 1}", text) for i, text in enumerate(texts or [])]
    if file is not None:
        try:
            with open(file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise DataError("no such file", file) from None
        except IsADirectoryError:
            raise DataError("is a folder; expected a text file with one text per line", file) from None
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", file) from None
        found += _decode_lines(data, file)
    elif not found and stdin is not None and not _is_terminal(stdin):
        data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        found += _decode_lines(data, STDIN_NAME)
    return found


def _decode_lines(data: bytes, name: str) -> list[tuple[str, str]]:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"invalid UTF-8: byte 0x{raw[e.start]:02x} at byte offset {e.start} of the line; "
                            "save the file as UTF-8", f"{name}:{number}") from None
        if line.strip():
            lines.append((f"{name}:{number}", line))
    return lines


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _check_texts(texts: Sequence[str], pairs: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    texts = list(texts)
    pairs = None if pairs is None else list(pairs)
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"{len(pairs)} text pairs for {len(texts)} texts; give one pair per text")
    for field, values in (("texts", texts), ("pairs", pairs or [])):
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise TypeError(f"{field}[{i}]: expected a str, found {type(value).__name__}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{field}[{i}]: not encodable as UTF-8 (lone surrogate): {value!r}") from None
    return texts, pairs


# ---- outputs as plain Python ---------------------------------------------------------------


def _python(value: Any) -> Any:
    """numpy values (and bytes) as JSON-ready Python: lists, float, int, bool, str."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list):
        return [_python(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    known = [name for name in OUTPUT_ORDER if name in names]
    return known + sorted(name for name in names if name not in OUTPUT_ORDER)


def rows_from_columns(columns: dict[str, Any]) -> list[Result]:
    """Batched outputs {name: array [batch, ...]} as one dict per example, Python values."""
    if not columns:
        return []
    names = _ordered(columns)
    sizes = {name: len(columns[name]) for name in names}
    if len(set(sizes.values())) != 1:
        raise ServingClientError(f"outputs disagree on the batch size: {sizes}")
    return [{name: _python(columns[name][i]) for name in names} for i in range(sizes[names[0]])]


def _classifications(classes: Any, scores: Any, size: int) -> list[Classification]:
    """`classes` [batch, k] and `scores` [batch, k] (either may be None) as (class, score) lists;
    a missing class is "" and a missing score 0.0, as in TF Serving's ClassificationResult."""
    classes = None if classes is None else _python(classes)
    scores = None if scores is None else _python(scores)
    results = []
    for i in range(size):
        row_classes = classes[i] if classes is not None else [""] * len(scores[i])
        row_scores = scores[i] if scores is not None else [0.0] * len(row_classes)
        results.append([(str(c), float(s)) for c, s in zip(row_classes, row_scores)])
    return results


# ---- the shared interface ------------------------------------------------------------------


class Predictor:
    """Runs texts through an exported model in batches; subclasses say where it runs.

    Args:
        batch_size: texts per request (or per signature call).
    """

    def __init__(self, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, found {batch_size}")
        self.batch_size = int(batch_size)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                signature: str = DEFAULT_SIGNATURE) -> list[Result]:
        """One dict of outputs per text (label, label_id, probabilities, logits, ...).

        Args:
            texts: the texts to classify.
            pairs: the second text of each example, for sentence-pair models.
            signature: a signature taking raw text (`text`, and `text_pair` for pairs).

        Raises:
            ServingClientError: the model cannot be reached or refuses the request.
        """
        return self._in_batches(self._predict_batch, texts, pairs, signature)

    def classify(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                 signature: str = CLASSIFY_SIGNATURE) -> list[Classification]:
        """One list of (class, score) per text, from the tf.Example `classify` signature.

        Raises:
            ServingClientError: the model cannot be reached or refuses the request.
        """
        return self._in_batches(self._classify_batch, texts, pairs, signature)

    def _in_batches(self, request, texts, pairs, signature) -> list:
        texts, pairs = _check_texts(texts, pairs)
        results = []
        for start in range(0, len(texts), self.batch_size):
            batch_pairs = None if pairs is None else pairs[start:start + self.batch_size]
            results += request(texts[start:start + self.batch_size], batch_pairs, signature)
        return results

    def _predict_batch(self, texts, pairs, signature) -> list[Result]:
        raise NotImplementedError

    def _classify_batch(self, texts, pairs, signature) -> list[Classification]:
        raise NotImplementedError

    def close(self) -> None:
        """Releases connections (nothing for most predictors)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def make_example(text: str, pair: str | None = None):
    """A `tf.train.Example` with bytes features `text` (and `text_pair`), as `classify` reads."""
    import tensorflow as tf

    feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))}
    if pair is not None:
        feature["text_pair"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[pair.encode("utf-8")]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


# ---- in-process --------------------------------------------------------------------------


def resolve_export_dir(export_dir: str, version: int | None = None) -> str:
    """The SavedModel folder of an export: `export_dir` itself when it holds `saved_model.pb`,
    else its numeric version sub-folder `version` (default: the highest one).

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
    from tfbert.export import METADATA_FILE

    path = os.path.join(version_dir, "assets.extra", METADATA_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
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

    def _predict_batch(self, texts, pairs, signature):
        function = self._signature(signature)
        inputs = self._input_names(function)
        if "text" not in inputs:
            raise ServingClientError(f"{self.export_dir}: signature {signature!r} takes {', '.join(inputs)}, not "
                                     f"raw text; use {DEFAULT_SIGNATURE!r}", target=self.export_dir)
        feed = {"text": texts}
        if "text_pair" in inputs:
            if pairs is None:
                raise ServingClientError(f"{self.export_dir}: the model reads sentence pairs (text, text_pair); give "
                                         "a pair for every text (a TAB between the two in input lines)",
                                         target=self.export_dir)
            feed["text_pair"] = pairs
        elif pairs is not None:
            raise ServingClientError(f"{self.export_dir}: the model reads single texts, but text pairs were given",
                                     target=self.export_dir)
        return rows_from_columns(self._call(function, signature, **feed))

    def _classify_batch(self, texts, pairs, signature):
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
        outputs = self._call(function, signature, inputs=serialized)
        return _classifications(outputs.get("classes"), outputs.get("scores"), len(texts))


# ---- REST -------------------------------------------------------------------------------------


def rest_predict_request(texts: Sequence[str], pairs: Sequence[str] | None = None,
                         signature_name: str = DEFAULT_SIGNATURE) -> dict:
    """The JSON body of a TF Serving `:predict` call in row format.

    >>> rest_predict_request(["good", "bad"])
    {'signature_name': 'serving_default', 'instances': [{'text': 'good'}, {'text': 'bad'}]}
    """
    texts, pairs = _check_texts(texts, pairs)
    if pairs is None:
        instances = [{"text": text} for text in texts]
    else:
        instances = [{"text": text, "text_pair": pair} for text, pair in zip(texts, pairs)]
    return {"signature_name": signature_name, "instances": instances}


def rest_classify_request(texts: Sequence[str], pairs: Sequence[str] | None = None,
                          signature_name: str = CLASSIFY_SIGNATURE) -> dict:
    """The JSON body of a TF Serving `:classify` call: one Example object per text.

    >>> rest_classify_request(["good"])
    {'signature_name': 'classify', 'examples': [{'text': 'good'}]}
    """
    texts, pairs = _check_texts(texts, pairs)
    if pairs is None:
        examples = [{"text": text} for text in texts]
    else:
        examples = [{"text": text, "text_pair": pair} for text, pair in zip(texts, pairs)]
    return {"signature_name": signature_name, "examples": examples}


class RestPredictor(Predictor):
    """Queries TF Serving's REST API (`--rest_api_port`, 8501 by convention).

    Args:
        url: the server, `http://host:8501` (`http://` is added when missing).
        model_name: the served model's name (`--model_name`).
        version: a model version; the latest one when None.
        timeout: seconds to wait for each answer.
        batch_size: texts per request.

    Raises:
        ServingClientError (from predict/classify): the server cannot be reached, does not
        answer in time, or answers with an error (its message and the URL are included).
    """

    def __init__(self, url: str, model_name: str, version: int | None = None, timeout: float = 30.0,
                 batch_size: int = 64):
        super().__init__(batch_size)
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ServingClientError(f"{url}: expected a URL like http://host:8501", target=url)
        if not model_name:
            raise ServingClientError(f"{url}: a model name is needed", target=url)
        self.url = url
        self.model_name = model_name
        self.version = None if version is None else int(version)
        self.timeout = float(timeout)
        self.model_url = f"{url}/v1/models/{urllib.parse.quote(model_name, safe='')}"
        if self.version is not None:
            self.model_url += f"/versions/{self.version}"

    def post(self, verb: str, body: dict) -> dict:
        """POSTs `body` to `<model_url>:<verb>` and returns the decoded JSON answer.

        Raises:
            ServingClientError: HTTP error (with the server's `error`), unreachable, timeout,
                or an answer that is not a JSON object.
        """
        url = f"{self.model_url}:{verb}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            server_message = _http_error_message(e)
            raise ServingClientError(f"POST {url}: HTTP {e.code} {e.reason}: {server_message}", target=url,
                                     status=e.code, server_message=server_message) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise ServingClientError(f"POST {url}: no answer within {self.timeout:g} s", target=url) from None
            raise ServingClientError(f"POST {url}: cannot reach TF Serving ({reason})", target=url) from None
        except TimeoutError:
            raise ServingClientError(f"POST {url}: no answer within {self.timeout:g} s", target=url) from None
        except (OSError, http.client.HTTPException) as e:
            raise ServingClientError(f"POST {url}: connection failed ({e or type(e).__name__})", target=url) from None
        try:
            answer = json.loads(payload)  # Python's json reads TF Serving's NaN/Infinity tokens
        except ValueError:
            raise ServingClientError(f"POST {url}: the answer is not JSON: {payload[:200]!r}", target=url) from None
        if not isinstance(answer, dict):
            raise ServingClientError(f"POST {url}: expected a JSON object, found {_preview(payload)!r}", target=url)
        return answer

    def _predict_batch(self, texts, pairs, signature):
        answer = self.post("predict", rest_predict_request(texts, pairs, signature))
        return parse_rest_predictions(answer, len(texts), f"{self.model_url}:predict")

    def _classify_batch(self, texts, pairs, signature):
        answer = self.post("classify", rest_classify_request(texts, pairs, signature))
        return parse_rest_classifications(answer, len(texts), f"{self.model_url}:classify")


def _http_error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read()
    except OSError:
        body = b""
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str) and message:
        return message
    return _preview(body.decode("utf-8", errors="replace")) if body else "(no error message)"


def parse_rest_predictions(answer: dict, size: int, url: str = "") -> list[Result]:
    """`{"predictions": [...]}` of a row-format `:predict` answer as one dict per example.

    A signature with one output comes back without its name (TF Serving's row format);
    those rows are returned as `{"score": value}`, tfbert's only single-output signature.
    """
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != size:
        found = f"{len(predictions)} rows" if isinstance(predictions, list) else _preview(json.dumps(answer))
        raise ServingClientError(f"{url}: expected 'predictions' with {size} rows, found {found}", target=url)
    rows = []
    for prediction in predictions:
        if isinstance(prediction, dict):
            rows.append({name: prediction[name] for name in _ordered(prediction)})
        else:
            rows.append({SINGLE_OUTPUT_NAME: prediction})
    return rows


def parse_rest_classifications(answer: dict, size: int, url: str = "") -> list[Classification]:
    """`{"results": [[[class, score], ...], ...]}` of a `:classify` answer as (class, score) lists."""
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != size:
        found = f"{len(results)} rows" if isinstance(results, list) else _preview(json.dumps(answer))
        raise ServingClientError(f"{url}: expected 'results' with {size} rows, found {found}", target=url)
    try:
        return [[(str(label), float(score)) for label, score in row] for row in results]
    except (TypeError, ValueError):
        raise ServingClientError(f"{url}: expected [class, score] pairs in 'results', found "
                                 f"{_preview(json.dumps(results))}", target=url) from None


# ---- gRPC -------------------------------------------------------------------------------------


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
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    texts, pairs = _check_texts(texts, pairs)
    request = predict_pb2.PredictRequest(model_spec=_model_spec(model_name, signature_name, version))
    request.inputs["text"].CopyFrom(_string_tensor(tf, texts))
    if pairs is not None:
        request.inputs["text_pair"].CopyFrom(_string_tensor(tf, pairs))
    return request


def _string_tensor(tf, values: list[str]):
    return tf.make_tensor_proto([value.encode("utf-8") for value in values], dtype=tf.string, shape=[len(values)])


def grpc_classify_request(model_name: str, texts: Sequence[str], pairs: Sequence[str] | None = None,
                          signature_name: str = CLASSIFY_SIGNATURE, version: int | None = None):
    """A `ClassificationRequest` whose `input.example_list` holds one tf.Example per text.

    Returns:
        `tensorflow_serving.apis.classification_pb2.ClassificationRequest`.
    """
    from tensorflow_serving.apis import classification_pb2, input_pb2

    texts, pairs = _check_texts(texts, pairs)
    examples = [make_example(text, None if pairs is None else pairs[i]) for i, text in enumerate(texts)]
    return classification_pb2.ClassificationRequest(
        model_spec=_model_spec(model_name, signature_name, version),
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples)))


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

    def _predict_batch(self, texts, pairs, signature):
        import tensorflow as tf

        request = grpc_predict_request(self.model_name, texts, pairs, signature, self.version)
        response = self._rpc(self._stub.Predict, request, "Predict")
        columns = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        rows = rows_from_columns(columns)
        if len(rows) != len(texts):
            raise ServingClientError(f"{self.address}: Predict answered {len(rows)} rows for {len(texts)} texts",
                                     target=self.address)
        return rows

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


# ---- output formats --------------------------------------------------------------------------


def _preview(text: str | bytes, width: int = 80) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.translate({9: "\\t", 10: "\\n", 13: "\\r"})
    return text if len(text) <= width else text[:width - 1] + "…"


def is_tagging(result: Result | Classification) -> bool:
    """Whether a predict row comes from a token-classification (NER) export."""
    return isinstance(result, dict) and "entity_type" in result and "tags" in result


def entities_of(result: Result) -> list[dict[str, Any]]:
    """The entities of an NER export's row: [{"text", "type", "start", "end", "score"}], in text order
    (`start`/`end`: character offsets into the input, or word indices for the `tokens` signature)."""
    count = int(result.get("num_entities", 0))
    return [{"text": result["entity_text"][i], "type": result["entity_type"][i], "start": int(result["entity_start"][i]),
             "end": int(result["entity_end"][i]), "score": float(result["entity_score"][i])} for i in range(count)]


def tagged_words(result: Result) -> list[tuple[str, str]]:
    """(word, tag) of each word of an NER export's row (the padding left out)."""
    words = result.get("words") or [str(i) for i in range(len(result["tags"]))]
    return [(word, tag) for word, tag in zip(words, result["tags"]) if tag]


def _summary(result: Result | Classification, label_names: Sequence[str] | None) -> dict[str, str]:
    """The columns of one table row: the answer and how sure the model is."""
    if is_tagging(result):
        shown = [f"{e['text']} [{e['type']}] {e['score']:.2f}" for e in entities_of(result)]
        return {"entities": "; ".join(shown) or "-"}
    if isinstance(result, list):  # classify: [(class, score), ...]
        ranked = sorted(result, key=lambda pair: -pair[1])
        if not ranked:
            return {}
        return {"class": ranked[0][0], "score": f"{ranked[0][1]:.4f}",
                "all scores": "  ".join(f"{label or i}={score:.3f}" for i, (label, score) in enumerate(result))}
    cells = {}
    probabilities = result.get("probabilities")
    if "label" in result:
        cells["label"] = str(result["label"])
        if isinstance(probabilities, list) and probabilities:
            label_id = result.get("label_id")
            best = probabilities[label_id] if isinstance(label_id, int) and 0 <= label_id < len(probabilities) \
                else max(probabilities)
            cells["probability"] = f"{best:.4f}"
    elif "predicted" in result:
        chosen = [i for i, flag in enumerate(result["predicted"]) if flag]
        names = [label_names[i] if label_names and i < len(label_names) else str(i) for i in chosen]
        cells["predicted"] = ", ".join(names) or "-"
    elif "score" in result:
        cells["score"] = f"{result['score']:.4f}"
    else:
        for name, value in result.items():
            cells[name] = _preview(json.dumps(value), 40)
    return cells


def format_table(texts: Sequence[str], results: Sequence[Result | Classification], pairs: Sequence[str] | None = None,
                 label_names: Sequence[str] | None = None, max_text_width: int = 60) -> str:
    """A plain-text table: one row per text with its label (or class, score, predicted labels)
    and probability. Tabs and newlines in texts are shown escaped; long texts are cut.

    Args:
        texts: the input texts, in the order of `results`.
        results: what `predict` or `classify` returned.
        pairs: the text pairs, shown in a second column.
        label_names: names for multi-label `predicted` flags (indices otherwise).
        max_text_width: characters of each text shown.
    """
    rows = []
    for i, (text, result) in enumerate(zip(texts, results)):
        row = {"text": _preview(text, max_text_width)}
        if pairs is not None:
            row["text_pair"] = _preview(pairs[i], max_text_width)
        row.update(_summary(result, label_names))
        rows.append(row)
    columns = ["text"] + (["text_pair"] if pairs is not None else [])
    for row in rows:
        columns += [name for name in row if name not in columns]
    widths = {name: max([len(name)] + [len(row.get(name, "")) for row in rows]) for name in columns}
    lines = ["  ".join(name.ljust(widths[name]) for name in columns).rstrip(),
             "  ".join("-" * widths[name] for name in columns)]
    lines += ["  ".join(row.get(name, "").ljust(widths[name]) for name in columns).rstrip() for row in rows]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so every line stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def format_jsonl(texts: Sequence[str], results: Sequence[Result | Classification],
                 pairs: Sequence[str] | None = None) -> str:
    """One JSON object per line: `{"text": ..., ["text_pair": ...,] <outputs>}`; classify
    results as `"classes": [{"label": ..., "score": ...}, ...]`. Non-finite numbers are null.
    """
    lines = []
    for i, (text, result) in enumerate(zip(texts, results)):
        record: dict[str, Any] = {"text": text}
        if pairs is not None:
            record["text_pair"] = pairs[i]
        if isinstance(result, list):
            record["classes"] = [{"label": label, "score": _finite(score)} for label, score in result]
        elif is_tagging(result):  # the entities, and each word with its tag, without the batch padding
            record["entities"] = [{**e, "score": _finite(e["score"])} for e in entities_of(result)]
            words = tagged_words(result)
            record["words"] = [word for word, _ in words]
            record["tags"] = [tag for _, tag in words]
        else:
            record.update({name: _finite(value) for name, value in result.items()})
        lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
    return "\n".join(lines)


__all__ = ["ServingClientError", "is_tagging", "entities_of", "tagged_words", "load_texts", "load_text_pairs", "Predictor", "LocalPredictor", "RestPredictor",
           "GrpcPredictor", "rest_predict_request", "rest_classify_request", "grpc_predict_request",
           "grpc_classify_request", "parse_rest_predictions", "parse_rest_classifications", "make_example",
           "resolve_export_dir", "read_export_metadata", "rows_from_columns", "format_table", "format_jsonl"]
