"""Shipped embedded assets (models/assets/): the SAE and the CPU-trained adapters install byte for
byte, an altered file or an adapter trained with another SAE fails in one line, and the shipped
adapter changes the embedded SPLARE's vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import models
from models import embedded


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _prepared_sae(folder: Path, weights: bytes) -> Path:
    """A folder shaped like a prepared SAE asset (manifest + files)."""
    _write(folder / embedded.SAE_WEIGHTS, weights)
    _write(folder / "cfg.json", b'{"d_sae": 4}')
    (folder / embedded.MANIFEST).write_text(json.dumps({"info": {"d_sae": 4}, "files": {}}))
    return folder


def _trained_adapter(folder: Path) -> Path:
    for name in embedded.ADAPTER_FILES:
        _write(folder / name, f"{name} contents".encode())
    (folder / "train_summary.json").write_text(json.dumps({"steps": 3}))
    return folder


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """models/assets and the harness cache redirected to empty temporary folders."""
    monkeypatch.setattr(embedded, "SHIPPED_DIR", tmp_path / "assets")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_ship_then_install_is_byte_identical_and_checks_the_sae(shipped):
    embedded.ship("sae-gemma3-270m", _prepared_sae(shipped / "sae_a", b"weights A"))
    sae = embedded.resolve("sae-gemma3-270m")
    assert (sae / embedded.SAE_WEIGHTS).read_bytes() == b"weights A"
    assert embedded.read_manifest(sae)["info"]["installed_from"] == "models/assets/sae-gemma3-270m"
    source = _trained_adapter(shipped / "run" / "adapter")
    target = embedded.ship("adapter-splare-tiny", source)
    facts = embedded.read_shipped("adapter-splare-tiny")["info"]
    assert facts["sae_weights_sha256"] == embedded._sha256(sae / embedded.SAE_WEIGHTS)
    assert facts["train_summary"] == {"steps": 3}
    installed = embedded.resolve("adapter-splare-tiny")
    for name in embedded.ADAPTER_FILES:
        assert (installed / name).read_bytes() == (source / name).read_bytes() == (target / name).read_bytes()

    # another SAE on this machine: the adapter no longer installs
    embedded.ship("sae-gemma3-270m", _prepared_sae(shipped / "sae_b", b"weights B"))
    embedded.resolve("sae-gemma3-270m", verify=True)  # the cached copy is replaced by B
    assert (embedded.asset_dir("sae-gemma3-270m") / embedded.SAE_WEIGHTS).read_bytes() == b"weights B"
    (embedded.asset_dir("adapter-splare-tiny") / embedded.MANIFEST).unlink()
    with pytest.raises(embedded.ShippedAssetError, match="was trained with SAE weights sha256") as err:
        embedded.resolve("adapter-splare-tiny")
    assert "\n" not in str(err.value)


def test_an_altered_or_missing_shipped_file_fails_in_one_line(shipped):
    embedded.ship("sae-gemma3-270m", _prepared_sae(shipped / "sae", b"weights"))
    _write(embedded.shipped_dir("sae-gemma3-270m") / embedded.SAE_WEIGHTS, b"weightz")
    with pytest.raises(embedded.ShippedAssetError, match=r"sae_weights.safetensors does not match shipped.json"):
        embedded.resolve("sae-gemma3-270m")
    with pytest.raises(embedded.ShippedAssetError, match=r"adapter-splare-tiny: .*shipped.json is missing"):
        embedded.read_shipped("adapter-splare-tiny")
    with pytest.raises(embedded.ShippedAssetError, match="lacks adapter_config.json"):
        embedded.ship("adapter-splare-tiny", shipped / "empty")
    with pytest.raises(ValueError, match="has no training recipe"):
        embedded.resolve("splade-bert-tiny", retrain=True)


def test_the_repository_ships_the_sae_its_adapters_were_trained_with():
    sae = embedded.read_shipped(embedded.SAE_ASSET)["files"][embedded.SAE_WEIGHTS]["sha256"]
    prepared = embedded.resolve(embedded.SAE_ASSET, verify=True) / embedded.SAE_WEIGHTS
    assert embedded._sha256(prepared) == sae  # what `make prepare` installed is the shipped copy
    adapters = [n for n in embedded.ASSETS if n.startswith("adapter-")]
    assert adapters
    for name in adapters:
        info = embedded.read_shipped(name)["info"]
        assert info["train_summary"]["cpu_budget_seconds"] > 0
        if "splare" in name:
            assert info["sae_weights_sha256"] == sae


@pytest.mark.parametrize("base", ["splare_tiny", "splade_tiny_llm"])
def test_the_shipped_adapter_is_applied_by_the_trained_config(base):
    from harness.config import compose_config

    texts = ["Wann wurde die Universität gegründet?", "The river floods every spring."]
    vectors = {}
    for config in (base, f"{base}_trained"):
        cfg = compose_config([f"model={config}"]).model
        vectors[config] = models.build_encoder(cfg).encode_document(texts, convert_to_tensor=True).to_dense()
    zero_shot, trained = vectors[base], vectors[f"{base}_trained"]
    assert zero_shot.shape == trained.shape
    assert not torch.allclose(zero_shot, trained, atol=1e-3)
