"""SPLARE head: a frozen sae-lens SAE encoder on every token, then SPLADE max pooling.

u_j = max_i log(1 + relu(z_ij)) over the non-padding, non-BOS tokens i, where z_i = act(W_enc h_i
+ b_enc) is the SAE's own `encode` (its input normalisation, b_dec subtraction and activation:
TopK, JumpReLU thresholds, ReLU). The decoder is never used. Tokens are encoded in chunks so the
`[batch, tokens, d_sae]` activations never exist at once, in training either (`models.pooling`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import (
    get_sae_lens_config_from_disk,
    handle_config_defaulting,
    load_sae_config_from_huggingface,
)
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
from sentence_transformers.base.modules.module import Module

from models.backbone import saved_module_files, torch_dtype
from models.pooling import max_log1p_pool

RESID_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(post|pre)$")
ENCODERS = ("standard", "gated", "jumprelu", "topk", "matching_pursuit")


def sae_hook_layer(hook_name: str | None, where: str) -> int:
    """Decoder layer whose output a residual-stream SAE reads (`resid_post` of l = `resid_pre` of l+1)."""
    match = RESID_HOOK.match(hook_name or "")
    if match is None:
        raise ValueError(
            f"SAE {where} reads hook '{hook_name}', not the residual stream (blocks.<l>.hook_resid_post)"
        )
    layer = int(match.group(1))
    return layer if match.group(2) == "post" else layer - 1


def read_sae_config(release: str | None, sae_id: str | None, path: str | None) -> dict[str, Any]:
    """The SAE's config dict (sae-lens 6 layout: `d_in`, `d_sae`, `architecture`, `metadata`), weights untouched.

    `path` (a folder written by `SAE.save_model`) wins over `release`/`sae_id`; the hub form only
    downloads the config (and, for some releases, reads a safetensors header).
    """
    if path:
        if not (Path(path) / "cfg.json").is_file():
            raise FileNotFoundError(f"model.sae.path={path}: no sae-lens cfg.json in that folder")
        cfg = handle_config_defaulting(get_sae_lens_config_from_disk(path))
        if cfg.get("normalize_activations") == "expected_average_only_in":
            raise ValueError(
                f"model.sae.path={path}: normalize_activations=expected_average_only_in with no folded "
                "scaling factor; fold it (sae.fold_activation_norm_scaling_factor) before saving"
            )
        return cfg
    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise ValueError(f"model.sae.release='{release}' is not a sae-lens pretrained release")
    if sae_id not in directory[release].saes_map:
        raise ValueError(f"model.sae.id='{sae_id}' is not in sae-lens release '{release}'")
    return load_sae_config_from_huggingface(release, sae_id)


def check_sae_fits(sae_cfg: dict[str, Any], hidden_size: int, layer: int, where: str) -> None:
    """Fail in one line unless the SAE encodes the residual stream of width `hidden_size` after `layer`."""
    architecture = sae_cfg.get("architecture", "standard")
    if architecture not in ENCODERS:
        raise ValueError(
            f"SAE {where} has architecture '{architecture}'; expected one of {', '.join(ENCODERS)}"
        )
    if sae_cfg["d_in"] != hidden_size:
        raise ValueError(
            f"SAE {where} has d_in={sae_cfg['d_in']} but the backbone's hidden size is {hidden_size}"
        )
    metadata = sae_cfg.get("metadata") or {}
    hook = metadata.get("hook_name", sae_cfg.get("hook_name"))
    sae_layer = sae_hook_layer(hook, where)
    if sae_layer != layer:
        raise ValueError(
            f"SAE {where} reads layer {sae_layer} ('{hook}') but model.backbone.layer={layer}"
        )


#: Input normalisations that `SAE.encode` applies itself, token by token; any other one must
#: have been folded into the weights (`normalize_activations: none`).
RUNTIME_NORMALISATIONS = ("none", "layer_norm", "constant_norm_rescale")


def check_sae_loaded(sae: SAE, where: str) -> None:
    """Fail in one line unless the loaded SAE's input normalisation is folded in or run-time."""
    mode = getattr(sae.cfg, "normalize_activations", "none")
    if mode not in RUNTIME_NORMALISATIONS:
        raise ValueError(
            f"SAE {where} loaded with normalize_activations='{mode}' (not folded into its weights): "
            "fold it (sae.fold_activation_norm_scaling_factor) and save it, then use model.sae.path"
        )


def load_sae(release: str | None, sae_id: str | None, path: str | None, dtype: str) -> SAE:
    """Load the SAE (on CPU, in `dtype`) from a sae-lens folder or a pretrained release/id,
    checked with `check_sae_loaded`."""
    if path:
        sae = SAE.load_from_disk(path, device="cpu", dtype=dtype)
    else:
        sae = SAE.from_pretrained(release, sae_id, device="cpu", dtype=dtype)
    check_sae_loaded(sae, f"path={path}" if path else f"{release}/{sae_id}")
    return sae


class SaeLatentPooling(Module):
    """SAE encoder + max-log1p pooling: `token_embeddings` `[batch, tokens, d_in]` -> `sentence_embedding` `[batch, d_sae]`.

    Pools over `pooling_mask` when the backbone provides it (padding and BOS excluded), else over
    `attention_mask`.

    Args:
        sae: a sae-lens SAE (any residual-stream architecture), frozen here; only `sae.encode` is called.
        chunk_tokens: tokens encoded per step (memory ~ chunk_tokens x d_sae floats).
    """

    config_file_name = "sae_pooling.json"
    config_keys: ClassVar[list[str]] = ["chunk_tokens"]

    def __init__(self, sae: SAE, chunk_tokens: int = 1024) -> None:
        super().__init__()
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        self.sae = sae.requires_grad_(False)
        self.chunk_tokens = chunk_tokens

    def decoder_stays_on_host(self) -> bool:
        """True when `encode` never reads `W_dec` (all but TopK SAEs that rescale by its norm)."""
        return not getattr(self.sae.cfg, "rescale_acts_by_decoder_norm", False)

    def _apply(self, fn: Callable, recurse: bool = True) -> SaeLatentPooling:
        """Move / cast the encoder only: the unused decoder `W_dec` `[d_sae, d_in]` stays where it
        was loaded (host memory), so it never takes accelerator memory. Keeps sae-lens' cached
        `dtype`/`device` (used to cast inputs) in step with the moved weights."""
        decoder = self.sae._parameters.pop("W_dec") if self.decoder_stays_on_host() else None
        try:
            super()._apply(fn, recurse)
        finally:
            if decoder is not None:
                self.sae._parameters["W_dec"] = decoder
        weight = self.sae.W_enc
        self.sae.dtype, self.sae.device = weight.dtype, weight.device
        self.sae.cfg.dtype = str(weight.dtype).removeprefix("torch.")
        self.sae.cfg.device = str(weight.device)
        return self

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        """Add `sentence_embedding` `[batch, d_sae]` (float32, >= 0)."""
        hidden = features["token_embeddings"]
        mask = features.get("pooling_mask", features["attention_mask"].bool())
        features["sentence_embedding"] = max_log1p_pool(
            hidden, mask, self.sae.encode, self.sae.cfg.d_sae, self.chunk_tokens,
            params=self.sae.parameters(),
        )
        return features

    def get_embedding_dimension(self) -> int:
        """Number of SAE latents."""
        return self.sae.cfg.d_sae

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """Write the SAE in sae-lens' own format (`cfg.json`, `sae_weights.safetensors`) plus settings."""
        self.sae.save_model(output_path)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        model_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ) -> SaeLatentPooling:
        """Load a saved module; `model_kwargs={"dtype": ...}` overrides the saved SAE dtype."""
        settings, folder = saved_module_files(cls, model_name_or_path, subfolder, kwargs)
        dtype = (model_kwargs or {}).get("dtype")
        name = str(torch_dtype(dtype)).removeprefix("torch.") if dtype is not None else None
        sae = SAE.load_from_disk(folder, device="cpu", dtype=name)
        return cls(sae, **settings)
