"""Causal vs bidirectional attention per decoder family, and the read-out check
(models/attention.py, models/backbone.py).

Every supported family (Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3) as a tiny random model
(hidden 32, 3 layers, cut after layer 1, sliding windows of 4 tokens where the family has them),
under every attention implementation the harness offers for it, in both modes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata
from tiny_models import save_tiny_lm
from transformers import AutoModelForCausalLM, GemmaConfig

import models.backbone as backbone_module
from models import attention
from models.backbone import CausalLMBackbone
from models.sae_pooling import SaeLatentPooling
from models.vocab_head import load_with_lm_head

HIDDEN, N_LAYERS, LAYER = 32, 3, 1
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "red", "blue"]
WORDS += ["green", "house", "tree", "river", "by"]
MODEL_TYPES = {
    "llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma2": "gemma2", "gemma3": "gemma3_text",
}
# Gemma 3 with a sliding and a full layer below the cut (its default pattern has 5 sliding first)
SETTINGS = {"gemma3": {"layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}}
CASES = [
    (arch, impl)
    for arch, model_type in MODEL_TYPES.items()
    for impl in attention.FAMILIES[model_type].implementations
]
TARGET = "the cat sat on the mat"
LONGER = "the dog ran fast on the red mat by the blue river tree"
SHORTER = "dog ran"

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def lm_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attention_lms")
    return {
        arch: save_tiny_lm(root / arch, WORDS, arch=arch, hidden=HIDDEN, n_layers=N_LAYERS,
                           **SETTINGS.get(arch, {}))
        for arch in MODEL_TYPES
    }


@pytest.fixture(scope="session")
def sae_head() -> SaeLatentPooling:
    """A random JumpReLU SAE reading `blocks.1.hook_resid_post`, with small thresholds."""
    torch.manual_seed(1)
    meta = SAEMetadata(hook_name=f"blocks.{LAYER}.hook_resid_post")
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=HIDDEN, d_sae=64, metadata=meta))
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(torch.randn_like(param) * (0.1 if name == "threshold" else 1.0))
        sae.threshold.abs_()
    return SaeLatentPooling(sae, chunk_tokens=4).eval()


def _backbone(lm_dirs, arch: str, impl: str, bidirectional: bool) -> CausalLMBackbone:
    return CausalLMBackbone.from_pretrained(
        str(lm_dirs[arch]), LAYER, bidirectional=bidirectional, attn_implementation=impl
    ).eval()


@torch.no_grad()
def _states(backbone: CausalLMBackbone, texts: list[str]) -> dict[str, torch.Tensor]:
    return backbone(backbone.preprocess(texts))


# --- causal vs bidirectional ---------------------------------------------------------------


@pytest.mark.parametrize(("arch", "impl"), CASES)
def test_early_tokens_see_a_later_token_only_when_bidirectional(lm_dirs, arch, impl):
    one, two = "the cat sat", "the cat ran"  # differ from the first token of the last word on
    causal = _backbone(lm_dirs, arch, impl, bidirectional=False)
    bidir = _backbone(lm_dirs, arch, impl, bidirectional=True)
    assert causal.model.config._attn_implementation == impl == bidir.attn_implementation
    ids = [causal.tokenizer(t)["input_ids"] for t in (one, two)]
    first = next(i for i, (a, b) in enumerate(zip(*ids, strict=True)) if a != b)
    c1, c2 = (_states(causal, [t])["token_embeddings"][0] for t in (one, two))
    b1, b2 = (_states(bidir, [t])["token_embeddings"][0] for t in (one, two))
    torch.testing.assert_close(c1[:first], c2[:first], rtol=0, atol=0)
    assert not torch.allclose(c1[first], c2[first])
    for position in (first - 2, first - 1):  # within half a sliding window (2) of `first`
        assert not torch.allclose(b1[position], b2[position], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(b1[:first], c1[:first])


@pytest.mark.parametrize(("arch", "impl"), CASES)
def test_causal_states_equal_the_full_models_hidden_states(lm_dirs, arch, impl):
    """Causal mode is the unmodified model: transformers' own full LM's state after layer 1."""
    backbone = _backbone(lm_dirs, arch, impl, bidirectional=False)
    full = AutoModelForCausalLM.from_pretrained(lm_dirs[arch], attn_implementation=impl).eval()
    features = backbone.preprocess([TARGET, LONGER, SHORTER])
    with torch.no_grad():
        got = backbone(dict(features))["token_embeddings"]
        reference = full(**features, output_hidden_states=True).hidden_states[LAYER + 1]
    valid = features["attention_mask"].bool()
    torch.testing.assert_close(got[valid], reference[valid])


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen3", "gemma3"])
def test_eager_and_sdpa_agree_in_both_modes(lm_dirs, arch):
    """Two kernels, two mask formats (additive float, bool), one attention pattern."""
    for bidirectional in (False, True):
        eager, sdpa = (
            _states(_backbone(lm_dirs, arch, impl, bidirectional), [TARGET, LONGER, SHORTER])
            for impl in ("eager", "sdpa")
        )
        valid = eager["pooling_mask"]
        torch.testing.assert_close(
            eager["token_embeddings"][valid], sdpa["token_embeddings"][valid], rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize(("arch", "impl"), CASES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_pooled_vector_does_not_depend_on_the_batch(lm_dirs, sae_head, arch, impl, bidirectional):
    backbone = _backbone(lm_dirs, arch, impl, bidirectional)
    n_tokens = len(backbone.tokenizer(TARGET)["input_ids"])
    batches = {"alone": ([TARGET], 0), "with longer": ([TARGET, LONGER], 0),
               "with shorter": ([SHORTER, TARGET], 1)}
    states, pooled = {}, {}
    with torch.no_grad():
        for name, (texts, row) in batches.items():
            out = backbone(backbone.preprocess(texts))
            states[name] = out["token_embeddings"][row, :n_tokens]
            pooled[name] = sae_head(out)["sentence_embedding"][row]
    assert (pooled["alone"] > 0).sum() >= 5
    for name in ("with longer", "with shorter"):
        torch.testing.assert_close(states[name], states["alone"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pooled[name], pooled["alone"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arch", "impl"), [("mistral", "sdpa"), ("gemma2", "eager")])
def test_bidirectional_masks_follow_padding_and_half_the_window(lm_dirs, arch, impl):
    """Explicit masks, written out independently: key k visible from query q iff k is a real token
    and, in a sliding layer, |q - k| <= sliding_window // 2 (= 2 here)."""
    backbone = _backbone(lm_dirs, arch, impl, bidirectional=True)
    config = backbone.model.config
    features = backbone.preprocess([LONGER, SHORTER])
    embeds = backbone.model.get_input_embeddings()(features["input_ids"])
    masks = attention.bidirectional_masks(config, embeds, features["attention_mask"])
    if not isinstance(masks, dict):
        masks = {"sliding_attention": masks}
    assert set(masks) == set(attention.layer_types(config))
    n = features["input_ids"].shape[1]
    real = features["attention_mask"].bool()[:, None, None, :].expand(2, 1, n, n)
    distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
    expected = {"full_attention": real, "sliding_attention": real & (distance <= 2)}
    for kind, mask in masks.items():
        allowed = mask if mask.dtype == torch.bool else mask == 0
        assert torch.equal(allowed, expected[kind]), kind


def test_explicit_window_is_gemma3s_own_bidirectional_attention(lm_dirs):
    """Gemma 3 honours its flag in transformers; the explicit masks built for other families, put
    into a causal-config Gemma 3, give the same states: one meaning of bidirectional everywhere."""
    flagged = _backbone(lm_dirs, "gemma3", "eager", bidirectional=True)
    plain = _backbone(lm_dirs, "gemma3", "eager", bidirectional=False)
    assert flagged.model.config.use_bidirectional_attention
    assert not plain.model.config.use_bidirectional_attention
    features = plain.preprocess([LONGER, TARGET])
    with torch.no_grad():
        expected = flagged(dict(features))["token_embeddings"]
        embeds = plain.model.get_input_embeddings()(features["input_ids"])
        config, padding = plain.model.config, features["attention_mask"]
        masks = attention.bidirectional_masks(config, embeds, padding)
        got = plain.model(
            inputs_embeds=embeds, attention_mask=masks, output_hidden_states=True
        ).hidden_states[-1]
    valid = features["attention_mask"].bool()
    torch.testing.assert_close(got[valid], expected[valid])
    assert not torch.allclose(got[valid], plain(dict(features))["token_embeddings"][valid])


# --- one-line failures before any weights load -----------------------------------------------


@pytest.fixture
def no_weights(monkeypatch):
    """Any weight loading fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("weights were loaded before the attention check")

    monkeypatch.setattr(backbone_module.AutoModel, "from_pretrained", forbidden)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", forbidden)


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_family_fails_in_one_line_before_loading(tmp_path, no_weights):
    GemmaConfig(vocab_size=24, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16).save_pretrained(tmp_path)
    unknown = r"unsupported backbone family model_type='gemma'"
    for load in (CausalLMBackbone.from_pretrained, load_with_lm_head):
        with pytest.raises(ValueError, match=unknown) as e:
            load(str(tmp_path), 1, bidirectional=False)
        assert "supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text" in _one_line(e)
    with pytest.raises(ValueError, match=r"model_type='gpt2'"):
        attention.check_attention("gpt2", False, None)
    with pytest.raises(ValueError, match=r"'gemma3' \(a multimodal Gemma 3 config"):
        attention.check_attention("gemma3", True, "eager")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_flash_attention_fails_in_one_line_before_loading(lm_dirs, arch, no_weights):
    for load in (CausalLMBackbone.from_pretrained, load_with_lm_head):
        with pytest.raises(ValueError, match=r"attn_implementation='flash_attention_2'") as e:
            load(str(lm_dirs[arch]), LAYER, bidirectional=True,
                 attn_implementation="flash_attention_2")
        message = _one_line(e)
        assert "bidirectional attention: flash-attention takes no custom attention mask" in message
        assert message.endswith("valid choices: sdpa, eager")


def test_check_attention_from_the_config_alone(lm_dirs, no_weights):
    config = transformers.AutoConfig.from_pretrained(lm_dirs["gemma2"])
    attention.check_attention(config, True, "eager")
    attention.check_attention(config, True, None)
    assert attention.resolve_implementation(config, None) == "eager"
    with pytest.raises(ValueError, match=r"'sdpa' cannot run Gemma 2 \(gemma2\) causal attention: "
                       r"its attention-logit softcapping .*; valid choices: eager$"):
        attention.check_attention(config, False, "sdpa")
    with pytest.raises(ValueError, match=r"'flex_attention' cannot run Qwen3 \(qwen3\) causal"):
        attention.check_attention("qwen3", False, "flex_attention")
    assert attention.resolve_implementation("qwen3", None) == "sdpa"


def test_model_built_with_the_wrong_flag_is_rejected(lm_dirs):
    causal = _backbone(lm_dirs, "gemma3", "eager", bidirectional=False)
    with pytest.raises(ValueError, match=r"use_bidirectional_attention=False but bidirectional"):
        CausalLMBackbone(causal.model, causal.tokenizer, LAYER, bidirectional=True)


# --- read-out check ----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(MODEL_TYPES))
def test_readout_is_the_raw_stream_or_its_final_norm(lm_dirs, arch):
    """Both read-outs load (the probe passes) on every family and equal the full LM's states."""
    raw = CausalLMBackbone.from_pretrained(str(lm_dirs[arch]), LAYER, bidirectional=False).eval()
    normed, _ = load_with_lm_head(str(lm_dirs[arch]), LAYER, bidirectional=False)
    full = AutoModelForCausalLM.from_pretrained(lm_dirs[arch]).eval()
    features = raw.preprocess([TARGET])
    with torch.no_grad():
        reference = full(**features, output_hidden_states=True).hidden_states[LAYER + 1]
        torch.testing.assert_close(raw(dict(features))["token_embeddings"], reference)
        torch.testing.assert_close(
            normed.eval()(dict(features))["token_embeddings"], full.model.norm(reference)
        )
    assert not torch.allclose(reference, full.model.norm(reference), rtol=1e-2, atol=1e-2)


def test_readout_check_trips_on_a_normed_hidden_state(lm_dirs, monkeypatch):
    """transformers < 5.18 ignores tie_last_hidden_states=False: hidden_states[-1] is normed."""
    truncated = backbone_module.truncated_config

    def old_transformers(*args, **kwargs):
        config = truncated(*args, **kwargs)
        config.tie_last_hidden_states = True
        return config

    monkeypatch.setattr(backbone_module, "truncated_config", old_transformers)
    with pytest.raises(RuntimeError, match=r"after layer 1 are the final-norm output, expected "
                       r"the raw residual stream \(transformers") as e:
        CausalLMBackbone.from_pretrained(str(lm_dirs["llama"]), LAYER, bidirectional=False)
    _one_line(e)


def test_readout_check_trips_on_a_raw_state_for_the_lm_head(lm_dirs):
    class ReadsRaw(CausalLMBackbone):
        def forward(self, features, **kwargs):
            final_norm, self.final_norm = self.final_norm, False
            try:
                return super().forward(features)
            finally:
                self.final_norm = final_norm

    loaded = _backbone(lm_dirs, "qwen2", "sdpa", bidirectional=False)
    with pytest.raises(RuntimeError, match=r"are the raw residual stream, expected the final-norm"):
        ReadsRaw(loaded.model, loaded.tokenizer, LAYER, bidirectional=False, final_norm=True)


# --- loading -----------------------------------------------------------------------------------


def _recording_safe_open(real, read: list[str]):
    """A `safetensors.safe_open` that appends to `read` the key of every tensor materialised."""

    class Slice:
        def __init__(self, key: str, lazy) -> None:
            self._key, self._lazy = key, lazy

        def __getitem__(self, index):
            read.append(self._key)
            return self._lazy[index]

        def __getattr__(self, name: str):
            return getattr(self._lazy, name)

    class File:
        def __init__(self, *args, **kwargs) -> None:
            self._file = real(*args, **kwargs)

        def get_slice(self, key: str) -> Slice:
            return Slice(key, self._file.get_slice(key))

        def get_tensor(self, key: str) -> torch.Tensor:
            read.append(key)
            return self._file.get_tensor(key)

        def __getattr__(self, name: str):
            return getattr(self._file, name)

    return File


@pytest.mark.parametrize("with_lm_head", [False, True], ids=["backbone", "lm_head"])
def test_only_layers_up_to_the_cut_are_read_from_disk(tmp_path, monkeypatch, with_lm_head):
    import transformers.modeling_utils

    folder = save_tiny_lm(tmp_path / "llama", WORDS, arch="llama", hidden=HIDDEN, n_layers=4)
    full = AutoModelForCausalLM.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    full.save_pretrained(folder, max_shard_size="20KB")  # one shard per few tensors
    assert len(list(folder.glob("model-*.safetensors"))) > 4
    materialised: list[str] = []
    recording = _recording_safe_open(transformers.modeling_utils.safe_open, materialised)
    monkeypatch.setattr(transformers.modeling_utils, "safe_open", recording)
    if with_lm_head:
        backbone, head = load_with_lm_head(str(folder), LAYER, bidirectional=False, device="cpu")
        assert head.weight.device == torch.device("cpu")
    else:
        backbone = CausalLMBackbone.from_pretrained(
            str(folder), LAYER, bidirectional=False, device="cpu"
        )
    read = set(materialised)
    assert {k.split(".")[2] for k in read if k.startswith("model.layers.")} == {"0", "1"}
    assert "model.embed_tokens.weight" in read and "model.norm.weight" in read
    assert ("lm_head.weight" in read) == with_lm_head
    assert {p.device for p in backbone.parameters()} == {torch.device("cpu")}
    with torch.no_grad():
        reference = full(**backbone.preprocess([TARGET]), output_hidden_states=True)
        expected = reference.hidden_states[LAYER + 1]
        if with_lm_head:
            expected = full.model.norm(expected)
        got = backbone.eval()(backbone.preprocess([TARGET]))["token_embeddings"]
    torch.testing.assert_close(got, expected)
