"""A `ModelSpec` -> where its parts load from -> the uncapped sentence-transformers SparseEncoder.

- `resolve(spec)`: the concrete sources (local folders, hub ids) of the backbone, SAE, adapter
  and checkpoint, with every hub check (unreachable, gated, 401/403) done before any weights load.
- `build_encoder(cfg.model | spec)`: assembles the encoder from the resolved parts:
  `splare` = CausalLMBackbone (layers 0..l) -> SaeLatentPooling; `splade_llm` = CausalLMBackbone
  (final norm) -> VocabLogitsPooling; `splade_mlm` = a stock SparseEncoder. `checkpoint` (a saved
  SparseEncoder) replaces building from parts; `backbone.adapter` (a peft LoRA) is merged.

The encoder is returned uncapped: top-k pruning belongs to the search layer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from sentence_transformers import SparseEncoder
from transformers import AutoConfig

from models.attention import check_attention
from models.backbone import CausalLMBackbone, check_layer, torch_dtype
from models.hub import HubUnavailableError, hub_reachable, require_local_or_hub
from models.sae_pooling import SaeLatentPooling, check_sae_fits, load_sae, read_sae_config
from models.spec import EMBEDDED, ModelSpec, is_local
from models.vocab_head import load_with_lm_head

logger = logging.getLogger(__name__)


def resolve_path(value: str | None) -> str | None:
    """A config path as a local path: `embedded:<name>` is prepared by `models.embedded.resolve`."""
    if not value:
        return None
    if str(value).startswith(EMBEDDED):
        from models import embedded

        return str(embedded.resolve(str(value)))
    return os.path.expanduser(str(value))


def pick_device(name: str | None) -> str:
    """`auto` -> `cuda` when available, else `cpu`; other values are checked and passed through."""
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ValueError(f"model.backbone.device '{name}' is not a torch device") from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(f"model.backbone.device '{name}' does not exist on this machine "
                         f"({torch.cuda.device_count()} CUDA device(s))")
    return str(device)


@dataclass(frozen=True)
class Resolved:
    """Concrete sources of a spec's parts: local paths (resolved) or hub ids.

    `sae_release`/`sae_id` are set for a hub SAE, `sae_path` for a local one (a configured path,
    or the fallback when the hub is unreachable).
    """

    backbone: str | None
    sae_release: str | None
    sae_id: str | None
    sae_path: str | None
    sae_label: str | None
    adapter: str | None
    checkpoint: str | None


def sae_choice(spec: ModelSpec, require: bool = True) -> tuple[str | None, str | None, str | None]:
    """The SAE as `(release, id, path)`, path unresolved.

    `sae.path` wins; otherwise the hub release/id, or `sae.fallback` (a path) when the hub is
    unreachable. With `require`, a hub SAE while offline raises HubUnavailableError (one line);
    without it the release/id is returned (for naming).
    """
    sae = spec.sae
    if sae is None:
        return None, None, None
    if sae.path:
        return None, None, sae.path
    if hub_reachable():
        return sae.release, sae.id, None
    if sae.fallback:
        if require:
            logger.warning("hub unreachable: SAE %s/%s replaced by model.sae.fallback=%s",
                           sae.release, sae.id, sae.fallback)
        return None, None, sae.fallback
    if require:
        raise HubUnavailableError(f"{sae.release}/{sae.id}", "model.sae.path", "SAE")
    return sae.release, sae.id, None


def resolve(spec: ModelSpec) -> Resolved:
    """Where each part loads from; fails in one line (missing folder, offline id, gated repo)."""
    if spec.backbone is None:
        raise ValueError(f"model.kind '{spec.kind.name}' has no SparseEncoder to build")
    b = spec.backbone
    checkpoint = None
    if spec.checkpoint:
        local = resolve_path(spec.checkpoint) if is_local(spec.checkpoint) else None
        checkpoint = require_local_or_hub(spec.checkpoint, local, "model.checkpoint", "checkpoint")
    adapter = resolve_path(b.adapter)
    if adapter and not os.path.isdir(adapter):
        raise FileNotFoundError(f"model.backbone.adapter={b.adapter}: no such folder")
    backbone = None
    if not checkpoint:
        backbone = require_local_or_hub(
            b.id or "", resolve_path(b.path), "model.backbone.path", "model"
        )
    release, sae_id, raw_path = sae_choice(spec) if not checkpoint else (None, None, None)
    label = None
    if spec.sae is not None:
        label = f"path={raw_path}" if raw_path else f"{release}/{sae_id}"
    return Resolved(backbone, release, sae_id, resolve_path(raw_path), label, adapter, checkpoint)


def as_spec(model: Mapping | ModelSpec, training: bool = False) -> ModelSpec:
    """A ModelSpec from a spec or a `cfg.model` mapping."""
    return model if isinstance(model, ModelSpec) else ModelSpec.from_config(model, training)


def load_encoder(
    path: str, device: str = "cpu", dtype: str | torch.dtype = "float32",
    revision: str | None = None,
) -> SparseEncoder:
    """Load a saved SparseEncoder (ours or stock; a folder or a hub id at `revision`); our module
    classes need `trust_remote_code`."""
    return SparseEncoder(
        path, device=device, trust_remote_code=True, revision=revision,
        model_kwargs={"dtype": torch_dtype(dtype)},
    )


def check_parts(spec: ModelSpec, parts: Resolved) -> None:
    """Checks that need configs but no weights: the family and attention implementation for the
    attention mode, layer range, SAE width and hook layer."""
    if parts.checkpoint or not spec.kind.decoder:
        return
    b = spec.backbone
    config = AutoConfig.from_pretrained(parts.backbone, revision=b.revision)
    check_attention(config, b.attention == "bidirectional", b.attn_implementation)
    check_layer(config, b.layer, parts.backbone)
    if spec.sae is not None:
        sae_cfg = read_sae_config(parts.sae_release, parts.sae_id, parts.sae_path)
        check_sae_fits(sae_cfg, config.hidden_size, spec.backbone.layer, parts.sae_label)


def build_encoder(model: Mapping | ModelSpec, training: bool = False) -> SparseEncoder:
    """The uncapped SparseEncoder of a model config or spec.

    All checks that need no weights (hub availability and access, SAE width and hook layer
    against the backbone) run before anything heavy is loaded. `training`: see
    `ModelSpec.from_config`.
    """
    spec = as_spec(model, training)
    parts = resolve(spec)
    b = spec.backbone
    device = pick_device(b.device)
    check_parts(spec, parts)
    bidirectional = b.attention == "bidirectional"
    if parts.checkpoint:
        encoder = load_encoder(parts.checkpoint, device, b.dtype)
    elif spec.kind.head == "mlm":
        encoder = load_encoder(parts.backbone, device, b.dtype, b.revision)
    elif spec.kind.head == "sae":
        body = CausalLMBackbone.from_pretrained(
            parts.backbone, b.layer, dtype=b.dtype, max_seq_length=b.max_length,
            bidirectional=bidirectional, attn_implementation=b.attn_implementation, device=device,
            revision=b.revision,
        )
        sae = load_sae(parts.sae_release, parts.sae_id, parts.sae_path, dtype=b.dtype)
        pooling = SaeLatentPooling(sae, **_chunk(spec))
        encoder = SparseEncoder(modules=[body, pooling], device=device)
    else:
        body, head = load_with_lm_head(
            parts.backbone, b.layer, dtype=b.dtype, max_seq_length=b.max_length,
            bidirectional=bidirectional, attn_implementation=b.attn_implementation,
            device=device, revision=b.revision, **_chunk(spec),
        )
        encoder = SparseEncoder(modules=[body, head], device=device)
    if parts.adapter:
        encoder[0].apply_adapter(parts.adapter)
        encoder.to(device)
    encoder.max_seq_length = b.max_length
    return encoder


def _chunk(spec: ModelSpec) -> dict[str, int]:
    return {"chunk_tokens": spec.chunk_tokens} if spec.chunk_tokens else {}
