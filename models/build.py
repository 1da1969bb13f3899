"""Model config (`cfg.model`, see conf/model/*.yaml) -> sentence-transformers SparseEncoder and mteb ModelMeta.

Kinds:
- `splare`: CausalLMBackbone (layers 0..l) -> SaeLatentPooling (frozen SAE encoder, max-log1p pooling).
- `splade_llm`: CausalLMBackbone (layers 0..l, final norm) -> VocabLogitsPooling (LM head, chunked).
- `splade_mlm`: a stock SparseEncoder (MLM transformer + SpladePooling), e.g. naver/splade-v3.

`checkpoint` (a saved SparseEncoder folder, e.g. a trained SPLARE) replaces building from parts;
`backbone.adapter` (a peft LoRA folder) is merged into the backbone in either case. The encoder is
returned uncapped: top-k pruning (`top_k.query` / `top_k.document`) belongs to the search layer.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping

import torch
from mteb.models.model_meta import ModelMeta
from sentence_transformers import SparseEncoder
from transformers import AutoConfig

from harness.offline import HubUnavailableError, hub_reachable, require_local_or_hub
from models.backbone import CausalLMBackbone, check_layer, torch_dtype
from models.sae_pooling import SaeLatentPooling, check_sae_fits, load_sae, read_sae_config
from models.vocab_head import load_with_lm_head

logger = logging.getLogger(__name__)

KINDS = ("splare", "splade_llm", "splade_mlm")
EMBEDDED = "embedded:"
META_ORG = "splare-harness"


def resolve_path(value: str | None) -> str | None:
    """A config path as a local path: `embedded:<name>` is prepared by `models.embedded.resolve`."""
    if not value:
        return None
    if str(value).startswith(EMBEDDED):
        from models import embedded

        return str(embedded.resolve(str(value)))
    return str(value)


def pick_device(name: str | None) -> str:
    """`auto` -> `cuda` when available, else `cpu`; other values are passed through."""
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def _tag(value: str) -> str:
    """Short, path-safe name of a hub id, `embedded:` asset or local folder."""
    return str(value).removeprefix(EMBEDDED).rstrip("/").split("/")[-1].replace(" ", "_")


def content_tag(path: str | None, head_bytes: int = 1 << 20) -> str:
    """`-<8 hex>` fingerprint of a local weights folder, so two trained checkpoints or adapters in
    same-named folders never share a model name (and cached encodings). Hashes each weight file's
    name, size and first MiB; empty for hub ids and missing paths."""
    if not path or not os.path.isdir(path):
        return ""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            if name.endswith((".safetensors", ".bin", ".pt")):
                file = os.path.join(root, name)
                digest.update(f"{os.path.relpath(file, path)}:{os.path.getsize(file)}".encode())
                with open(file, "rb") as f:
                    digest.update(f.read(head_bytes))
    return f"-{digest.hexdigest()[:8]}"


def _check_kind(model_cfg: Mapping) -> str:
    kind = model_cfg.get("kind")
    if kind not in KINDS:
        raise ValueError(
            f"model.kind '{kind}' has no SparseEncoder; valid here: {', '.join(KINDS)}"
        )
    return kind


def backbone_source(model_cfg: Mapping) -> str:
    """What to load the backbone from: `backbone.path` (resolved) when set, else the hub id.

    Raises HubUnavailableError (one line) for a hub id while the hub is unreachable.
    """
    backbone = model_cfg["backbone"]
    if not backbone.get("id") and not backbone.get("path"):
        raise ValueError("model.backbone needs an id or a path")
    return require_local_or_hub(
        backbone.get("id") or "", resolve_path(backbone.get("path")), "model.backbone.path", "model"
    )


def sae_choice(
    model_cfg: Mapping, require: bool = True
) -> tuple[str | None, str | None, str | None]:
    """The SAE to use as `(release, id, path)`, path unresolved; either the path or release/id is set.

    `sae.path` wins; otherwise `sae.release`/`sae.id` from the hub, or `sae.fallback` (a path)
    when the hub is unreachable. With `require`, a hub SAE while the hub is unreachable raises
    HubUnavailableError (one line); without it, the release/id is returned (for naming).
    """
    sae = model_cfg.get("sae") or {}
    if sae.get("path"):
        return None, None, sae["path"]
    release, sae_id = sae.get("release"), sae.get("id")
    if not release or not sae_id:
        raise ValueError("model.sae needs a path, or a release and an id")
    if hub_reachable():
        return release, sae_id, None
    if sae.get("fallback"):
        if require:
            logger.warning(
                "hub unreachable: SAE %s/%s replaced by model.sae.fallback=%s",
                release,
                sae_id,
                sae["fallback"],
            )
        return None, None, sae["fallback"]
    if require:
        raise HubUnavailableError(f"{release}/{sae_id}", "model.sae.path", "SAE")
    return release, sae_id, None


def _checkpoint_source(checkpoint: str) -> str:
    local = str(checkpoint).startswith(("/", ".", "~")) or os.path.exists(checkpoint)
    if local:
        return require_local_or_hub(checkpoint, os.path.expanduser(checkpoint), "model.checkpoint")
    return require_local_or_hub(checkpoint, None, "model.checkpoint", "checkpoint")


def load_encoder(
    path: str, device: str = "cpu", dtype: str | torch.dtype = "float32"
) -> SparseEncoder:
    """Load a saved SparseEncoder (ours or stock); our module classes need `trust_remote_code`."""
    return SparseEncoder(
        path, device=device, trust_remote_code=True, model_kwargs={"dtype": torch_dtype(dtype)}
    )


def _build_splare(model_cfg: Mapping, source: str) -> list[torch.nn.Module]:
    backbone = model_cfg["backbone"]
    layer = int(backbone["layer"])
    config = AutoConfig.from_pretrained(source)
    check_layer(config, layer, source)
    release, sae_id, raw_path = sae_choice(model_cfg)
    sae_path = resolve_path(raw_path)
    where = f"path={raw_path}" if raw_path else f"{release}/{sae_id}"
    check_sae_fits(read_sae_config(release, sae_id, sae_path), config.hidden_size, layer, where)
    body = CausalLMBackbone.from_pretrained(
        source,
        layer,
        dtype=backbone.get("dtype", "float32"),
        max_seq_length=int(backbone.get("max_length", 1024)),
        bidirectional=bool(backbone.get("bidirectional", True)),
    )
    sae = load_sae(release, sae_id, sae_path, dtype=backbone.get("dtype", "float32"))
    return [body, SaeLatentPooling(sae)]


def build_encoder(model_cfg: Mapping) -> SparseEncoder:
    """The uncapped SparseEncoder for `model_cfg` (a `cfg.model` mapping).

    All checks that need no weights (hub availability, SAE width and hook layer against the
    backbone) run before anything heavy is loaded.
    """
    kind = _check_kind(model_cfg)
    backbone = model_cfg["backbone"]
    device = pick_device(backbone.get("device"))
    dtype = backbone.get("dtype", "float32")
    torch_dtype(dtype)  # fails in one line on a bad dtype, before loading
    adapter = resolve_path(backbone.get("adapter"))
    if adapter and kind == "splade_mlm":
        raise ValueError(
            "model.backbone.adapter is only supported for decoder backbones, not splade_mlm"
        )
    if adapter and not os.path.isdir(adapter):
        raise FileNotFoundError(f"model.backbone.adapter={adapter}: no such folder")
    if model_cfg.get("checkpoint"):
        encoder = load_encoder(_checkpoint_source(model_cfg["checkpoint"]), device, dtype)
    elif kind == "splade_mlm":
        encoder = load_encoder(backbone_source(model_cfg), device, dtype)
    elif kind == "splare":
        encoder = SparseEncoder(
            modules=_build_splare(model_cfg, backbone_source(model_cfg)), device=device
        )
    else:
        body, head = load_with_lm_head(
            backbone_source(model_cfg),
            int(backbone["layer"]),
            dtype=dtype,
            max_seq_length=int(backbone.get("max_length", 1024)),
            bidirectional=bool(backbone.get("bidirectional", True)),
        )
        encoder = SparseEncoder(modules=[body, head], device=device)
    if adapter:
        encoder[0].apply_adapter(adapter)
        encoder.to(device)
    if backbone.get("max_length"):
        encoder.max_seq_length = int(backbone["max_length"])
    return encoder


def variant_name(model_cfg: Mapping, with_top_k: bool = True) -> str:
    """Unique model name: backbone, layer, attention, head (SAE or LM head), max length, adapter, top-k."""
    kind = _check_kind(model_cfg)
    backbone = model_cfg["backbone"]
    parts = [kind, _tag(backbone.get("path") or backbone.get("id") or "")]
    if kind != "splade_mlm":
        parts.append(f"L{backbone['layer']}")
        parts.append("bi" if backbone.get("bidirectional", True) else "causal")
    if kind == "splare":
        release, sae_id, path = sae_choice(model_cfg, require=False)
        parts.append(_tag(path) if path else f"{release}.{sae_id}")
    elif kind == "splade_llm":
        parts.append("lmhead")
    parts.append(f"len{backbone.get('max_length')}")
    if model_cfg.get("checkpoint"):
        ckpt = model_cfg["checkpoint"]
        parts.append(f"ckpt-{_tag(ckpt)}{content_tag(resolve_path(ckpt))}")
    if backbone.get("adapter"):
        adapter = backbone["adapter"]
        parts.append(f"lora-{_tag(adapter)}{content_tag(resolve_path(adapter))}")
    if with_top_k:
        top_k = model_cfg.get("top_k") or {}
        parts.append(f"q{top_k.get('query') or 'all'}-d{top_k.get('document') or 'all'}")
    return f"{META_ORG}/" + "-".join(str(p) for p in parts)


def model_meta(model_cfg: Mapping) -> ModelMeta:
    """mteb ModelMeta of the variant (no weights loaded): unique name, `model_type=["sparse"]`."""
    backbone = model_cfg["backbone"]
    backbone_id = backbone.get("id")
    return ModelMeta(
        loader=None,
        name=variant_name(model_cfg),
        revision=None,
        release_date=None,
        languages=None,
        n_parameters=None,
        memory_usage_mb=None,
        max_tokens=backbone.get("max_length"),
        embed_dim=None,
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["Sentence Transformers", "PyTorch"],
        reference=f"https://huggingface.co/{backbone_id}" if backbone_id else None,
        similarity_fn_name="dot",
        use_instructions=False,
        training_datasets=None,
        adapted_from=backbone_id,
        model_type=["sparse"],
    )
