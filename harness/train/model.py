"""The trainable encoder: `models.build_encoder` + a peft LoRA on the backbone, everything else frozen.

Only the LoRA matrices train: the backbone's base weights, the SAE (SPLARE) and the LM head /
embeddings (vocabulary head) stay frozen. The LoRA is fresh, or continues an existing adapter
(`train.init_adapter`, e.g. the MNTP stage's). The adapter is saved with peft's `save_pretrained`
and loads back through `model.backbone.adapter=<folder>` (`CausalLMBackbone.apply_adapter`).
Every adapter folder written here also holds `adapter_origin.json`: the backbone it was trained
on, the read-out layer (null for a full-model stage such as MNTP) and the attention, checked
before reuse.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from sentence_transformers import SparseEncoder

import models
from models.backbone import CausalLMBackbone

ORIGIN_FILE = "adapter_origin.json"

TRAINABLE_KINDS = ("splare", "splade_llm")


def check_trainable(model_cfg: Mapping) -> None:
    """Fail in one line unless `model_cfg` is a decoder SPLARE / SPLADE-LLM config without an adapter."""
    kind = model_cfg.get("kind")
    if kind not in TRAINABLE_KINDS:
        raise ValueError(f"model.kind '{kind}' cannot be trained here; trainable kinds: {', '.join(TRAINABLE_KINDS)}")
    if (model_cfg.get("backbone") or {}).get("adapter"):
        raise ValueError(
            "training starts from the base backbone: unset model.backbone.adapter "
            f"(got {model_cfg['backbone']['adapter']}; it would be merged and then lost on reload); "
            "continue an adapter with train.init_adapter"
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


def same_backbone(a: str, b: str) -> bool:
    """Whether two backbone sources (hub ids or local folders) name the same weights."""
    if os.path.isdir(a) and os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b


def origin(source: str, layer: int | None, stage: str, attention: str) -> dict[str, Any]:
    """What `adapter_origin.json` records: backbone source, read-out layer (None: any), stage,
    attention (`causal` / `bidirectional`)."""
    return {"backbone": source, "layer": layer, "stage": stage, "attention": attention}


def check_init_adapter(folder: str, source: str, layer: int, attention: str) -> dict[str, Any]:
    """The origin record of adapter `folder`; one-line ValueError unless it is a peft adapter
    trained on backbone `source` for read-out layer `layer` (or for the full model), with the
    attention (`causal` / `bidirectional`) this model trains with. No weights load."""
    path = Path(folder).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ValueError(f"train.init_adapter={folder}: not a peft adapter folder (no adapter_config.json)")
    record_path = path / ORIGIN_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
    else:
        base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        record = {"backbone": str(base.get("base_model_name_or_path") or ""), "layer": None}
    if not same_backbone(str(record["backbone"]), source):
        raise ValueError(
            f"train.init_adapter={folder} was trained on backbone '{record['backbone']}', "
            f"not on this model's '{source}'"
        )
    if record.get("layer") is not None and record["layer"] != layer:
        raise ValueError(
            f"train.init_adapter={folder} was trained for read-out layer {record['layer']}, "
            f"but model.backbone.layer={layer}"
        )
    if record.get("attention") not in (None, attention):
        raise ValueError(
            f"train.init_adapter={folder} was trained with {record['attention']} attention, but this "
            f"model trains with {attention} attention (set model.backbone.bidirectional)"
        )
    return record


def continue_lora(encoder: SparseEncoder, folder: str) -> PeftModel:
    """Freeze `encoder` and load adapter `folder` onto its backbone as the trainable LoRA.

    Adapters saved from a `*ForCausalLM` (MNTP: keys `model.layers...`) or from the base model
    load alike; weights of layers above the read-out layer are not used.
    """
    encoder.requires_grad_(False)
    backbone = backbone_of(encoder)
    backbone.model = PeftModel.from_pretrained(
        backbone.model, folder, is_trainable=True, key_mapping={r"^model\.": ""}
    )
    return backbone.model


def trainable_encoder(
    model_cfg: Mapping, config: LoraConfig, max_length: int, init_adapter: str | None = None
) -> SparseEncoder:
    """`models.build_encoder(model_cfg)` with a LoRA on the backbone (fresh with `config`, or
    continuing `init_adapter`), truncating at `max_length` tokens."""
    check_trainable(model_cfg)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"train.max_length must be an integer >= 2, got {max_length!r}")
    encoder = models.build_encoder(model_cfg, training=True)
    if init_adapter:
        continue_lora(encoder, init_adapter)
    else:
        add_lora(encoder, config)
    encoder.max_seq_length = max_length
    return encoder


def save_adapter(encoder: SparseEncoder, folder: str, record: Mapping[str, Any] | None = None) -> None:
    """Write the backbone's LoRA (`adapter_config.json`, `adapter_model.safetensors`) to `folder`,
    with its origin `record` (`origin(...)`) as `adapter_origin.json` when given."""
    model = backbone_of(encoder).model
    if not isinstance(model, PeftModel):
        raise TypeError("the encoder's backbone carries no LoRA adapter to save")
    model.save_pretrained(folder)
    if record is not None:
        (Path(folder) / ORIGIN_FILE).write_text(json.dumps(dict(record), indent=2), encoding="utf-8")


def count_parameters(encoder: SparseEncoder) -> tuple[int, int]:
    """(trainable, total) parameter counts (`parameters()` yields a tied weight once)."""
    params = list(encoder.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
