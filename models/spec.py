"""The model config (`cfg.model`, conf/model/*.yaml) parsed once into a typed, validated spec.

`ModelSpec.from_config(cfg.model)` checks every field in one line each, before anything heavy
loads. Everything else reads the spec: the builder (`models.build`), the variant name and record,
the revision and the encoding-cache key (`models.meta`), the runner, the trainer and the reports.

Model kinds live in one registry, `KINDS`:
- `splare`: decoder LM cut after layer l -> frozen SAE encoder -> max-log1p pooling (latents);
- `splade_llm`: decoder LM (final norm) -> its LM head -> max-log1p pooling (vocabulary);
- `splade_mlm`: a stock sentence-transformers SparseEncoder, e.g. naver/splade-v3 (MLM +
  SpladePooling) or the inference-free OpenSearch neural-sparse doc-v2/v3 (a Router whose query
  side is an IDF lookup);
- `bm25`: mteb's bm25s baseline (no encoder).

Attention (`backbone.bidirectional`): `auto` (the default) is bidirectional exactly when trained
weights are given (an adapter or a checkpoint) or when the spec is parsed for training; a
zero-shot model runs causal, as its SAE was trained on causal activations. An explicit `true`
without trained weights runs, with a one-line warning, and keeps `bi` in the name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

EMBEDDED = "embedded:"
DTYPES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
BIDIRECTIONAL = ("auto", True, False)


@dataclass(frozen=True)
class Kind:
    """One model kind: what its vectors' dimensions are and how it is built."""

    name: str
    head: str  # "sae" | "lm_head" | "mlm" | "bm25"
    decoder: bool  # a decoder LM cut after `backbone.layer`
    encoder: bool  # a SparseEncoder built by `models.build` (False: mteb's own model)
    trainable: bool  # LoRA training of the backbone is supported
    space: str  # "latent" | "vocabulary" | "lexical"


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("splare", "sae", decoder=True, encoder=True, trainable=True, space="latent"),
        Kind("splade_llm", "lm_head", decoder=True, encoder=True, trainable=True, space="vocabulary"),
        Kind("splade_mlm", "mlm", decoder=False, encoder=True, trainable=False, space="vocabulary"),
        Kind("bm25", "bm25", decoder=False, encoder=False, trainable=False, space="lexical"),
    )
}


def check_int(label: str, value: Any, minimum: int = 0, allow_none: bool = False) -> int | None:
    """`value` when it is an integer >= `minimum` (or None when allowed); else one-line ValueError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or null" if allow_none else ""
        raise ValueError(f"{label} must be an integer >= {minimum}{none}, got {value!r}")
    return value


def check_kind(name: Any) -> Kind:
    """The registered kind `name`; one-line error listing the valid kinds otherwise."""
    if name not in KINDS:
        raise ValueError(f"model.kind '{name}' unknown; valid: {', '.join(KINDS)}")
    return KINDS[name]


def tag(value: str) -> str:
    """Short, path-safe name of a hub id, `embedded:` asset or local folder."""
    return str(value).removeprefix(EMBEDDED).rstrip("/").split("/")[-1].replace(" ", "_")


def _text(label: str, value: Any, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{label} must be a non-empty string{' or null' if allow_none else ''}, "
                         f"got {value!r}")
    return value


@dataclass(frozen=True)
class BackboneSpec:
    """The transformer: hub id (+ revision) or local path, read-out layer, numerics, attention.

    `attention` is resolved: "causal" or "bidirectional" for decoders, None for MLM encoders.
    `bidirectional` keeps the config's setting (`auto` / true / false) for the record.
    """

    id: str | None
    revision: str | None
    path: str | None
    layer: int | None
    dtype: str
    device: str
    max_length: int
    bidirectional: str | bool | None
    attention: str | None
    attn_implementation: str | None
    adapter: str | None

    @property
    def source_label(self) -> str:
        """What the name shows: the local folder's name, else the hub id's."""
        return tag(self.path or self.id or "")


@dataclass(frozen=True)
class SaeSpec:
    """The SAE: a local sae-lens folder (`path`), or a sae-lens release/id with an offline fallback."""

    release: str | None
    id: str | None
    path: str | None
    fallback: str | None

    def label(self) -> str:
        """`release.id` for a hub SAE, else the folder's name."""
        label = tag(self.path) if self.path else f"{self.release}.{self.id}"
        return label.replace("/", "_")


@dataclass(frozen=True)
class ModelMetaFacts:
    """Facts about the weights that mteb's ModelMeta records where the config knows them."""

    languages: tuple[str, ...] | None = None
    license: str | None = None
    release_date: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model variant, validated. Build with `ModelSpec.from_config(cfg.model)`."""

    name: str
    kind: Kind
    backbone: BackboneSpec | None
    sae: SaeSpec | None
    top_k_query: int
    top_k_document: int
    chunk_tokens: int | None
    tau: float | None
    checkpoint: str | None
    facts: ModelMetaFacts = field(default_factory=ModelMetaFacts)

    @property
    def trained(self) -> bool:
        """Trained weights are given (an adapter or a checkpoint): not a zero-shot backbone."""
        return bool(self.checkpoint or (self.backbone and self.backbone.adapter))

    @classmethod
    def from_config(cls, cfg: Mapping, training: bool = False) -> ModelSpec:
        """Parse and validate a `cfg.model` mapping (a DictConfig or dict). One line per error.

        `training`: the spec of a model about to be trained (`bidirectional: auto` then means
        bidirectional, the attention the trained weights will be used with).
        """
        kind = check_kind(cfg.get("kind"))
        name = _text("model.name", cfg.get("name"), allow_none=False)
        top_k = cfg.get("top_k") or {}
        k_query = check_int("model.top_k.query", top_k.get("query", 0))
        k_document = check_int("model.top_k.document", top_k.get("document", 0))
        meta = cfg.get("meta") or {}
        languages = meta.get("languages")
        facts = ModelMetaFacts(
            languages=tuple(languages) if languages else None,
            license=_text("model.meta.license", meta.get("license")),
            release_date=_text("model.meta.release_date", meta.get("release_date")),
            reference=_text("model.meta.reference", meta.get("reference")),
        )
        if not kind.encoder:
            return cls(name, kind, None, None, 0, 0, None, None, None, facts)
        checkpoint = _text("model.checkpoint", cfg.get("checkpoint"))
        head = cfg.get("head") or {}
        chunk = check_int("model.head.chunk_tokens", head.get("chunk_tokens"), 1, allow_none=True)
        tau = cfg.get("tau")
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, int | float) or
                                not tau > 0):
            raise ValueError(f"model.tau must be a number > 0, got {tau!r}")
        backbone = _backbone(cfg.get("backbone") or {}, kind, bool(checkpoint), training)
        sae = _sae(cfg.get("sae"), kind, bool(checkpoint))
        return cls(
            name, kind, backbone, sae, k_query, k_document, chunk,
            float(tau) if tau is not None else None, checkpoint, facts,
        )

    def variant_name(self, with_top_k: bool = True, sae_label: str | None = None) -> str:
        """Human-readable unique name: kind, backbone, layer, attention, head, dtype, length,
        trained weights, top-k. Content hashes live in the revision, not here.

        `sae_label` replaces the configured SAE's label (the fallback that loads offline)."""
        parts: list[Any] = [self.kind.name]
        if self.backbone is not None:
            b = self.backbone
            parts.append(b.source_label)
            if self.kind.decoder:
                parts += [f"L{b.layer}", "bi" if b.attention == "bidirectional" else "causal"]
            if self.sae is not None:
                parts.append(sae_label or self.sae.label())
            elif self.kind.head == "lm_head":
                parts.append("lmhead")
            if b.dtype != "float32":
                parts.append({"bfloat16": "bf16", "float16": "fp16"}[b.dtype])
            parts.append(f"len{b.max_length}")
            if self.checkpoint:
                parts.append(f"ckpt-{tag(self.checkpoint)}")
            if b.adapter:
                parts.append(f"lora-{tag(b.adapter)}")
        if with_top_k and self.kind.encoder:
            parts.append(f"q{self.top_k_query or 'all'}-d{self.top_k_document or 'all'}")
        return "-".join(str(p) for p in parts)

    def record(self) -> dict[str, Any]:
        """The variant's fields, machine-readable (the runner writes them as `variant.json`)."""
        b = self.backbone
        return {
            "config": self.name,
            "kind": self.kind.name,
            "space": self.kind.space,
            "head": self.kind.head,
            "backbone": (b.id or b.path) if b else None,
            "backbone_id": b.id if b else None,
            "backbone_revision": b.revision if b else None,
            "backbone_path": b.path if b else None,
            "layer": b.layer if b else None,
            "dtype": b.dtype if b else None,
            "attention": b.attention if b else None,
            "bidirectional_setting": b.bidirectional if b else None,
            "attn_implementation": b.attn_implementation if b else None,
            "max_length": b.max_length if b else None,
            "sae": asdict(self.sae) if self.sae else None,
            "top_k": {"query": self.top_k_query, "document": self.top_k_document},
            "chunk_tokens": self.chunk_tokens,
            "tau": self.tau,
            "adapter": b.adapter if b else None,
            "checkpoint": self.checkpoint,
            "trained": self.trained,
        }


def _backbone(cfg: Mapping, kind: Kind, has_checkpoint: bool, training: bool) -> BackboneSpec:
    hub_id = _text("model.backbone.id", cfg.get("id"))
    path = _text("model.backbone.path", cfg.get("path"))
    if not hub_id and not path and not has_checkpoint:
        raise ValueError("model.backbone needs an id or a path (or model.checkpoint)")
    dtype = cfg.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"model.backbone.dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    max_length = check_int("model.backbone.max_length", cfg.get("max_length", 512), 1)
    device = str(cfg.get("device") or "auto")
    adapter = _text("model.backbone.adapter", cfg.get("adapter"))
    if adapter and not kind.decoder:
        raise ValueError(f"model.backbone.adapter is only supported for decoder backbones, "
                         f"not {kind.name}")
    implementation = cfg.get("attn_implementation")
    if implementation is not None and implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"model.backbone.attn_implementation must be one of "
                         f"{', '.join(ATTN_IMPLEMENTATIONS)} or null, got '{implementation}'")
    setting = cfg.get("bidirectional", "auto")
    layer = None
    attention = None
    if kind.decoder:
        layer = check_int("model.backbone.layer", cfg.get("layer"), 0)
        if setting not in BIDIRECTIONAL:
            raise ValueError(f"model.backbone.bidirectional must be auto, true or false, "
                             f"got {setting!r}")
        trained = bool(adapter) or has_checkpoint
        if setting == "auto":
            attention = "bidirectional" if (trained or training) else "causal"
        else:
            attention = "bidirectional" if setting else "causal"
            if setting is True and not (trained or training):
                logger.warning(
                    "model.backbone.bidirectional=true with no adapter or checkpoint: the "
                    "untrained backbone and its SAE saw causal attention only"
                )
    return BackboneSpec(
        id=hub_id, revision=_text("model.backbone.revision", cfg.get("revision")), path=path,
        layer=layer, dtype=dtype, device=device, max_length=max_length, bidirectional=setting,
        attention=attention, attn_implementation=implementation, adapter=adapter,
    )


def _sae(cfg: Mapping | None, kind: Kind, has_checkpoint: bool) -> SaeSpec | None:
    """The SAE of a splare spec (a checkpoint carries its own, so none is needed then)."""
    if kind.head != "sae" or (has_checkpoint and not cfg):
        if cfg and kind.head != "sae":
            raise ValueError(f"model.sae is only for splare models, not {kind.name}; set it to null")
        return None
    cfg = cfg or {}
    spec = SaeSpec(
        release=_text("model.sae.release", cfg.get("release")),
        id=_text("model.sae.id", cfg.get("id")),
        path=_text("model.sae.path", cfg.get("path")),
        fallback=_text("model.sae.fallback", cfg.get("fallback")),
    )
    if not spec.path and not (spec.release and spec.id):
        raise ValueError("model.sae needs a path, or a release and an id")
    return spec


def is_local(value: str | None) -> bool:
    """A config value that names a local file or folder (not a hub id)."""
    if not value:
        return False
    text = str(value)
    return text.startswith((EMBEDDED, "/", ".", "~")) or os.path.exists(text)
