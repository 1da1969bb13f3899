"""What identifies a variant's numbers, from its `ModelSpec`: encoding key, revision, ModelMeta.

- `encoding_key(spec)`: everything that changes an uncapped encoding: the weights' content
  (hub commit or full hash of local folders, SAE, adapter, checkpoint; tokenizer and config files
  are inside those folders), layer, dtype, attention, max length, pooling chunk, and the code
  version of the encoding path (`models.identity.encode_code_digest`). Not the top-k nor search.
- `revision(spec, search, search_code)`: the encoding key plus top-k, the search backend and its
  parameters, and the search path's code version: mteb keys results by (name, revision), so any
  change of these is a new result folder and old results are never reused.
- `model_meta(spec, revision)`: mteb's ModelMeta with the embedding width and parameter count
  read from configs (no weights load), languages / licence / release date from the config's
  `meta:`, and `training_datasets` from a trained adapter's own training config.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from mteb.models.model_meta import ModelMeta

from models.build import Resolved, resolve
from models.hub import hub_reachable
from models.identity import encode_code_digest, folder_digest, hub_identity, short
from models.spec import ModelSpec, is_local, tag

META_ORG = "splare-harness"
#: The adapter folder's copy of the training config (written by `harness.train`).
TRAIN_CONFIG = "train_config.yaml"


def _source_identity(source: str | None, revision: str | None = None) -> dict[str, Any] | None:
    if source is None:
        return None
    if Path(source).exists():
        return {"content": folder_digest(source)}
    return hub_identity(source, revision, online=hub_reachable())


def weights_identity(spec: ModelSpec, parts: Resolved) -> dict[str, Any]:
    """Content identity of every weight source of the spec (hub commits or full file hashes)."""
    b = spec.backbone
    sae = None
    if parts.sae_path:
        sae = {"content": folder_digest(parts.sae_path)}
    elif parts.sae_release:
        from importlib.metadata import version

        sae = {"release": parts.sae_release, "id": parts.sae_id, "sae_lens": version("sae-lens")}
    return {
        "backbone": _source_identity(parts.backbone, b.revision if b else None),
        "sae": sae,
        "adapter": _source_identity(parts.adapter),
        "checkpoint": _source_identity(parts.checkpoint),
    }


def encoding_key(spec: ModelSpec, parts: Resolved | None = None) -> str:
    """Key of the spec's uncapped encodings (see the module docstring); resolves when needed."""
    parts = parts or resolve(spec)
    b = spec.backbone
    return short({
        "kind": spec.kind.name,
        "weights": weights_identity(spec, parts),
        "layer": b.layer,
        "dtype": b.dtype,
        "attention": b.attention,
        "attn_implementation": b.attn_implementation,
        "max_length": b.max_length,
        "chunk_tokens": spec.chunk_tokens,
        "code": encode_code_digest(),
    }, 24)


def revision(spec: ModelSpec, encoding: str | None, search: Mapping[str, Any] | None,
             search_code: str | None) -> str:
    """Short content hash of everything that changes a number of this variant."""
    return short({
        "encoding": encoding,
        "top_k": [spec.top_k_query, spec.top_k_document],
        "search": dict(search or {}),
        "search_code": search_code,
    })


def training_datasets(trained: str | None) -> set[str] | None:
    """mteb task names the retrieval training saw, for mteb's zero-shot flag.

    No adapter or checkpoint: an untrained backbone, trained on no MTEB task (empty set). A
    trained folder: its `train_config.yaml` data `mteb_tasks` (conf/data/*.yaml), None (unknown)
    when the folder does not say.
    """
    if not trained:
        return set()
    path = Path(trained) / TRAIN_CONFIG
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    data = OmegaConf.load(path).get("data") or {}
    tasks = data.get("mteb_tasks")
    return set(tasks) if tasks is not None else None


@functools.lru_cache(maxsize=32)
def _counted(spec: ModelSpec, parts: Resolved) -> tuple[int | None, int | None]:
    """(embed_dim, n_parameters) from configs: the truncated backbone built on the meta device
    (no memory, no weights) plus the SAE encoder's tensors or the untied LM head."""
    if parts.checkpoint:
        return _counted_checkpoint(parts.checkpoint)
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    from models.backbone import truncated_config

    b = spec.backbone
    if not spec.kind.decoder:  # a stock SparseEncoder: a folder's tensors, or the hub's config
        if Path(parts.backbone).is_dir():
            return _counted_checkpoint(parts.backbone)
        config = AutoConfig.from_pretrained(parts.backbone, revision=b.revision,
                                            trust_remote_code=True)
        with torch.device("meta"):
            model = AutoModelForMaskedLM.from_config(config, trust_remote_code=True)
        return int(config.vocab_size), sum(p.numel() for p in model.parameters())
    config = truncated_config(parts.backbone, b.layer, b.attention == "bidirectional",
                              b.attn_implementation, b.revision)
    with torch.device("meta"):
        n_backbone = sum(p.numel() for p in AutoModel.from_config(config).parameters())
    if spec.kind.head == "sae":
        from models.sae_pooling import read_sae_config

        cfg = read_sae_config(parts.sae_release, parts.sae_id, parts.sae_path)
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
        threshold = d_sae if cfg.get("architecture") == "jumprelu" else 0
        return d_sae, n_backbone + d_in * d_sae + d_sae + d_in + threshold
    tied = bool(getattr(config, "tie_word_embeddings", False))
    head = 0 if tied else int(config.vocab_size) * int(config.hidden_size)
    return int(config.vocab_size), n_backbone + head


def _counted_checkpoint(folder: str) -> tuple[int | None, int | None]:
    """Width and parameters of a saved SparseEncoder from its safetensors headers (no SAE
    decoder): the width is an SAE's `d_sae`, else the (MLM) config's `vocab_size`."""
    if not Path(folder).is_dir():
        return None, None
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(folder).rglob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                if name != "W_dec":
                    total += int(torch.Size(f.get_slice(name).get_shape()).numel())
    dims = None
    for config in sorted(Path(folder).rglob("*.json")):
        data = json.loads(config.read_text())
        if isinstance(data, dict) and isinstance(data.get("d_sae"), int):
            dims = data["d_sae"]
        elif isinstance(data, dict) and isinstance(data.get("vocab_size"), int) and dims is None:
            dims = data["vocab_size"]
    return dims, total or None


def variant_name(spec: ModelSpec, with_top_k: bool = True) -> str:
    """`splare-harness/<spec variant name>`, naming the SAE that will load (the fallback while
    the hub is unreachable)."""
    from models.build import sae_choice

    label = None
    if spec.sae is not None and not spec.checkpoint:
        release, sae_id, path = sae_choice(spec, require=False)
        label = (tag(path) if path else f"{release}.{sae_id}").replace("/", "_")
    return f"{META_ORG}/{spec.variant_name(with_top_k, sae_label=label)}"


def model_meta(spec: ModelSpec, revision_hash: str | None, parts: Resolved | None = None,
               search_name: str = "exact") -> ModelMeta:
    """mteb's ModelMeta of the variant: unique name, content revision, counted size."""
    parts = parts or resolve(spec)
    b = spec.backbone
    embed_dim, n_parameters = _counted(spec, parts)
    name = variant_name(spec)
    if search_name != "exact":  # approximate search gives other numbers: another variant
        name = f"{name}-{search_name}"
    facts = spec.facts
    hub_id = b.id if b else None
    return ModelMeta(
        loader=None,
        name=name,
        revision=revision_hash,
        release_date=facts.release_date,
        languages=list(facts.languages) if facts.languages else None,
        n_parameters=n_parameters,
        memory_usage_mb=None,
        max_tokens=b.max_length,
        embed_dim=embed_dim,
        license=facts.license,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["Sentence Transformers", "PyTorch"],
        reference=facts.reference or (f"https://huggingface.co/{hub_id}" if hub_id else None),
        similarity_fn_name="dot",
        use_instructions=False,
        training_datasets=training_datasets(parts.adapter or parts.checkpoint),
        adapted_from=hub_id if hub_id and not is_local(hub_id) else None,
        model_type=["sparse"],
    )
