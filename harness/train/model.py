"""The trainable encoder: `models.build_encoder` + a peft LoRA on the backbone, everything else frozen.

Only the LoRA matrices train: the backbone's base weights, the SAE (SPLARE) and the LM head /
embeddings (vocabulary head) stay frozen. The adapter is saved with peft's `save_pretrained` and
loads back through `model.backbone.adapter=<folder>` (`CausalLMBackbone.apply_adapter`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from peft import LoraConfig, PeftModel, get_peft_model
from sentence_transformers import SparseEncoder

import models
from models.backbone import CausalLMBackbone

TRAINABLE_KINDS = ("splare", "splade_llm")


def check_trainable(model_cfg: Mapping) -> None:
    """Fail in one line unless `model_cfg` is a decoder SPLARE / SPLADE-LLM config without an adapter."""
    kind = model_cfg.get("kind")
    if kind not in TRAINABLE_KINDS:
        raise ValueError(f"model.kind '{kind}' cannot be trained here; trainable kinds: {', '.join(TRAINABLE_KINDS)}")
    if (model_cfg.get("backbone") or {}).get("adapter"):
        raise ValueError(
            "training starts from the base backbone: unset model.backbone.adapter "
            f"(got {model_cfg['backbone']['adapter']}); it would be merged and then lost on reload"
        )


def lora_config(r: int, alpha: float, dropout: float, targets: Sequence[str]) -> LoraConfig:
    """peft LoRA settings for the backbone's linear layers named in `targets` (e.g. `q_proj`)."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"train.lora.r must be a positive integer, got {r!r}")
    if not targets:
        raise ValueError("train.lora.targets must name at least one module (e.g. [q_proj, v_proj])")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")


def backbone_of(encoder: SparseEncoder) -> CausalLMBackbone:
    """The encoder's first module, which must be a decoder backbone."""
    backbone = encoder[0]
    if not isinstance(backbone, CausalLMBackbone):
        raise TypeError(f"LoRA training needs a CausalLMBackbone first module, got {type(backbone).__name__}")
    return backbone


def add_lora(encoder: SparseEncoder, config: LoraConfig) -> PeftModel:
    """Freeze `encoder` and wrap its backbone model in a fresh LoRA (the only trainable weights)."""
    encoder.requires_grad_(False)
    backbone = backbone_of(encoder)
    backbone.model = get_peft_model(backbone.model, config)
    return backbone.model


def trainable_encoder(model_cfg: Mapping, config: LoraConfig, max_length: int) -> SparseEncoder:
    """`models.build_encoder(model_cfg)` with a LoRA on the backbone, truncating at `max_length` tokens."""
    check_trainable(model_cfg)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"train.max_length must be an integer >= 2, got {max_length!r}")
    encoder = models.build_encoder(model_cfg, training=True)
    add_lora(encoder, config)
    encoder.max_seq_length = max_length
    return encoder


def save_adapter(encoder: SparseEncoder, folder: str) -> None:
    """Write the backbone's LoRA (`adapter_config.json`, `adapter_model.safetensors`) to `folder`."""
    model = backbone_of(encoder).model
    if not isinstance(model, PeftModel):
        raise TypeError("the encoder's backbone carries no LoRA adapter to save")
    model.save_pretrained(folder)


def count_parameters(encoder: SparseEncoder) -> tuple[int, int]:
    """(trainable, total) parameter counts (`parameters()` yields a tied weight once)."""
    params = list(encoder.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
