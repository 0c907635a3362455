"""`tfbert.serving.LocalPredictor` and `resolve_export_dir` against a real tiny export."""

import re

import numpy as np
import pytest
from serving_checks import export, local  # noqa: F401,F811 (fixtures)
from serving_checks import LABELS, TEXTS, assert_same_predictions


def test_local_predictor_from_base_and_version_folders(export, local):
    from tfbert.serving import LocalPredictor

    assert local.export_dir == export["version_dir"]
    assert local.metadata["labels"] == LABELS and local.text_pair is False
    results = local.predict(TEXTS)
    assert len(results) == len(TEXTS)
    for result in results:
        assert list(result) == ["label", "label_id", "probabilities", "logits"]
        assert isinstance(result["label"], str) and isinstance(result["label_id"], int)
        assert result["label"] == LABELS[result["label_id"]] == LABELS[int(np.argmax(result["probabilities"]))]
        assert all(isinstance(p, float) for p in result["probabilities"])
        assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-6)

    from_version = LocalPredictor(export["version_dir"], batch_size=3)  # two signature calls
    assert_same_predictions(from_version.predict(TEXTS), results, tolerance=1e-6)

    classified = local.classify(TEXTS)
    for classes, result in zip(classified, results):
        assert [label for label, _ in classes] == LABELS
        np.testing.assert_allclose([score for _, score in classes], result["probabilities"], atol=1e-6)
    assert local.predict([]) == []


def test_local_predictor_refuses_what_it_cannot_run(export, local, tmp_path):
    from tfbert.serving import ServingClientError

    with pytest.raises(ServingClientError, match="no signature 'nope'; the export has classify, encoded"):
        local.predict(["x"], signature="nope")
    with pytest.raises(ServingClientError, match="signature 'encoded' takes attention_mask, input_ids"):
        local.predict(["x"], signature="encoded")
    with pytest.raises(ServingClientError, match="reads single texts, but text pairs were given"):
        local.predict(["x"], pairs=["y"])
    with pytest.raises(ValueError, match="1 text pairs for 2 texts"):
        local.predict(["x", "y"], pairs=["z"])
    with pytest.raises(TypeError, match="not one string"):
        local.predict("one string")


def test_resolve_export_dir_picks_the_highest_version(tmp_path):
    from tfbert.serving import ServingClientError, resolve_export_dir

    for version in ("1", "2", "10", ".tmp-11-abc", "not-a-version"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "12").mkdir()  # a version folder without a SavedModel is skipped
    assert resolve_export_dir(str(tmp_path)) == str(tmp_path / "10")
    assert resolve_export_dir(str(tmp_path), 2) == str(tmp_path / "2")
    assert resolve_export_dir(str(tmp_path / "2")) == str(tmp_path / "2")
    with pytest.raises(ServingClientError, match=re.escape(f"{tmp_path}: no version 3; found versions [1, 2, 10]")):
        resolve_export_dir(str(tmp_path), 3)
    with pytest.raises(ServingClientError, match="no such export folder"):
        resolve_export_dir(str(tmp_path / "missing"))
    with pytest.raises(ServingClientError, match=re.escape(f"{tmp_path / '12'}: no saved_model.pb here")):
        resolve_export_dir(str(tmp_path / "12"))
    # a training run's folder stands for its saved_model/ (it was refused: no saved_model.pb there)
    run = tmp_path / "runs" / "cls-x"
    (run / "saved_model" / "3").mkdir(parents=True)
    (run / "saved_model" / "3" / "saved_model.pb").write_bytes(b"")
    assert resolve_export_dir(str(run)) == str(run / "saved_model" / "3")
