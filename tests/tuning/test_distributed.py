"""A distributed search's flags (tfbert.tuning.distributed): KerasTuner's variables for chief and workers."""

import os

import pytest

from tfbert import tuning
from tfbert.tuning import TuneRunConfig


def test_distributed_flags_set_keras_tuner_variables(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores them after the test
        monkeypatch.delenv(name)
    assert tuning.configure_distribution(TuneRunConfig()) == (None, None, None)
    config = TuneRunConfig(role="worker", oracle_address="10.0.0.2:8000", worker_index=3)
    assert tuning.configure_distribution(config) == ("worker", "worker3", "10.0.0.2:8000")
    assert (os.environ["KERASTUNER_TUNER_ID"], os.environ["KERASTUNER_ORACLE_IP"],
            os.environ["KERASTUNER_ORACLE_PORT"]) == ("worker3", "10.0.0.2", "8000")
    assert tuning.configure_distribution(TuneRunConfig(role="chief", oracle_address="127.0.0.1:8001")) == \
        ("chief", "chief", "127.0.0.1:8001")
    # KerasTuner's own variables, set without --role, are honoured
    assert tuning.configure_distribution(TuneRunConfig()) == ("chief", "chief", "127.0.0.1:8001")
    monkeypatch.delenv("KERASTUNER_TUNER_ID")
    with pytest.raises(tuning.SearchError, match="KERASTUNER_TUNER_ID or KERASTUNER_ORACLE_PORT is not"):
        tuning.configure_distribution(TuneRunConfig())
