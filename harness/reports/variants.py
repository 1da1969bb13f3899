"""What a measured model is: head, backbone, layer, SAE width and top-k, and its paper counterpart.

Fields come from the run's composed config (`config.yaml` beside the results) when present, then
from `model_meta.json` (`embed_dim` is the SAE width of a latent head), then from tokens of the
model name (`…-l9-sae16k-topk40-400`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HEADS = {"splare": "latent", "splade_llm": "vocabulary", "splade_mlm": "vocabulary", "bm25": "bm25"}
_LAYER = re.compile(r"(?:^|[-_/])(?:l|layer)(\d+)(?=$|[-_/])", re.IGNORECASE)
_WIDTH = re.compile(r"(?:^|[-_/])(?:sae|width_?|w)(\d+)([km]?)(?=$|[-_/])", re.IGNORECASE)
_TOPK = re.compile(r"(?:^|[-_/])(?:topk[-_]?(\d+)[-_/](\d+)|q(\d+|all)-d(\d+|all))(?=$|[-_/])", re.IGNORECASE)
_NOCAP = re.compile(r"(?:^|[-_/])(?:topk[-_]?(?:none|0[-_/]0)|nocap|uncapped)(?=$|[-_/])", re.IGNORECASE)
_SAE_WIDTH = re.compile(r"width_(\d+)([km])", re.IGNORECASE)


@dataclass(frozen=True)
class Variant:
    """The axes a report compares. top-k 0 means "no cap"; None means unknown."""

    name: str
    head: str | None = None          # latent | vocabulary | bm25
    backbone: str | None = None
    layer: int | None = None
    width: int | None = None         # SAE latents (latent head only)
    top_k_query: int | None = None
    top_k_document: int | None = None
    trained: bool | None = None      # adapter or checkpoint configured
    stem: str = ""                   # the name without layer / width / top-k tokens
    caveats: tuple[str, ...] = field(default=())

    def family(self, *vary: str) -> tuple:
        """Identity of the variant with the axes in `vary` left out (curves group by this)."""
        keys = ("head", "backbone", "layer", "width", "top_k_query", "top_k_document", "trained", "stem")
        return tuple(getattr(self, k) for k in keys if k not in vary)


def _scale(number: str, unit: str) -> int:
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def _get(cfg: Mapping[str, Any] | None, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _name_fields(name: str) -> dict[str, Any]:
    tail = name.rsplit("/", 1)[-1]
    fields: dict[str, Any] = {}
    if m := _LAYER.search(tail):
        fields["layer"] = int(m.group(1))
    if m := _WIDTH.search(tail):
        fields["width"] = _scale(m.group(1), m.group(2))
    if m := _TOPK.search(tail):
        q, d = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        fields["top_k_query"], fields["top_k_document"] = (0 if k == "all" else int(k) for k in (q, d))
    elif _NOCAP.search(tail):
        fields["top_k_query"] = fields["top_k_document"] = 0
    low = tail.lower()
    fields["head"] = ("bm25" if "bm25" in low else "latent" if "splare" in low or "sae" in low
                      else "vocabulary" if "splade" in low else None)
    stem = tail
    for pattern in (_LAYER, _WIDTH, _TOPK, _NOCAP):
        stem = pattern.sub("", stem)
    fields["stem"] = stem
    return fields


def _sae_width(sae_id: str | None) -> int | None:
    """Width from a Gemma-Scope style SAE id (`layer_12/width_16k/...`); None otherwise."""
    if not sae_id:
        return None
    m = _SAE_WIDTH.search(sae_id)
    return _scale(m.group(1), m.group(2)) if m else None


def parse_variant(name: str, config: Mapping[str, Any] | None = None,
                  meta: Mapping[str, Any] | None = None) -> Variant:
    """The Variant of model `name` from its composed config, model meta and name (in that order)."""
    fields = _name_fields(name)
    kind = _get(config, "model.kind")
    if kind in HEADS:
        fields["head"] = HEADS[kind]
    backbone = _get(config, "model.backbone.id") or (meta or {}).get("adapted_from")
    layer = _get(config, "model.backbone.layer")
    if isinstance(layer, int) and fields.get("head") == "latent":
        fields["layer"] = layer
    embed = (meta or {}).get("embed_dim")
    if fields.get("head") == "latent" and isinstance(embed, int):
        fields["width"] = embed
    elif fields.get("head") == "latent" and (w := _sae_width(_get(config, "model.sae.id"))):
        fields["width"] = w
    for side in ("query", "document"):
        k = _get(config, f"model.top_k.{side}")
        if isinstance(k, int) and not isinstance(k, bool):
            fields[f"top_k_{side}"] = k
    trained = None
    caveats: list[str] = []
    if kind == "splade_mlm":
        trained = True  # an MLM SPLADE checkpoint (e.g. naver/splade-v3) is a trained retriever
    elif config is not None and fields.get("head") in ("latent", "vocabulary"):
        trained = bool(_get(config, "model.checkpoint") or _get(config, "model.backbone.adapter"))
        if not trained:
            caveats.append("zero-shot (no adapter or checkpoint)")
    sliced = _get(config, "benchmark.slice_queries")
    if sliced:
        caveats.append(f"queries sliced to {sliced} per subset/split")
    if fields.get("head") != "latent":
        fields.pop("width", None)
    return Variant(name=name, backbone=backbone, trained=trained, caveats=tuple(caveats), **fields)


def top_k_label(variant: Variant) -> str:
    """"40/400", "no cap" or "?" for the variant's query/document top-k."""
    q, d = variant.top_k_query, variant.top_k_document
    if q is None or d is None:
        return "?"
    return "no cap" if q == 0 and d == 0 else f"{q}/{d}"


def paper_family(variant: Variant) -> str | None:
    """The paper model this variant reproduces (SPLARE-7B, SPLARE-2B, SPLADE-Llama, BM25, SPLADE-v3)."""
    text = f"{variant.backbone or ''} {variant.name}".lower().replace("_", "-")
    llama8b = bool(re.search(r"llama-?3\.?1-?8b", text))
    if variant.head == "bm25":
        return "BM25"
    if "splade-v3" in text:
        return "SPLADE-v3"
    if llama8b and variant.head == "latent":
        return {26: "SPLARE-7B", 6: "SPLARE-2B"}.get(variant.layer)
    if llama8b and variant.head == "vocabulary":
        return "SPLADE-Llama"
    return None


def paper_counterpart(variant: Variant, table: int, family: str | None = None) -> tuple[str, str] | None:
    """(paper model label, setting) of `table` that `variant` reproduces, or None.

    `family` overrides the inferred paper family. Tables 6/7/10/11 and Table 1 report the default
    top-k 40/400; Table 3 reports SPLARE-7B at every top-k.
    """
    family = family or paper_family(variant)
    if family is None:
        return None
    topk = top_k_label(variant)
    default = topk == "40/400" or family in ("BM25", "SPLADE-v3")
    if table == 1:
        label = {"SPLARE-7B": "SPLARE", "SPLADE-Llama": "SPLADE-Llama", "SPLADE-v3": "SPLADE-v3"}.get(family)
        setting = "english-trained" if family == "SPLADE-v3" else "multilingual-trained"
        return (label, setting) if label and default else None
    if table == 3:
        if family == "SPLARE-7B":
            return (f"SPLARE-7B ({'no pooling cap' if topk == 'no cap' else 'top-k ' + topk})", "")
        return ("SPLARE-2B", "") if family == "SPLARE-2B" and default else None
    if table in (6, 7):
        ok = family in ("SPLARE-7B", "SPLADE-Llama") and default
        return (family, "multilingual-trained, top-k 40/400") if ok else None
    if table == 10:
        return (family, "") if family in ("SPLARE-7B", "SPLADE-Llama") and default else None
    if table == 11:
        return (family, "") if default else None
    return None
