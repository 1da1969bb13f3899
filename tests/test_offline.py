"""Offline behaviour: an unreachable hub id fails in one line naming the id and the override."""

import pytest

from harness.offline import (
    HubUnavailableError,
    configure_offline,
    hub_reachable,
    require_local_or_hub,
)


def test_unreachable_hub_id_names_id_and_override(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    with pytest.raises(HubUnavailableError) as info:
        require_local_or_hub("meta-llama/Llama-3.1-8B", None, "model.backbone.path")
    message = str(info.value)
    assert "\n" not in message
    assert "'meta-llama/Llama-3.1-8B'" in message and "model.backbone.path=" in message


def test_local_copy_is_used_and_a_missing_one_is_named(tmp_path):
    assert require_local_or_hub("org/model", str(tmp_path), "model.backbone.path") == str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"model.sae.path=.*nowhere"):
        require_local_or_hub("org/sae", str(tmp_path / "nowhere"), "model.sae.path")


def test_configure_offline_sets_hf_variables(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert configure_offline("offline") is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    with pytest.raises(ValueError, match="run.hub must be one of"):
        configure_offline("sometimes")
