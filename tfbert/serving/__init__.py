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
for multi-label); `classify(texts)` returns one list of `(class, score)` per text, and `regress(texts)`
one number per text (a regression export's tf.Example API); `predict_words(sentences)` a token
classifier's outputs for pre-split sentences.

    predictor = LocalPredictor("exports/sentiment")           # the highest version
    predictor.predict(["a good film"])[0]["label"]            # 'pos'
    RestPredictor("http://localhost:8501", "sentiment").classify(["a good film"])
    # [[('neg', 0.02), ('neutral', 0.05), ('pos', 0.93)]]

Request builders (`rest_predict_request`, `rest_classify_request`, `grpc_predict_request`,
`grpc_classify_request`) are public so other clients can send exactly the same payloads.

`pipelines/predict.py` is these predictors with what it reads and prints, both public too:
`load_texts`, `load_text_pairs`, `load_questions`, `words_of` (arguments, a file or stdin; `tfbert.serving.inputs`)
and `format_table`, `format_jsonl`, `format_answers`, `format_fills` (`tfbert.serving.formats`).
"""

from tfbert.serving.base import (CLASSIFY_SIGNATURE, DEFAULT_SIGNATURE, REGRESS_SIGNATURE, Classification, Predictor,
                                 Result, ServingClientError, make_example)
from tfbert.serving.formats import (format_answers, format_fills, format_jsonl, format_table, mask_token_of,
                                    warn_cut_masks)
from tfbert.serving.grpc_client import (GrpcPredictor, grpc_classify_request, grpc_inputs_request, grpc_predict_request,
                                       grpc_regress_request)
from tfbert.serving.inputs import (load_questions, load_text_pairs, load_texts, pairs_of, read_sources, texts_of,
                                   words_of)
from tfbert.serving.local import LocalPredictor, read_export_metadata, resolve_export_dir
from tfbert.serving.rest import (RestPredictor, parse_rest_classifications, parse_rest_predictions,
                                 parse_rest_regressions, rest_classify_request, rest_inputs_request,
                                 rest_predict_request, rest_regress_request)
from tfbert.serving.results import entities_of, is_tagging, rows_from_columns, tagged_words

__all__ = ["ServingClientError", "Predictor", "LocalPredictor", "RestPredictor", "GrpcPredictor", "Result",
           "Classification", "DEFAULT_SIGNATURE", "CLASSIFY_SIGNATURE", "rest_predict_request",
           "rest_classify_request", "rest_inputs_request", "grpc_predict_request", "grpc_inputs_request",
           "grpc_classify_request", "grpc_regress_request", "rest_regress_request", "parse_rest_regressions",
           "parse_rest_predictions", "REGRESS_SIGNATURE",
           "parse_rest_classifications", "make_example", "resolve_export_dir", "read_export_metadata",
           "rows_from_columns", "is_tagging", "entities_of", "tagged_words", "load_texts", "load_text_pairs",
           "load_questions", "read_sources", "words_of", "texts_of", "pairs_of", "format_table", "format_jsonl", "format_answers", "format_fills",
           "warn_cut_masks", "mask_token_of"]
