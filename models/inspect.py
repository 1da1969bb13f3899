"""Decode a sparse vector: the top SAE latents (with explanations when available) or vocabulary tokens.

CLI: `python -m models.inspect splare_tiny "a text" [-n 20] [--role query] [--explanations FILE]
[backbone.layer=9 ...]` (the model is a conf/model/<name>.yaml, followed by dotted overrides).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from sentence_transformers import SparseEncoder

from models.sae_pooling import SaeLatentPooling

ID_KEYS = ("index", "feature", "latent", "id")
TEXT_KEYS = ("description", "explanation", "label", "text")
EXPLANATION_FILES = ("explanations.json", "explanations.jsonl")


def load_explanations(path: str | Path) -> dict[int, str]:
    """Latent id -> explanation from a local file.

    Accepts a JSON object `{"123": "text"}`, or records (a JSON list or JSONL, e.g. a Neuronpedia
    export) with an id key (index/feature/latent/id) and a text key (description/explanation/label/text).
    """
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix == ".jsonl":
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
        if isinstance(data, dict):
            return {int(key): str(value) for key, value in data.items()}
        records = data
    explanations = {}
    for record in records:
        latent = next((record[key] for key in ID_KEYS if key in record), None)
        label = next((record[key] for key in TEXT_KEYS if key in record), None)
        if latent is None or label is None:
            raise ValueError(
                f"{path}: record without an id ({'/'.join(ID_KEYS)}) or a text: {record}"
            )
        explanations[int(latent)] = str(label)
    return explanations


def find_explanations(model_cfg: Mapping) -> Path | None:
    """`sae.explanations` when set, else an explanations.json(l) inside a local SAE folder, else None."""
    sae = model_cfg.get("sae") or {}
    if sae.get("explanations"):
        return Path(sae["explanations"])
    path = sae.get("path")
    if not path or str(path).startswith("embedded:"):
        return None
    return next(
        (Path(path) / name for name in EXPLANATION_FILES if (Path(path) / name).is_file()), None
    )


def top_features(
    encoder: SparseEncoder, text: str, n: int = 20, role: str = "document"
) -> list[tuple[int, float]]:
    """The `n` largest (dimension id, weight) pairs of `text`'s vector, largest first."""
    if role not in ("query", "document"):
        raise ValueError(f"role must be 'query' or 'document', got '{role}'")
    encode = encoder.encode_query if role == "query" else encoder.encode_document
    vector = encode([text], convert_to_sparse_tensor=True)[0].coalesce()
    ids, weights = vector.indices()[0], vector.values().float()
    order = torch.topk(weights, k=min(n, weights.numel())).indices
    return [(int(ids[i]), float(weights[i])) for i in order]


def describe(
    encoder: SparseEncoder,
    text: str,
    n: int = 20,
    role: str = "document",
    explanations: Mapping[int, str] | None = None,
) -> list[tuple[int, str, float]]:
    """(id, label, weight) of the top `n` dimensions: a latent's explanation (else `latent <id>`),
    or the vocabulary token for SPLADE models."""
    top = top_features(encoder, text, n, role)
    if isinstance(encoder[-1], SaeLatentPooling):
        labels = [(explanations or {}).get(i, f"latent {i}") for i, _ in top]
    else:
        labels = encoder.tokenizer.convert_ids_to_tokens([i for i, _ in top])
    return [(i, label, weight) for (i, weight), label in zip(top, labels, strict=True)]


def format_rows(rows: Sequence[tuple[int, str, float]]) -> str:
    """One line per dimension: weight, id, label."""
    return "\n".join(f"{weight:8.4f}  {idx:>7}  {label}" for idx, label, weight in rows)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point (see the module docstring)."""
    from omegaconf import OmegaConf

    from harness.config import CONF_DIR
    from models.build import build_encoder

    parser = argparse.ArgumentParser(prog="python -m models.inspect", description=__doc__)
    parser.add_argument("model", help="a conf/model/<name>.yaml name")
    parser.add_argument("text")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides of the model config, key=value"
    )
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--role", choices=("query", "document"), default="document")
    parser.add_argument("--explanations", default=None, help="local explanations file (json/jsonl)")
    args = parser.parse_intermixed_args(argv)
    path = CONF_DIR / "model" / f"{args.model}.yaml"
    if not path.is_file():
        raise SystemExit(f"unknown model '{args.model}': no {path}")
    model_cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(args.overrides))
    source = args.explanations or find_explanations(model_cfg)
    explanations = load_explanations(source) if source else None
    rows = describe(build_encoder(model_cfg), args.text, args.n, args.role, explanations)
    print(format_rows(rows))


if __name__ == "__main__":
    main()
