"""`MaskedTokenCrossentropy`: the mean cross-entropy of the labelled tokens of the whole batch. One device: the
same value as Keras' ignore_class loss and torch's CrossEntropyLoss(ignore_index=-100); under
MirroredStrategy the replicas' token counts are summed (tests/training/test_distribution.py trains with it)."""

import math

import keras
import numpy as np
import pytest

from tfbert.tasks.losses import IGNORE_LABEL, MaskedTokenCrossentropy


def test_the_mean_over_labelled_tokens_as_keras_and_torch_take_it():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 5)).astype("float32")
    labels = rng.integers(0, 5, (3, 7)).astype("int32")
    labels[rng.random((3, 7)) < 0.4] = IGNORE_LABEL
    ours = float(MaskedTokenCrossentropy()(labels, logits))
    keras_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)(
        labels, logits))
    assert ours == pytest.approx(keras_loss, abs=1e-6)
    torch = pytest.importorskip("torch")
    reference = torch.nn.functional.cross_entropy(torch.tensor(logits).reshape(-1, 5),
                                                  torch.tensor(labels, dtype=torch.long).reshape(-1),
                                                  ignore_index=IGNORE_LABEL)
    assert ours == pytest.approx(float(reference), abs=1e-6)
    # the docstring's example, and a batch without a labelled token (a window of padding): 0, not NaN
    example = np.log(np.float32([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
    assert float(MaskedTokenCrossentropy()(np.array([[0, -100, 1]]), example)) == pytest.approx(
        (math.log(2) - math.log(0.8)) / 2, abs=1e-6)
    assert float(MaskedTokenCrossentropy()(np.full((2, 3), IGNORE_LABEL), logits[:2, :3])) == 0.0


def test_it_is_saved_with_a_compiled_model(tmp_path):
    from conftest import tiny_config
    from tfbert import BertBackbone, load_model
    from tfbert.tasks import BertTokenClassifier

    model = BertTokenClassifier(BertBackbone(tiny_config()), num_labels=3)
    model.compile(optimizer="adam", loss=model.default_loss())
    model.optimizer.build(model.trainable_variables)
    assert isinstance(model.loss, MaskedTokenCrossentropy) and model.loss.reduction == "sum"
    model.save(tmp_path / "model.keras")
    loaded = load_model(str(tmp_path / "model.keras"))
    assert isinstance(loaded.loss, MaskedTokenCrossentropy) and loaded.loss.ignore_class == IGNORE_LABEL
    restored = MaskedTokenCrossentropy.from_config(MaskedTokenCrossentropy(ignore_class=-1).get_config())
    assert (restored.ignore_class, restored.reduction) == (-1, "sum")
