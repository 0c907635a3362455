"""`RestPredictor`: TF Serving's REST API (`:predict` in row format, `:classify` with examples);
standard library only, so a client machine needs no TensorFlow."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Sequence

from tfbert.serving.base import (CLASSIFY_SIGNATURE, DEFAULT_SIGNATURE, REGRESS_SIGNATURE, SINGLE_OUTPUT_NAME,
                                 Classification, Predictor, Result, ServingClientError, check_inputs, check_texts,
                                 preview)
from tfbert.serving.results import ordered


def rest_predict_request(texts: Sequence[str], pairs: Sequence[str] | None = None,
                         signature_name: str = DEFAULT_SIGNATURE) -> dict:
    """The JSON body of a TF Serving `:predict` call in row format.

    >>> rest_predict_request(["good", "bad"])
    {'signature_name': 'serving_default', 'instances': [{'text': 'good'}, {'text': 'bad'}]}
    """
    texts, pairs = check_texts(texts, pairs)
    return rest_inputs_request({"text": texts} if pairs is None else {"text": texts, "text_pair": pairs},
                               signature_name)


def rest_inputs_request(inputs: dict[str, Sequence[str]], signature_name: str = DEFAULT_SIGNATURE) -> dict:
    """The row-format `:predict` body of a signature with any named string inputs.

    >>> rest_inputs_request({"question": ["who?"], "context": ["Ada wrote it."]})
    {'signature_name': 'serving_default', 'instances': [{'question': 'who?', 'context': 'Ada wrote it.'}]}
    """
    inputs = check_inputs(inputs)
    names = list(inputs)
    rows = zip(*(inputs[name] for name in names))
    return {"signature_name": signature_name, "instances": [dict(zip(names, row)) for row in rows]}


def rest_classify_request(texts: Sequence[str], pairs: Sequence[str] | None = None,
                          signature_name: str = CLASSIFY_SIGNATURE) -> dict:
    """The JSON body of a TF Serving `:classify` (or `:regress`) call: one Example object per text.

    >>> rest_classify_request(["good"])
    {'signature_name': 'classify', 'examples': [{'text': 'good'}]}
    """
    texts, pairs = check_texts(texts, pairs)
    if pairs is None:
        examples = [{"text": text} for text in texts]
    else:
        examples = [{"text": text, "text_pair": pair} for text, pair in zip(texts, pairs)]
    return {"signature_name": signature_name, "examples": examples}


def rest_regress_request(texts: Sequence[str], pairs: Sequence[str] | None = None,
                         signature_name: str = REGRESS_SIGNATURE) -> dict:
    """The JSON body of a TF Serving `:regress` call (a regression export's `regress` signature).

    >>> rest_regress_request(["good"])
    {'signature_name': 'regress', 'examples': [{'text': 'good'}]}
    """
    return rest_classify_request(texts, pairs, signature_name)


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
            raise ServingClientError(f"POST {url}: expected a JSON object, found {preview(payload)!r}", target=url)
        return answer

    def _predict_batch(self, inputs, signature):
        answer = self.post("predict", rest_inputs_request(inputs, signature))
        return parse_rest_predictions(answer, len(next(iter(inputs.values()))), f"{self.model_url}:predict")

    def _classify_batch(self, texts, pairs, signature):
        answer = self.post("classify", rest_classify_request(texts, pairs, signature))
        return parse_rest_classifications(answer, len(texts), f"{self.model_url}:classify")

    def _regress_batch(self, texts, pairs, signature):
        answer = self.post("regress", rest_regress_request(texts, pairs, signature))
        return parse_rest_regressions(answer, len(texts), f"{self.model_url}:regress")


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
    return preview(body.decode("utf-8", errors="replace")) if body else "(no error message)"


def parse_rest_predictions(answer: dict, size: int, url: str = "") -> list[Result]:
    """`{"predictions": [...]}` of a row-format `:predict` answer as one dict per example.

    A signature with one output comes back without its name (TF Serving's row format);
    those rows are returned as `{"score": value}`, tfbert's only single-output signature.
    """
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != size:
        found = f"{len(predictions)} rows" if isinstance(predictions, list) else preview(json.dumps(answer))
        raise ServingClientError(f"{url}: expected 'predictions' with {size} rows, found {found}", target=url)
    rows = []
    for prediction in predictions:
        if isinstance(prediction, dict):
            rows.append({name: prediction[name] for name in ordered(prediction)})
        else:
            rows.append({SINGLE_OUTPUT_NAME: prediction})
    return rows


def parse_rest_classifications(answer: dict, size: int, url: str = "") -> list[Classification]:
    """`{"results": [[[class, score], ...], ...]}` of a `:classify` answer as (class, score) lists."""
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != size:
        found = f"{len(results)} rows" if isinstance(results, list) else preview(json.dumps(answer))
        raise ServingClientError(f"{url}: expected 'results' with {size} rows, found {found}", target=url)
    try:
        return [[(str(label), float(score)) for label, score in row] for row in results]
    except (TypeError, ValueError):
        raise ServingClientError(f"{url}: expected [class, score] pairs in 'results', found "
                                 f"{preview(json.dumps(results))}", target=url) from None


def parse_rest_regressions(answer: dict, size: int, url: str = "") -> list[float]:
    """`{"results": [value, ...]}` of a `:regress` answer as numbers (TF Serving writes non-finite ones as
    strings: "NaN", "Infinity")."""
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != size:
        found = f"{len(results)} values" if isinstance(results, list) else preview(json.dumps(answer))
        raise ServingClientError(f"{url}: expected 'results' with {size} values, found {found}", target=url)
    try:
        return [float(value) for value in results]
    except (TypeError, ValueError):
        raise ServingClientError(f"{url}: expected numbers in 'results', found {preview(json.dumps(results))}",
                                 target=url) from None
