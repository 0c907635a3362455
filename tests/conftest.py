"""Shared fixtures: a tiny config and a tiny vocabulary, so unit tests run in seconds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download

import pytest  # noqa: E402

import tfbert  # noqa: E402,F401  (its runtime defaults, set before TensorFlow loads, as in a user's pipeline)

TINY_WORDS = ("the a an is was of and to in it this that good bad movie film great awful not very "
              "hello world foo bar play ##s ##ing ##ed un ##able , . ! ? ' - 0 1 2 3 4 5 6 7 8 9").split()


def tiny_config(**overrides):
    from tfbert import BertConfig

    fields = dict(vocab_size=len(TINY_WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
    fields.update(overrides)
    return BertConfig(**fields)


@pytest.fixture
def tiny_vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def tiny_backbone():
    from tfbert import BertBackbone

    return BertBackbone(tiny_config())


def minilm_dir():
    from tfbert.checkpoints import resolve

    return resolve("minilm-l6")


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_vocab_file):
    """A tiny random BERT saved as a HF directory (config.json, model.safetensors, vocab.txt)."""
    import keras

    from tfbert import BertBackbone
    from tfbert.text import BertTokenizer

    keras.utils.set_random_seed(0)
    directory = tmp_path / "tiny-bert"
    BertBackbone(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).save_pretrained(directory)
    BertTokenizer(tiny_vocab_file).save_pretrained(directory)
    return str(directory)


def transformers_learning_rates(kind, peak, total_steps, warmup_steps):
    """The learning rate of each of `total_steps` updates under transformers' `get_scheduler(kind)`."""
    import torch
    from transformers import get_scheduler

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=peak)
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def write_sentiment_csv(path, n, seed=0, header=True):
    """A learnable toy task: the label is the sentiment word in the text."""
    import random

    rng = random.Random(seed)
    filler = "the a movie film this that was is very it".split()
    rows = ["text,label"] if header else []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        word = rng.choice(["good", "great"] if label == "pos" else ["bad", "awful"])
        words = [rng.choice(filler) for _ in range(rng.randint(1, 4))]
        words.insert(rng.randint(0, len(words)), word)
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


TINY_TFDS_ROWS = {"train": [("good film", 1), ("bad film", 0), ("déjà vu", 1)],
                  "validation": [("great film", 1), ("awful film", 0)],
                  "test": [("fine", 0)]}


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory):
    """A prepared TFDS dataset 'tiny_tfbert_reviews' (text, label: neg/pos), made without network."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class TinyTfbertReviews(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(rows) for split, rows in TINY_TFDS_ROWS.items()}

        def _generate_examples(self, rows):
            for i, (text, label) in enumerate(rows):
                yield i, {"text": text, "label": label}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    TinyTfbertReviews(data_dir=data_dir).download_and_prepare()
    return data_dir


def kill_after_first_epoch(command, output_dir, timeout=300):
    """Starts a training command and kills it with SIGKILL once its backup records a finished epoch."""
    import json
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = os.path.join(str(output_dir), "backup", "training_metadata.json")
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if os.path.exists(metadata):
                with open(metadata, encoding="utf-8") as f:
                    if json.loads(f.read() or "{}").get("epoch", 0) >= 1:
                        break
            assert process.poll() is None, "training ended before it could be interrupted"
            time.sleep(0.2)
        assert process.poll() is None, "no epoch finished in time"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def tiny_sentiment_export(tmp_path_factory):
    """A tiny random 3-label classifier exported with its tokenizer (see serving_checks.build_export)."""
    from serving_checks import build_export

    return build_export(tmp_path_factory)
