"""What every predictor shares: its interface, its error, and the checks on the texts it is given.

`Predictor.predict(texts)` returns one dict of outputs per text and `classify(texts)` one list of
(class, score) per text; `LocalPredictor`, `RestPredictor` and `GrpcPredictor` say where the model runs.
"""

from __future__ import annotations

from typing import Any, Sequence

from tfbert.errors import TfbertError

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"  # a regression export's tf.Example signature (TF Serving's Regress API)
WORDS_SIGNATURE = "tokens"  # a token classifier's signature taking pre-split words
SAVED_MODEL_FILE = "saved_model.pb"
# The order outputs are listed in (the rest follow alphabetically): the answer first.
OUTPUT_ORDER = ("answer", "label", "label_id", "score", "start", "end", "no_answer", "predicted", "probabilities",
                "logits")
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


def check_texts(texts: Sequence[str], pairs: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
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


def check_words(sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    """Pre-split sentences, each a list of non-empty words (an empty string is the signature's padding)."""
    if isinstance(sentences, str) or any(isinstance(words, str) for words in sentences):
        raise TypeError("expected a list of sentences, each a list of words")
    checked = []
    for i, words in enumerate(sentences):
        words = check_texts(words, None)[0]
        if not words:
            raise ValueError(f"sentence {i}: no words")
        if "" in words:
            raise ValueError(f"sentence {i}: word {words.index('')} is empty")
        checked.append(words)
    return checked


def padded(sentences: list[list[str]]) -> list[list[str]]:
    """`sentences` as one rectangle of words, the short ones padded with ""."""
    width = max(map(len, sentences), default=0)
    return [words + [""] * (width - len(words)) for words in sentences]


def check_inputs(inputs: dict[str, Sequence]) -> dict[str, list]:
    """Named string inputs, one list each, all of one length (checked as `check_texts`); an input may also
    be a list of equal-length lists of strings (a [batch, n] tensor, e.g. a token classifier's `tokens`)."""
    if not inputs:
        raise ValueError("no inputs given")
    checked = {}
    for name, values in inputs.items():
        values = list(values)
        if values and all(isinstance(value, (list, tuple)) for value in values):
            checked[name] = [check_texts(row, None)[0] for row in values]
            if len(set(map(len, checked[name]))) > 1:
                raise ValueError(f"{name}: rows of different lengths; pad them with \"\"")
        else:
            checked[name] = check_texts(values, None)[0]
    sizes = {name: len(values) for name, values in checked.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"inputs of different lengths: {sizes}; give one value per example for each input")
    return checked


def preview(text: str | bytes, width: int = 80) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.translate({9: "\\t", 10: "\\n", 13: "\\r"})
    return text if len(text) <= width else text[:width - 1] + "…"


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
        texts, pairs = check_texts(texts, pairs)
        inputs = {"text": texts} if pairs is None else {"text": texts, "text_pair": pairs}
        return self.predict_inputs(inputs, signature)

    def predict_inputs(self, inputs: dict[str, Sequence[str]], signature: str = DEFAULT_SIGNATURE) -> list[Result]:
        """One dict of outputs per example of a signature with any string inputs, e.g. a question
        answerer's `{"question": [...], "context": [...]}` (one list per input, the same length).

        Raises:
            ServingClientError: the model cannot be reached or refuses the request.
            ValueError / TypeError: inputs of different lengths, or not strings.
        """
        inputs = check_inputs(inputs)
        size = len(next(iter(inputs.values())))
        results = []
        for start in range(0, size, self.batch_size):
            results += self._predict_batch({name: values[start:start + self.batch_size]
                                            for name, values in inputs.items()}, signature)
        return results

    def predict_words(self, sentences: Sequence[Sequence[str]], signature: str = WORDS_SIGNATURE) -> list[Result]:
        """A token classifier's (NER) outputs for pre-split sentences, through its `tokens` signature: one
        dict per sentence, with a tag per word and the entities (their `start`/`end` are word indices, the
        end exclusive, and their text the words joined by spaces).

        Raises:
            ServingClientError: the model cannot be reached, refuses the request or has no such signature.
            ValueError / TypeError: a sentence without words, an empty word, or not strings.
        """
        sentences = check_words(sentences)
        results = []
        for start in range(0, len(sentences), self.batch_size):
            batch = padded(sentences[start:start + self.batch_size])
            results += self._predict_batch({"tokens": batch}, signature)
        return results

    def classify(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                 signature: str = CLASSIFY_SIGNATURE) -> list[Classification]:
        """One list of (class, score) per text, from the tf.Example `classify` signature.

        Raises:
            ServingClientError: the model cannot be reached or refuses the request.
        """
        return self._in_batches(self._classify_batch, texts, pairs, signature)

    def regress(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                signature: str = REGRESS_SIGNATURE) -> list[float]:
        """One number per text, from a regression export's tf.Example `regress` signature.

        Raises:
            ServingClientError: the model cannot be reached or refuses the request.
        """
        return self._in_batches(self._regress_batch, texts, pairs, signature)

    def _in_batches(self, request, texts, pairs, signature) -> list:
        texts, pairs = check_texts(texts, pairs)
        results = []
        for start in range(0, len(texts), self.batch_size):
            batch_pairs = None if pairs is None else pairs[start:start + self.batch_size]
            results += request(texts[start:start + self.batch_size], batch_pairs, signature)
        return results

    def _predict_batch(self, inputs: dict[str, list[str]], signature) -> list[Result]:
        raise NotImplementedError

    def _classify_batch(self, texts, pairs, signature) -> list[Classification]:
        raise NotImplementedError

    def _regress_batch(self, texts, pairs, signature) -> list[float]:
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
