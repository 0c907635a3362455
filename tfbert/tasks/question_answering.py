"""`train_qa.py`'s task: extractive question answering (SQuAD v1.1 / v2.0) on the one runner.

Questions are read with `tfbert.data.squad`, packed with their context into overlapping windows by
`tfbert.tasks.qa_windows` (the same in-graph code the SavedModel runs), labelled with the answer's
start/end tokens (or [CLS]), and trained with `BertQuestionAnswerer`. Evaluation decodes every
window of a question together (`tfbert.tasks.qa_decoding`) and scores exact match and F1 as the
official SQuAD scripts do; the predictions go to `<split>_predictions.json` and
`<split>_nbest_predictions.json` in the official format.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from tfbert import datasets, fileio
from tfbert.data import pipeline, squad
from tfbert.data.examples import DataError
from tfbert.export import export_saved_model
from tfbert.tasks.base import Task, TaskData, predict_batches, read_file_splits, report_skipped
from tfbert.tasks.qa_decoding import decode, squad_scores
from tfbert.tasks.qa_serving import qa_signatures
from tfbert.tasks.qa_windows import answer_positions, make_windows
from tfbert.tasks.question_answerer import BertQuestionAnswerer

logger = logging.getLogger("tfbert")

XQUAD_FILE = ("xquad_en", "xquad.en.json")
_CHUNK = 256  # questions windowed per call of the tokenizer graph


@dataclasses.dataclass
class QAData(TaskData):
    version_2: bool = False
    _encoded: dict = dataclasses.field(default_factory=dict, repr=False)
    predictions: dict = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass
class EncodedWindows:
    """The windows of a split, unpadded, in split order: per window its token ids, token types, context
    character offsets, question index and (start, end) label."""

    input_ids: list
    token_type_ids: list
    char_start: list
    char_end: list
    example: np.ndarray
    labels: np.ndarray


def encode_questions(examples: squad.QAExamples, tokenizer, max_seq_length: int, max_query_length: int,
                     doc_stride: int) -> EncodedWindows:
    """Every question's windows, labelled with its first gold answer (as `run_qa.py` trains)."""
    out = EncodedWindows([], [], [], [], np.zeros([0], np.int64), np.zeros([0, 2], np.int32))
    examples_of, labels = [], []
    for begin in range(0, len(examples), _CHUNK):
        end = min(begin + _CHUNK, len(examples))
        windows = make_windows(tokenizer, tf.constant(examples.questions[begin:end]),
                               tf.constant(examples.contexts[begin:end]), max_seq_length, max_query_length, doc_stride)
        ids = windows.features["input_ids"].numpy()
        types = windows.features["token_type_ids"].numpy()
        lengths = windows.features["attention_mask"].numpy().sum(axis=1)
        starts, ends = windows.char_start.numpy(), windows.char_end.numpy()
        for row, example in enumerate(windows.example.numpy()):
            n = int(lengths[row])
            question = begin + int(example)
            out.input_ids.append(ids[row, :n])
            out.token_type_ids.append(types[row, :n])
            out.char_start.append(starts[row, :n])
            out.char_end.append(ends[row, :n])
            examples_of.append(question)
            answer = examples.answers[question][0] if examples.answers[question] else (None, None)
            labels.append(answer_positions(starts[row, :n], ends[row, :n], answer[1], answer[0]))
    out.example = np.array(examples_of, np.int64)
    out.labels = np.array(labels, np.int32).reshape([-1, 2])
    return out


def _ragged(rows: list) -> tf.RaggedTensor:
    lengths = np.array([len(row) for row in rows], np.int64)
    return tf.RaggedTensor.from_row_lengths(np.concatenate(rows).astype(np.int32) if rows else
                                            np.zeros([0], np.int32), lengths)


def windows_dataset(encoded: EncodedWindows, order: np.ndarray) -> tf.data.Dataset:
    ids = _ragged([encoded.input_ids[i] for i in order])
    types = _ragged([encoded.token_type_ids[i] for i in order])

    def features(input_ids, token_type_ids, labels):
        return {"input_ids": input_ids, "token_type_ids": token_type_ids,
                "attention_mask": tf.ones_like(input_ids)}, labels

    return tf.data.Dataset.from_tensor_slices((ids, types, encoded.labels[order])).map(features)


class QuestionAnsweringTask(Task):
    """`train_qa.py`'s task: `QARunConfig` -> `BertQuestionAnswerer`."""

    name = "question_answering"
    # The start and end losses take the softmax over every position of a window, padding included, as
    # transformers' BertForQuestionAnswering does: padded positions' logits are part of the model's output
    # (the `encoded` signature returns them), so neither training nor the export skips padding.
    skips_padding = False

    def read_file(self, config, path: str) -> squad.QAExamples:
        return squad.read_squad(path, version_2=config.version_2_with_negative, skip_bad_rows=config.skip_bad_rows)

    def load_data(self, config) -> QAData:
        read = dict(version_2=config.version_2_with_negative, skip_bad_rows=config.skip_bad_rows)
        split_fractions = (1 - config.validation_fraction - config.test_fraction, config.validation_fraction,
                           config.test_fraction)
        # a training file or dataset loses --validation_fraction of its questions (test_fraction is the built-in
        # data's: it was taken off the training share too, holding out v / (1 - t))
        held_out = (1 - config.validation_fraction, config.validation_fraction)
        if config.dataset:
            name = config.dataset[len("tfds:"):] if config.dataset.startswith("tfds:") else config.dataset
            train = report_skipped(squad.read_tfds_squad(name, "train", config.tfds_data_dir, **read))
            try:
                validation = report_skipped(squad.read_tfds_squad(name, "validation", config.tfds_data_dir, **read))
            except DataError as e:
                if "no split" not in str(e):
                    raise
                train, validation = squad.split_by_title(train, held_out, config.seed)
            test, description = None, f"tfds:{name}"
        elif config.train_file:
            train, validation, test = read_file_splits(
                config, lambda path: self.read_file(config, path),
                lambda examples: tuple(squad.split_by_title(examples, held_out, config.seed)))
            description = config.train_file
        else:
            everything = report_skipped(self.read_file(config, datasets.path(*XQUAD_FILE)))
            train, validation, test = squad.split_by_title(everything, split_fractions, config.seed)
            description = ("XQuAD-en (1,190 SQuAD v1.1 questions, CC BY-SA 4.0, shipped with tfbert), split by "
                           f"article {split_fractions[0]:.0%}/{split_fractions[1]:.0%}/{split_fractions[2]:.0%} "
                           f"with seed {config.seed}")
        if validation is not None and not len(validation):
            validation = None
        if test is not None and not len(test):
            test = None
        version_2 = (config.version_2_with_negative if config.version_2_with_negative is not None else
                     any(s.version_2 for s in (train, validation, test) if s is not None))
        if version_2 and config.version_2_with_negative is None:  # detected: say from what
            unanswerable = {name: split.has_answers.count(False) for name, split
                            in (("train", train), ("validation", validation), ("test", test)) if split is not None}
            logger.warning("SQuAD v2.0 detected (questions without answers: %s): the model learns to answer "
                           "nothing and is scored on it; --version_2_with_negative false refuses such questions "
                           "instead", ", ".join(f"{n} {c}" for n, c in unanswerable.items()))
        if not version_2 and config.given("null_score_diff_threshold"):
            logger.warning("--null_score_diff_threshold %s is not used: the data is SQuAD v1.1 (every question has "
                           "an answer, and the model always gives one)", config.null_score_diff_threshold)
        # Detected once and kept in the run's config.yaml, so a resumed run and `export_run` agree.
        config.version_2_with_negative = version_2
        if config.max_train_examples and len(train) > config.max_train_examples:
            keep = np.random.default_rng(config.seed).permutation(len(train))[: config.max_train_examples]
            train = train.select(np.sort(keep))
        return QAData(train, validation, test, None, description, version_2=version_2)

    @staticmethod
    def encoded(data: QAData, split: str, tokenizer, config) -> EncodedWindows:
        key = (split, config.max_seq_length, config.max_query_length, config.doc_stride)
        if key not in data._encoded:
            data._encoded[key] = encode_questions(data.split(split), tokenizer, *key[1:])
        return data._encoded[key]

    def eval_order(self, encoded: EncodedWindows) -> np.ndarray:
        return np.argsort([len(ids) for ids in encoded.input_ids], kind="stable")

    def make_dataset(self, data: QAData, split: str, tokenizer, config, training: bool):
        encoded = self.encoded(data, split, tokenizer, config)
        order = np.arange(len(encoded.input_ids)) if training else self.eval_order(encoded)
        lengths = np.array([len(encoded.input_ids[i]) for i in order])
        padding_values = ({"input_ids": tokenizer.pad_id, "token_type_ids": 0, "attention_mask": 0}, 0)
        return pipeline.batch_sequences(windows_dataset(encoded, order).cache(), len(order), padding_values,
                                        lengths=lengths, **config.batching(training, keep_order=True))

    def truncation_report(self, data: QAData, tokenizer, max_seq_length: int) -> dict:
        # Nothing is cut but the question (to max_query_length): a long context becomes several windows.
        questions = len(data.train)
        lengths = tokenizer.tokenize(tf.constant(data.train.contexts)).row_lengths().numpy() if questions else []
        return {"examples": questions, "truncated": 0,
                "max_tokens": int(np.max(lengths)) if questions else 0,
                "mean_tokens": float(np.mean(lengths)) if questions else 0.0}

    def build_model(self, config, data: QAData, dtype) -> BertQuestionAnswerer:
        return BertQuestionAnswerer.from_pretrained(config.model, dtype=dtype, dropout=config.dropout)

    def metric_names(self, config) -> list[str]:
        names = ["exact_match", "f1"]
        if config.version_2_with_negative:
            names += ["HasAns_f1", "NoAns_f1", "best_f1"]
        return names

    def default_best_metric(self, config) -> str:
        return "val_f1"

    def predict_answers(self, model, dataset, data: QAData, split: str, tokenizer, config,
                        with_loss: bool = False) -> tuple[list[dict], float | None]:
        """Each question's decoded answer (see `qa_decoding.decode`), in split order, and with
        `with_loss` the mean loss over the split's windows."""
        encoded = self.encoded(data, split, tokenizer, config)
        order = self.eval_order(encoded)
        logits_of = [None] * len(order)
        position, loss_sum = 0, 0.0
        loss_fn = model.default_loss()
        for _, labels, logits in predict_batches(model, dataset):
            if with_loss:
                loss_sum += float(loss_fn(labels, logits)) * len(labels)
            for row in logits:
                logits_of[order[position]] = row
                position += 1
        examples = data.split(split)
        windows_of = [[] for _ in range(len(examples))]
        for window, question in enumerate(encoded.example):
            n = len(encoded.input_ids[window])
            windows_of[question].append({"start_logits": logits_of[window][:n, 0],
                                         "end_logits": logits_of[window][:n, 1],
                                         "char_start": encoded.char_start[window],
                                         "char_end": encoded.char_end[window]})
        answers = [decode(examples.contexts[i], windows_of[i], config.max_answer_length, config.n_best_size,
                          data.version_2, config.null_score_diff_threshold) for i in range(len(examples))]
        return answers, (loss_sum / len(order) if with_loss and len(order) else None)

    def evaluate(self, model, dataset, data: QAData, split: str, tokenizer, config,
                 with_loss: bool = False) -> dict:
        answers, loss = self.predict_answers(model, dataset, data, split, tokenizer, config, with_loss)
        examples = data.split(split)
        gold = {qid: [text for text, _ in answer] for qid, answer in zip(examples.ids, examples.answers)}
        predicted = {qid: a["text"] for qid, a in zip(examples.ids, answers)}
        diffs = None
        if data.version_2:
            # The official v2 script's best threshold is computed from each question's best span.
            diffs = {qid: a["null_score_diff"] for qid, a in zip(examples.ids, answers)}
            best_spans = {qid: next((c["text"] for c in a["nbest"] if c["start"] >= 0), "")
                          for qid, a in zip(examples.ids, answers)}
            scores = squad_scores(predicted, gold)
            scores.update({k: v for k, v in squad_scores(best_spans, gold, diffs).items()
                           if k.startswith("best_")})
            scores.update({k: v for k, v in squad_scores(predicted, gold, diffs).items()
                           if k.startswith(("HasAns", "NoAns"))})
        else:
            scores = squad_scores(predicted, gold)
        data.predictions[split] = {"predictions": predicted,
                                   "nbest": {qid: a["nbest"] for qid, a in zip(examples.ids, answers)},
                                   "null_odds": diffs}
        out = {k: float(v) for k, v in scores.items() if not k.endswith("total")}
        if with_loss:
            out["loss"] = loss
        return out

    def write_extras(self, model, data: QAData, config, results, output_dir, log_dir) -> None:
        for split, written in data.predictions.items():
            fileio.write_json(os.path.join(output_dir, f"{split}_predictions.json"), written["predictions"])
            fileio.write_json(os.path.join(output_dir, f"{split}_nbest_predictions.json"), written["nbest"])
            if written["null_odds"] is not None:
                fileio.write_json(os.path.join(output_dir, f"{split}_null_odds.json"), written["null_odds"])

    def save_pretrained(self, model, directory: str, data: TaskData) -> None:
        model.save_pretrained(directory)

    def export(self, model, tokenizer, data: QAData, config, base_dir: str, version: int | None = None,
               overwrite: bool = False) -> str:
        version_2 = bool(getattr(data, "version_2", False))
        return export_saved_model(
            model, tokenizer, base_dir, version, max_seq_length=config.max_seq_length, overwrite=overwrite,
            skip_padding=self.skips_padding,
            signatures=qa_signatures(config.max_query_length, config.doc_stride, config.max_answer_length,
                                     config.n_best_size, version_2, config.null_score_diff_threshold),
            metadata={"task": "question_answering", "version_2_with_negative": version_2,
                      "doc_stride": config.doc_stride, "max_query_length": config.max_query_length,
                      "max_answer_length": config.max_answer_length,
                      "null_score_diff_threshold": config.null_score_diff_threshold})

    def data_for_export(self, run_dir: str, config) -> QAData:
        return QAData(None, None, None, None, run_dir, version_2=bool(config.version_2_with_negative))


