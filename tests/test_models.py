"""Sparse encoders (models/): pooling, truncated backbones, SAE activations, vocabulary head, save/load.

Everything runs on tiny random models built here (Llama / Gemma 3 configs, a word-level tokenizer,
sae-lens SAEs saved with `save_model`), offline, on CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import transformers
from mteb.models.model_meta import ModelMeta
from omegaconf import OmegaConf
from sae_lens import (
    SAE,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)
from sae_lens.saes.sae import SAEMetadata
from tiny_models import save_tiny_lm, save_word_tokenizer
from transformers import (
    AutoModelForCausalLM,
)

import models
from harness import offline
from harness.offline import HubUnavailableError
from models.backbone import CausalLMBackbone
from models.build import load_encoder
from models.inspect import describe, load_explanations, top_features
from models.sae_pooling import SaeLatentPooling, max_log1p_pool, sae_hook_layer
from models.spec import ModelSpec
from models.vocab_head import VocabLogitsPooling, load_with_lm_head

HIDDEN, N_LAYERS, LAYER, D_SAE = 32, 4, 1, 48
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "red", "blue"]
WORDS += ["green", "house", "tree", "river"]
TEXTS = ["the cat sat on the mat", "dog ran", "red house by the blue river tree"]

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Every test runs as if the hub were unreachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline.hub_reachable.cache_clear()
    yield
    offline.hub_reachable.cache_clear()


def _save_lm(folder: Path, arch: str) -> Path:
    return save_tiny_lm(folder, WORDS, arch=arch, hidden=HIDDEN, n_layers=N_LAYERS)


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lms")
    return {arch: _save_lm(root / arch, arch) for arch in ("gemma", "llama")}


def _random_sae(architecture: str, d_in: int = HIDDEN, layer: int = LAYER) -> SAE:
    torch.manual_seed(1)
    meta = SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post")
    if architecture == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=D_SAE, metadata=meta))
    elif architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=D_SAE, k=5, metadata=meta))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=D_SAE, metadata=meta))
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(torch.randn_like(param) * (0.3 if name == "threshold" else 1.0))
        if architecture == "jumprelu":
            sae.threshold.abs_()
    return sae


@pytest.fixture(scope="module")
def sae_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saes")
    dirs = {}
    for arch in ("jumprelu", "topk", "standard"):
        _random_sae(arch).save_model(root / arch)
        dirs[arch] = root / arch
    _random_sae("jumprelu", d_in=16).save_model(root / "narrow")
    _random_sae("jumprelu", layer=2).save_model(root / "layer2")
    dirs.update(narrow=root / "narrow", layer2=root / "layer2")
    return dirs


def _cfg(kind: str, backbone_path: Path | None, sae_path: Path | None = None, **extra):
    sae = {"release": None, "id": None, "path": str(sae_path)} if sae_path else None
    cfg = {
        "name": "test",
        "kind": kind,
        "backbone": {
            "id": None,
            "path": str(backbone_path) if backbone_path else None,
            "layer": LAYER,
            "dtype": "float32",
            "device": "cpu",
            "max_length": 32,
            "bidirectional": False,
            "adapter": None,
        },
        "sae": sae,
        "top_k": {"query": 40, "document": 400},
        "checkpoint": None,
    }
    return OmegaConf.merge(OmegaConf.create(cfg), OmegaConf.create(extra))


def _dense(encoder, texts=TEXTS) -> torch.Tensor:
    return encoder.encode(texts, convert_to_sparse_tensor=False, batch_size=2)


# --- pooling -------------------------------------------------------------------------------


def test_pooling_hand_worked_example():
    # token scores (identity "encoder"), d = 2; row 0: tokens 0-1 in, token 2 masked; row 1: all masked
    scores = torch.tensor(
        [
            [[math.e - 1, -2.0], [0.5, math.e**2 - 1], [100.0, 100.0]],
            [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]],
        ]
    )
    mask = torch.tensor([[True, True, False], [False, False, False]])
    expected = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    for chunk in (1, 2, 100):
        pooled = max_log1p_pool(scores, mask, lambda x: x, 2, chunk)
        torch.testing.assert_close(pooled, expected)


# --- backbone ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gemma", "llama"])
def test_truncated_forward_equals_full_hidden_state(lm_dirs, arch):
    backbone = CausalLMBackbone.from_pretrained(
        str(lm_dirs[arch]), LAYER, bidirectional=False
    ).eval()
    assert len(backbone.model.layers) == LAYER + 1
    assert not any(f"layers.{LAYER + 1}." in key for key in backbone.model.state_dict())
    full = AutoModelForCausalLM.from_pretrained(lm_dirs[arch]).eval()
    features = backbone.preprocess(TEXTS)
    with torch.no_grad():
        out = backbone(dict(features))
        reference = full(**features, output_hidden_states=True).hidden_states[LAYER + 1]
    valid = features["attention_mask"].bool()
    torch.testing.assert_close(out["token_embeddings"][valid], reference[valid])
    bos = features["input_ids"] == 1
    assert torch.equal(out["pooling_mask"], valid & ~bos)
    assert bos[:, 0].all() and backbone.tokenizer.padding_side == "right"


def test_lora_adapter_is_merged(lm_dirs, tmp_path):
    from peft import LoraConfig, get_peft_model

    full = AutoModelForCausalLM.from_pretrained(lm_dirs["llama"])
    peft_model = get_peft_model(
        full, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload().eval()
    plain = CausalLMBackbone.from_pretrained(
        str(lm_dirs["llama"]), LAYER, bidirectional=False
    ).eval()
    adapted = CausalLMBackbone.from_pretrained(str(lm_dirs["llama"]), LAYER, bidirectional=False)
    adapted.apply_adapter(str(tmp_path / "adapter"))
    features = adapted.preprocess(TEXTS[:1])
    with torch.no_grad():
        got = adapted.eval()(dict(features))["token_embeddings"]
        before = plain(dict(features))["token_embeddings"]
        reference = merged(**features, output_hidden_states=True).hidden_states[LAYER + 1]
    torch.testing.assert_close(got, reference)
    assert not torch.allclose(got, before)


# --- SAE head ------------------------------------------------------------------------------


def _manual_activations(sae: SAE, x: torch.Tensor, architecture: str) -> torch.Tensor:
    """The SAE's activation written out from its parameters (not via sae-lens code)."""
    pre = (x - sae.b_dec * sae.cfg.apply_b_dec_to_input) @ sae.W_enc + sae.b_enc
    if architecture == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold)
    if architecture == "topk":
        values, ids = pre.topk(sae.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, ids, values.relu())
    return torch.relu(pre)


@pytest.mark.parametrize("architecture", ["jumprelu", "topk", "standard"])
def test_sae_activation_and_pooling_match(sae_dirs, architecture):
    sae = SAE.load_from_disk(sae_dirs[architecture])
    torch.manual_seed(2)
    hidden = torch.randn(2, 5, HIDDEN)
    mask = torch.tensor([[False, True, True, True, True], [False, True, True, False, False]])
    with torch.no_grad():
        manual = _manual_activations(sae, hidden, architecture)
        torch.testing.assert_close(sae.encode(hidden), manual)
        assert (manual > 0).any()
        expected = torch.stack(
            [torch.log1p(manual[b][mask[b]].relu()).amax(dim=0) for b in range(2)]
        )
        head = SaeLatentPooling(sae, chunk_tokens=3)
        features = {"token_embeddings": hidden, "pooling_mask": mask, "attention_mask": mask}
        pooled = head(features)["sentence_embedding"]
    torch.testing.assert_close(pooled, expected)
    assert head.get_embedding_dimension() == D_SAE


def test_sae_hook_layer():
    assert sae_hook_layer("blocks.26.hook_resid_post", "x") == 26
    assert sae_hook_layer("blocks.27.hook_resid_pre", "x") == 26
    with pytest.raises(ValueError, match=r"reads hook 'blocks.3.hook_mlp_out', not the residual"):
        sae_hook_layer("blocks.3.hook_mlp_out", "x")


def test_mismatched_sae_fails_before_loading_weights(lm_dirs, sae_dirs, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("weights were loaded before the SAE check")

    monkeypatch.setattr(CausalLMBackbone, "from_pretrained", forbidden)
    monkeypatch.setattr(SAE, "load_from_disk", forbidden)
    with pytest.raises(ValueError, match=r"d_in=16 but the backbone's hidden size is 32"):
        models.build_encoder(_cfg("splare", lm_dirs["gemma"], sae_dirs["narrow"]))
    with pytest.raises(ValueError, match=r"reads layer 2 .* model.backbone.layer=1"):
        models.build_encoder(_cfg("splare", lm_dirs["gemma"], sae_dirs["layer2"]))
    with pytest.raises(ValueError, match=r"model.backbone.layer=7 is out of range .*valid 0..3"):
        models.build_encoder(
            _cfg("splare", lm_dirs["gemma"], sae_dirs["jumprelu"], backbone={"layer": 7})
        )


# --- vocabulary head -----------------------------------------------------------------------


def test_vocab_head_chunked_equals_unchunked_and_full_lm_logits(lm_dirs):
    last = N_LAYERS - 1
    backbone, head = load_with_lm_head(str(lm_dirs["gemma"]), last, bidirectional=False)
    assert head.tied
    full = AutoModelForCausalLM.from_pretrained(lm_dirs["gemma"]).eval()
    features = backbone.preprocess(TEXTS)
    with torch.no_grad():
        out = backbone.eval()(dict(features))
        pooled = {}
        for chunk in (1, 5, 10_000):
            head.chunk_tokens = chunk
            pooled[chunk] = head(dict(out))["sentence_embedding"]
        logits = full(**features).logits
    mask = out["pooling_mask"]
    expected = torch.stack(
        [torch.log1p(logits[b][mask[b]].relu()).amax(dim=0) for b in range(len(TEXTS))]
    )
    torch.testing.assert_close(pooled[10_000], expected)
    for chunk in (1, 5):  # chunking changes only float rounding of the matmul
        torch.testing.assert_close(pooled[chunk], pooled[10_000], rtol=1e-6, atol=1e-6)


# --- build, save/load, offline -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "arch", "sae"),
    [("splare", "llama", "topk"), ("splade_llm", "gemma", None), ("splade_llm", "llama", None)],
)
def test_build_offline_and_save_load_round_trip(lm_dirs, sae_dirs, tmp_path, kind, arch, sae):
    cfg = _cfg(kind, lm_dirs[arch], sae_dirs[sae] if sae else None)
    encoder = models.build_encoder(cfg)
    assert not offline.hub_reachable()
    before = _dense(encoder)
    assert before.shape[1] == (D_SAE if kind == "splare" else len(WORDS) + 4)
    assert (before > 0).any() and (before >= 0).all()
    encoder.save(str(tmp_path / "saved"))
    reloaded = load_encoder(str(tmp_path / "saved"))
    torch.testing.assert_close(_dense(reloaded), before, rtol=0, atol=0)
    if kind == "splade_llm":
        assert isinstance(reloaded[1], VocabLogitsPooling)
        tied = reloaded[1].weight is reloaded[0].model.get_input_embeddings().weight
        assert tied == (arch == "gemma")
    via_checkpoint = models.build_encoder(_cfg(kind, None, checkpoint=str(tmp_path / "saved")))
    torch.testing.assert_close(_dense(via_checkpoint), before, rtol=0, atol=0)


def test_mlm_splade_builds_from_a_local_folder(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    save_word_tokenizer(tmp_path / "mlm", WORDS)
    cfg = _cfg("splade_mlm", tmp_path / "mlm", backbone={"layer": None, "max_length": 16})
    encoder = models.build_encoder(cfg)
    assert encoder.max_seq_length == 16
    vectors = _dense(encoder)
    assert vectors.shape == (len(TEXTS), len(WORDS) + 4) and (vectors > 0).any()
    assert "splade_mlm-mlm-len16" in models.variant_name(ModelSpec.from_config(cfg))


def test_unreachable_hub_ids_give_one_line_errors(lm_dirs, tmp_path):
    cfg = OmegaConf.load(Path(models.__file__).parent.parent / "conf" / "model" / "splare7b.yaml")
    with pytest.raises(HubUnavailableError) as err:
        models.build_encoder(cfg)
    assert "meta-llama/Llama-3.1-8B" in str(err.value) and "model.backbone.path" in str(err.value)
    assert "\n" not in str(err.value)
    local_backbone = OmegaConf.merge(
        cfg, {"backbone": {"path": str(lm_dirs["llama"]), "layer": LAYER}}
    )
    with pytest.raises(HubUnavailableError, match=r"llama_scope_lxr_32x/l26r_32x.*model.sae.path"):
        models.build_encoder(local_backbone)


def test_sae_fallback_when_hub_unreachable(lm_dirs, sae_dirs):
    cfg = _cfg("splare", lm_dirs["gemma"], None)
    cfg.sae = {
        "release": "gemma-scope-2-270m-pt-res",
        "id": "layer_9_width_16k_l0_medium",
        "path": None,
    }
    with pytest.raises(HubUnavailableError):
        models.build_encoder(cfg)
    cfg.sae.fallback = str(sae_dirs["standard"])
    encoder = models.build_encoder(cfg)
    assert encoder.get_embedding_dimension() == D_SAE
    assert "-standard-" in models.variant_name(ModelSpec.from_config(cfg))


def _name(cfg) -> str:
    return models.variant_name(ModelSpec.from_config(cfg))


def test_variant_names_are_unique_per_variant():
    conf = Path(models.__file__).parent.parent / "conf" / "model"
    names = set()
    configs = ("splare7b", "splare2b", "splade_llama", "splade_v3", "splare_gemma3_270m",
               "splare_gemma2_2b")
    for name in configs:
        cfg = OmegaConf.load(conf / f"{name}.yaml")
        if name == "splare_gemma3_270m":
            cfg.sae.path = "/some/local/layer_9_width_16k_l0_medium"
        names.add(_name(cfg))
        names.add(_name(OmegaConf.merge(cfg, {"top_k": {"query": 10, "document": 100}})))
        names.add(_name(OmegaConf.merge(cfg, {"backbone": {"dtype": "float16"}})))
        if cfg.kind != "splade_mlm":
            names.add(_name(OmegaConf.merge(cfg, {"backbone": {"adapter": "/x/lora-a"}})))
    assert len(names) == 4 * len(configs) - 1
    assert all("//" not in n and n.count("/") == 1 for n in names)  # one org/name separator
    splare7b = _name(OmegaConf.load(conf / "splare7b.yaml"))
    assert all(
        part in splare7b
        for part in ("Llama-3.1-8B", "L26", "causal", "llama_scope_lxr_32x.l26r_32x", "bf16",
                     "q40-d400")
    )


ENCODER_CONFIGS = (
    "splare7b",
    "splare2b",
    "splade_llama",
    "splade_v3",
    "splare_gemma3_270m",
    "splare_tiny",
    "splade_tiny_llm",
    "splade_tiny",
    "splare_gemma2_2b",
)
BACKBONE_KEYS = {"id", "revision", "path", "dtype", "device", "max_length", "adapter"}
DECODER_KEYS = {"layer", "bidirectional", "attn_implementation"}


def test_encoder_configs_follow_the_schema():
    conf = Path(models.__file__).parent.parent / "conf" / "model"
    for name in ENCODER_CONFIGS:
        cfg = OmegaConf.load(conf / f"{name}.yaml")
        assert cfg.name == name
        assert set(cfg.keys()) >= {"name", "kind", "backbone", "sae", "top_k", "checkpoint"}
        spec = ModelSpec.from_config(cfg)
        expected = BACKBONE_KEYS | (DECODER_KEYS if spec.kind.decoder else set())
        assert set(cfg.backbone.keys()) >= expected
        assert (cfg.sae is not None) == (cfg.kind == "splare")
        assert (spec.tau is not None) == spec.kind.trainable
        facts = spec.facts  # what the config says about the weights must be valid for mteb
        ModelMeta(
            loader=None, name=f"x/{name}", revision="r", release_date=facts.release_date,
            languages=list(facts.languages or []) or None, n_parameters=None,
            memory_usage_mb=None, max_tokens=None, embed_dim=None, license=facts.license,
            open_weights=True, public_training_code=None, public_training_data=None,
            framework=["PyTorch"], similarity_fn_name="dot", use_instructions=False,
            training_datasets=None,
        )


# --- inspect -------------------------------------------------------------------------------


def test_inspect_top_latents_and_tokens(lm_dirs, sae_dirs, tmp_path):
    encoder = models.build_encoder(_cfg("splare", lm_dirs["llama"], sae_dirs["standard"]))
    vector = _dense(encoder, [TEXTS[0]])[0]
    top = top_features(encoder, TEXTS[0], n=4)
    assert [i for i, _ in top] == vector.topk(4).indices.tolist()
    torch.testing.assert_close(torch.tensor([w for _, w in top]), vector.topk(4).values)
    first = top[0][0]
    (tmp_path / "expl.jsonl").write_text(f'{{"index": {first}, "description": "cats on mats"}}\n')
    rows = describe(encoder, TEXTS[0], n=2, explanations=load_explanations(tmp_path / "expl.jsonl"))
    assert rows[0][:2] == (first, "cats on mats") and rows[1][1] == f"latent {top[1][0]}"
    vocab_encoder = models.build_encoder(_cfg("splade_llm", lm_dirs["llama"]))
    token_rows = describe(vocab_encoder, "cat", n=3)
    assert all(label in vocab_encoder.tokenizer.get_vocab() for _, label, _ in token_rows)
