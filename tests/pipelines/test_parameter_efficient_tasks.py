"""LoRA with frozen layers through the NER, QA and MLM runs (classification's: tests/training/
test_parameter_efficient.py): the same flags on the shared runner, adapters that reload onto the base."""

import json
import random

import keras
import numpy as np
import pytest
from test_pretrain_mlm import write_tiny_corpus
from test_train_ner import write_conll
from test_train_qa import squad_document, write_json

from tfbert.tasks import BertMaskedLM, BertQuestionAnswerer, BertTokenClassifier
from tfbert.training.parameter_efficient import load_adapters, parameter_counts
from tfbert.training.run_config import MaskedLMRunConfig, QARunConfig, TokenClassifierRunConfig


def _ner(tmp_path, model_dir):
    write_conll(tmp_path / "train.conll", 40, seed=1)
    config = TokenClassifierRunConfig(train_file=str(tmp_path / "train.conll"), max_seq_length=32)
    return config, lambda: BertTokenClassifier.from_pretrained(model_dir, num_labels=4), {}


def _qa(tmp_path, model_dir):
    write_json(tmp_path / "train.json", squad_document("t", 4, 8, seed=1))
    config = QARunConfig(train_file=str(tmp_path / "train.json"), max_seq_length=48, doc_stride=16,
                         max_query_length=12)
    return config, lambda: BertQuestionAnswerer.from_pretrained(model_dir), {}


def _mlm(tmp_path, model_dir):
    config = MaskedLMRunConfig(train_file=write_tiny_corpus(tmp_path / "corpus.txt", 60, seed=1), max_seq_length=32)
    positions = {"masked_positions": np.array([[1, 4, 7]] * 2, "int32")}
    return config, lambda: BertMaskedLM.from_pretrained(model_dir), positions


@pytest.mark.slow
@pytest.mark.parametrize("task", [_ner, _qa, _mlm], ids=["ner", "qa", "mlm"])
def test_lora_with_frozen_layers_in_every_task_run(tmp_path, tiny_model_dir, task, capsys):
    import dataclasses

    from tfbert.training.runner import train

    config, base, extra_inputs = task(tmp_path, tiny_model_dir)
    config = dataclasses.replace(config, model=tiny_model_dir, epochs=1, batch_size=8, learning_rate=5e-3,
                                 lora_rank=2, lora_targets="query,value,intermediate", freeze_layers=1,
                                 output_dir=str(tmp_path / "run"), log_dir=str(tmp_path / "tb"))
    train(config)
    run = tmp_path / "run"
    adapters = json.loads((run / "adapters" / "adapter_config.json").read_text())
    lora = [name for name in adapters["variables"] if "lora_kernel" in name]
    # layer 0 is frozen: no adapters there; layer 1 has them on the three targets
    assert sorted(lora) == sorted(f"encoder_layer_1/{t}/lora_kernel_{ab}" for t in ("query", "value", "intermediate")
                                  for ab in "ab")
    assert adapters["freeze_layers"] == 1 and adapters["lora_targets"] == ["query", "value", "intermediate"]
    counts = json.loads((run / "metrics.json").read_text())["parameters"]
    assert 0 < counts["trainable"] < counts["total"] / 3
    assert f"parameters: {counts['trainable']:,} trainable of {counts['total']:,}" in capsys.readouterr().out
    # the base and the adapters answer as model.keras (the adapters merged) does
    fresh = base()
    load_adapters(fresh, str(run / "adapters"))
    assert parameter_counts(fresh) == counts
    merged = keras.models.load_model(run / "model.keras", compile=False)
    rng = random.Random(0)
    ids = np.array([[2] + [rng.randrange(5, 30) for _ in range(14)] + [3]] * 2, "int32")
    x = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids), **extra_inputs}
    for a, b in zip(keras.tree.flatten(merged.predict(x, verbose=0)), keras.tree.flatten(fresh.predict(x, verbose=0))):
        np.testing.assert_allclose(a, b, atol=1e-5)
