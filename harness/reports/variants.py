"""What a measured model is, read from the records the runner writes beside its results.

Every field comes from a file, never from the model name (names are display labels only):
- `<revision>/harness/variant.json` (`harness.runner.variant_record`: the `ModelSpec` record
  plus search, name, revision, n_parameters, embed_dim): kind, space, backbone, layer, SAE,
  dtype, attention, top-k, trained weights, search backend;
- `<revision>/model_meta.json` (mteb's ModelMeta): name, revision, and `embed_dim` (the SAE
  width of a latent space);
- the run records' composed config (`harness/runs/*.json`): whether queries were sliced, and the
  backbone revision asked for.

A folder without `variant.json` (results mteb wrote itself, or copied from mteb's results
repository) is reported under its ModelMeta name and revision with every property unknown: it
joins no figure pairing or curve and has no paper counterpart unless `--counterpart` names one.
Its leaderboard counterpart is matched on its mteb model name, the key the leaderboard uses.

Figures label a variant with `short_labels` (from `variant.json`, also used by `harness.compare`):
`SPLARE · Gemma-3-270M L9 · 8k SAE`, `SPLADE · Gemma-3-270M L9 · LM head`, `BM25`; the full
model names stay in the captions and tables.

The paper model a variant reproduces is decided by its config: a variant of a paper config
(`PAPER_CONFIGS`) whose kind and layer are those of the shipped `conf/model/<config>.yaml`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.spec import KINDS, ModelSpec

#: Shipped config name -> the paper model it reproduces (arXiv 2603.13277v1).
PAPER_CONFIGS = {
    "splare7b": "SPLARE-7B",
    "splare2b": "SPLARE-2B",
    "splade_llama": "SPLADE-Llama",
    "splade_v3": "SPLADE-v3",
    "bm25": "BM25",
}
#: Axes that identify a variant for grouping (a curve varies one of them).
FAMILY_AXES = ("kind", "backbone", "layer", "width", "top_k_query", "top_k_document", "trained",
               "dtype", "attention", "search")


@dataclass(frozen=True)
class Variant:
    """The axes a report compares. top-k 0 means "no cap"; None means unknown (no record).

    `space`: latent | vocabulary | lexical (`models.spec.KINDS`); `width`: SAE latents (latent
    space only); `search`: the search backend's name.
    """

    name: str
    recorded: bool = False           # a variant.json was found
    config: str | None = None
    kind: str | None = None
    space: str | None = None
    backbone: str | None = None      # the local path it loaded from, else the hub id
    backbone_id: str | None = None
    backbone_revision: str | None = None
    layer: int | None = None
    width: int | None = None
    sae: str | None = None
    dtype: str | None = None
    attention: str | None = None
    top_k_query: int | None = None
    top_k_document: int | None = None
    trained: bool | None = None
    search: str | None = None
    caveats: tuple[str, ...] = field(default=())

    def family(self, *vary: str) -> tuple:
        """Identity of the variant with the axes in `vary` left out (curves group by this)."""
        return tuple(getattr(self, k) for k in FAMILY_AXES if k not in vary)

    @property
    def leaderboard_id(self) -> str:
        """The model id the MTEB leaderboard files results under: the hub id of a stock
        SparseEncoder (`splade_mlm`), else the mteb model name (BM25, unrecorded folders)."""
        if self.kind == "splade_mlm" and self.backbone_id:
            return self.backbone_id
        return self.name


def parse_variant(name: str, record: Mapping[str, Any] | None, meta: Mapping[str, Any] | None,
                  config: Mapping[str, Any] | None) -> Variant:
    """The Variant of one result folder.

    Args:
        name: the mteb model name (model_meta.json, else the folder name).
        record: `variant.json` (None when absent).
        meta: `model_meta.json` ({} or None when absent).
        config: the composed config of the folder's latest run record (None when none).
    """
    caveats: list[str] = []
    sliced = ((config or {}).get("benchmark") or {}).get("slice_queries")
    if sliced:
        caveats.append(f"queries sliced to {sliced} per subset/split")
    if record is None:
        caveats.append("no variant.json beside the results: model properties unknown")
        return Variant(name=name, caveats=tuple(caveats))
    kind = KINDS.get(record.get("kind"))
    if kind is None:
        raise ValueError(f"variant.json of {name}: unknown kind {record.get('kind')!r}")
    if kind.decoder and not record.get("trained"):
        caveats.append("zero-shot (no adapter or checkpoint)")
    top_k = record.get("top_k") or {}
    embed = (meta or {}).get("embed_dim", record.get("embed_dim"))
    sae = record.get("sae")
    backbone_cfg = ((config or {}).get("model") or {}).get("backbone") or {}
    return Variant(
        name=name,
        recorded=True,
        config=record.get("config"),
        kind=kind.name,
        space=kind.space,
        backbone=record.get("backbone_path") or record.get("backbone_id"),  # what was loaded
        backbone_id=record.get("backbone_id"),
        backbone_revision=backbone_cfg.get("revision"),
        layer=record.get("layer"),
        width=embed if kind.space == "latent" and isinstance(embed, int) else None,
        sae=(sae.get("path") or f"{sae.get('release')}/{sae.get('id')}") if sae else None,
        dtype=record.get("dtype"),
        attention=record.get("attention"),
        top_k_query=top_k.get("query"),
        top_k_document=top_k.get("document"),
        trained=bool(record.get("trained")) if kind.encoder else None,
        search=(record.get("search") or {}).get("name"),
        caveats=tuple(caveats),
    )


def top_k_label(variant: Variant) -> str:
    """"40/400", "no cap", "–" (a model without top-k, e.g. BM25) or "?" (unknown)."""
    if variant.kind is not None and not KINDS[variant.kind].encoder:
        return "–"
    return top_k_text(variant.top_k_query, variant.top_k_document)


def top_k_text(query: object, document: object) -> str:
    """"40/400", "no cap" (both 0) or "?" (either unknown)."""
    if query is None or document is None:
        return "?"
    return "no cap" if query == 0 and document == 0 else f"{query}/{document}"


@functools.cache
def _shipped(config: str) -> ModelSpec | None:
    """The spec of the shipped `conf/model/<config>.yaml` (None when there is no such file)."""
    from omegaconf import OmegaConf

    from harness.config import CONF_DIR

    path = CONF_DIR / "model" / f"{config}.yaml"
    return ModelSpec.from_config(OmegaConf.load(path)) if path.is_file() else None


def config_space(config: str) -> str | None:
    """The space (latent | vocabulary | lexical) of the shipped `conf/model/<config>.yaml`, or of
    the config that reproduces paper model `config` (`PAPER_CONFIGS`); None when neither exists."""
    config = {family: name for name, family in PAPER_CONFIGS.items()}.get(config, config)
    shipped = _shipped(config) if config else None
    return shipped.kind.space if shipped else None


def paper_family(variant: Variant) -> str | None:
    """The paper model this variant reproduces: a paper config run with its own kind and layer."""
    family = PAPER_CONFIGS.get(variant.config or "")
    shipped = _shipped(variant.config) if family else None
    if shipped is None or shipped.kind.name != variant.kind:
        return None
    layer = shipped.backbone.layer if shipped.backbone else None
    return family if layer == variant.layer else None


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


# ---- short labels (figures), from the variant record ------------------------------------------

#: Longest backbone name a short label shows; a longer one is cut and ends in "…".
BACKBONE_CHARS = 24
#: Longest label of a folder without `variant.json` (its model name, cut the same way).
NAME_CHARS = 32


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def pretty_backbone(record: Mapping[str, Any]) -> str:
    """A short backbone name: `google/gemma-3-270m` -> `Gemma-3-270M`, an embedded path's tail;
    at most `BACKBONE_CHARS` characters."""
    raw = record.get("backbone_id") or str(record.get("backbone_path") or "?")
    tail = raw.split("/")[-1].split(":")[-1]
    tail = re.sub(r"(\d+(?:\.\d+)?)([mb])\b", lambda m: m.group(1) + m.group(2).upper(), tail)
    return _cut(tail[:1].upper() + tail[1:], BACKBONE_CHARS)


def sae_width_label(width: Any) -> str:
    """`8k` for 8192 latents, `128k` for 131072, `64` for 64 (k only for multiples of 1024)."""
    if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
        return "?"
    return f"{width // 1024}k" if width % 1024 == 0 else str(width)


def short_label(record: Mapping[str, Any], omit: Sequence[str] = ()) -> str:
    """A figure label from a variant record (`variant.json`): `SPLARE · Gemma-3-270M L9 · 16k SAE`,
    `SPLADE · Gemma-3-270M L9 · LM head`, `SPLADE · Splade-bert-tiny`, `BM25`; `· trained` when an
    adapter or checkpoint is applied. `omit`: parts a curve varies and its label leaves out
    ("layer", "width"). A record without a kind (no `variant.json`) is labelled by its model name.
    """
    kind = record.get("kind")
    if kind is None:
        return _cut(str(record.get("name") or "?").split("/")[-1], NAME_CHARS)
    if kind == "bm25":
        return "BM25"
    backbone = pretty_backbone(record)
    show_layer = record.get("layer") is not None and "layer" not in omit
    layer = f" L{record['layer']}" if show_layer else ""
    if kind == "splare":
        width = "" if "width" in omit else f"{sae_width_label(record.get('embed_dim'))} "
        label = f"SPLARE · {backbone}{layer} · {width}SAE"
    elif kind == "splade_llm":
        label = f"SPLADE · {backbone}{layer} · LM head"
    else:
        label = f"SPLADE · {backbone}"
    return label + (" · trained" if record.get("trained") else "")


def _top_k_part(record: Mapping[str, Any]) -> str:
    top_k = record.get("top_k") or {}
    q, d = top_k.get("query"), top_k.get("document")
    if q is None or d is None:
        return "top-k ?"
    return "no cap" if q == 0 and d == 0 else f"top-k {q}/{d}"


#: What tells apart variants with the same short label, tried in this order.
_DISTINGUISH = (
    _top_k_part,
    lambda r: str(r.get("dtype")),
    lambda r: str((r.get("search") or {}).get("name")),
    lambda r: str(r.get("revision"))[:6],
)


def short_labels(records: Sequence[Mapping[str, Any]], omit: Sequence[str] = ()) -> list[str]:
    """`short_label` of each record (`omit` as there), made unique: variants sharing a label get,
    in turn, the first of top-k (`top-k 10/100`, `no cap`), dtype, search backend and revision
    prefix that differs among them (`SPLADE · Splade-bert-tiny · top-k 10/100`)."""
    labels = [short_label(r, omit) for r in records]
    for part in _DISTINGUISH:
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            groups.setdefault(label, []).append(i)
        for label, members in groups.items():
            values = [part(records[i]) for i in members]
            if len(members) > 1 and len(set(values)) > 1:
                for i, value in zip(members, values, strict=True):
                    labels[i] = f"{label} · {value}"
    return labels
