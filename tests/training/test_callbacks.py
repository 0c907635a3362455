"""Training callbacks of tfbert.training.callbacks that guard files a run keeps."""

import os

import numpy as np
import pytest


def test_the_best_checkpoint_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """Keras writes ModelCheckpoint's file in place: a run killed mid-write left a truncated
    best.weights.h5 that the end of training could not load. Written beside it and renamed, a failed write
    leaves the last best weights as they were, and no temporary file."""
    import keras

    from tfbert.training.callbacks import AtomicModelCheckpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    path = str(tmp_path / "best.weights.h5")
    checkpoint = AtomicModelCheckpoint(path, monitor="loss", save_best_only=True, save_weights_only=True)
    model.fit(x, y, epochs=1, callbacks=[checkpoint], verbose=0)
    first = model.get_weights()
    assert os.listdir(tmp_path) == ["best.weights.h5"]

    save_weights = type(model).save_weights

    def killed(self, filepath, *args, **kwargs):
        assert os.path.basename(filepath).startswith(".best.tmp-") and filepath.endswith(".weights.h5")
        with open(filepath, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_weights", killed)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=1, callbacks=[checkpoint], verbose=0)
    monkeypatch.setattr(type(model), "save_weights", save_weights)
    assert os.listdir(tmp_path) == ["best.weights.h5"]
    model.load_weights(path)  # still the first epoch's, whole
    for loaded, saved in zip(model.get_weights(), first):
        np.testing.assert_array_equal(loaded, saved)


@pytest.mark.parametrize("epochs, every_n_steps, logged", [(2, 100, 1), (2, 3, 2)])
def test_training_logger_rates(tmp_path, epochs, every_n_steps, logged):
    # a run with fewer updates than every_n_steps logged no rate, and metrics.json said null
    import keras

    from tfbert.training.callbacks import TrainingLogger

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((16, 3), "float32"), np.zeros((16, 1), "float32")
    logger = TrainingLogger(str(tmp_path), batch_size=4, every_n_steps=every_n_steps)
    model.fit(x, y, batch_size=4, epochs=epochs, callbacks=[logger], verbose=0)  # 4 updates per epoch
    assert len(logger.examples_per_second) == logged and all(rate > 0 for rate in logger.examples_per_second)
