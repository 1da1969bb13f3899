"""Result identity: the encoding key and revision change with every input that changes a number,
and only with those; local weights are hashed once and the hash reused while size and mtime hold.
Offline, on tiny random models and SAEs built here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata
from tiny_models import save_tiny_lm
from transformers import AutoModelForCausalLM

import models
from harness.search import search_code_digest
from models import identity
from models.spec import ModelSpec

WORDS = ["flow", "wing", "heat", "shock", "layer", "boundary"]
HIDDEN, LAYER = 32, 1


@pytest.fixture(autouse=True)
def _own_hash_store(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _sae(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    meta = SAEMetadata(hook_name=f"blocks.{LAYER}.hook_resid_post")
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=HIDDEN, d_sae=40, metadata=meta))
    with torch.no_grad():
        for param in sae.parameters():
            param.normal_()
    sae.save_model(folder)
    return folder


@pytest.fixture
def parts(tmp_path) -> dict[str, Path]:
    lm = save_tiny_lm(tmp_path / "lm", WORDS, arch="llama", hidden=HIDDEN, n_layers=3)
    adapter = tmp_path / "adapter"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(lm),
                                LoraConfig(r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(adapter)
    return {"lm": lm, "sae": _sae(tmp_path / "sae", 0), "sae2": _sae(tmp_path / "sae2", 1),
            "adapter": adapter}


def _spec(parts, **changes) -> ModelSpec:
    cfg = OmegaConf.load(Path(models.__file__).parent.parent / "conf" / "model" / "splare2b.yaml")
    cfg.backbone.path, cfg.backbone.layer, cfg.sae.path = str(parts["lm"]), LAYER, str(parts["sae"])
    return ModelSpec.from_config(OmegaConf.merge(cfg, changes))


def _key(spec: ModelSpec) -> str:
    return models.encoding_key(spec)


def test_each_input_changes_the_encoding_key_and_top_k_search_do_not(parts, monkeypatch):
    base = _key(_spec(parts))
    assert _key(_spec(parts)) == base  # deterministic
    seen = {base}
    for changes in (
        {"backbone": {"dtype": "float32"}},
        {"backbone": {"max_length": 64}},
        {"backbone": {"bidirectional": True}},
        {"backbone": {"attn_implementation": "eager"}},
        {"head": {"chunk_tokens": 7}},
        {"sae": {"path": str(parts["sae2"])}},
        {"backbone": {"adapter": str(parts["adapter"])}},
    ):
        key = _key(_spec(parts, **changes))
        assert key not in seen, changes
        seen.add(key)
    same = _spec(parts, top_k={"query": 10, "document": 100})
    assert _key(same) == base
    # the files themselves: the tokenizer, one byte of the weights, the adapter's weights
    tokenizer = parts["lm"] / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"<unk>"', '"<UNK>"', 1))
    after_tokenizer = _key(_spec(parts))
    assert after_tokenizer not in seen
    weights = next(parts["lm"].glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert _key(_spec(parts)) not in {*seen, after_tokenizer}
    adapter_weights = next(parts["adapter"].glob("*.safetensors"))
    with_adapter = _key(_spec(parts, backbone={"adapter": str(parts["adapter"])}))
    data = bytearray(adapter_weights.read_bytes())
    data[-1] ^= 0x01
    adapter_weights.write_bytes(bytes(data))
    assert _key(_spec(parts, backbone={"adapter": str(parts["adapter"])})) != with_adapter
    # the encoding path's code version
    before = _key(_spec(parts))
    monkeypatch.setattr(identity, "ENCODE_MODULES", (*identity.ENCODE_MODULES, "hub.py"))
    assert _key(_spec(parts)) != before


def test_revision_covers_top_k_and_search_parameters(parts):
    spec = _spec(parts)
    key = _key(spec)
    exact = {"name": "exact", "num_threads": 0}
    seismic = {"name": "seismic", "query_cut": 10, "heap_factor": 0.9}
    revisions = {
        models.revision(spec, key, exact, search_code_digest()),
        models.revision(spec, key, seismic, search_code_digest()),
        models.revision(spec, key, {**seismic, "heap_factor": 0.7}, search_code_digest()),
        models.revision(_spec(parts, top_k={"query": 10, "document": 100}), key, exact,
                        search_code_digest()),
        models.revision(spec, key, exact, "another search code version"),
    }
    assert len(revisions) == 5


def test_code_digest_sees_a_source_change(tmp_path):
    source = tmp_path / "kernel.py"
    source.write_text("x = 1\n")
    before = identity.code_digest([source])
    source.write_text("x = 2\n")
    assert identity.code_digest([source]) != before


def test_weight_hash_is_reused_while_size_and_mtime_hold(tmp_path, monkeypatch):
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"a" * 4096)
    first = identity.file_digest(file)
    stat = file.stat()
    reads = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        if Path(path) == file.resolve():
            reads.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert identity.file_digest(file) == first and not reads  # reused: the file is not read
    file.write_bytes(b"b" * 4096)  # same size; restore the mtime: the stamp is unchanged
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert identity.file_digest(file) == first and not reads
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert identity.file_digest(file) != first and reads  # a new mtime: hashed again


def test_folder_digest_ignores_download_metadata(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    before = identity.folder_digest(folder)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.lock").write_text("lock")
    assert identity.folder_digest(folder) == before
    # an embedded asset prepared on another machine: same files, another manifest (date, seconds)
    (folder / "embedded_manifest.json").write_text('{"created": "2026-12-03T09:16:23+0000"}')
    assert identity.folder_digest(folder) == before
    shutil.copy(folder / "config.json", folder / "generation_config.json")
    assert identity.folder_digest(folder) != before


def test_model_meta_counts_and_reads_training_datasets(parts):
    spec = _spec(parts, backbone={"adapter": str(parts["adapter"])})
    meta = models.model_meta(spec, "r")
    assert meta.training_datasets is None  # the adapter says nothing of its data: unknown
    (parts["adapter"] / "train_config.yaml").write_text(
        "data:\n  name: msmarco_bge_kd\n  mteb_tasks: [MSMARCO]\n")
    meta = models.model_meta(spec, "r")
    assert meta.training_datasets == {"MSMARCO"} and meta.embed_dim == 40
    zero_shot = models.model_meta(_spec(parts), "r")
    assert zero_shot.training_datasets == set() and zero_shot.n_parameters == meta.n_parameters
    assert zero_shot.release_date == "2024-07-23" and "eng-Latn" in zero_shot.languages
