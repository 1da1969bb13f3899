"""Decode sparse vectors: the top SAE latents (with explanations when available) or vocabulary
tokens of a text, and the dimensions that make a document score for a query.

The command line is `python -m harness.explain` (it reads the harness's model configs).
"""

from __future__ import annotations

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
    if not Path(path).is_file():
        raise FileNotFoundError(f"explanations file {path}: no such file")
    text = Path(path).read_text(encoding="utf-8")
    try:
        if Path(path).suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            if isinstance(data, dict):
                return {int(key): str(value) for key, value in data.items()}
            records = data
    except ValueError as err:  # JSONDecodeError, or a key that is not a latent index
        raise ValueError(f"explanations file {path}: not a valid export ({err})") from None
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
    names = labels(encoder, [i for i, _ in top], explanations)
    return [(i, label, weight) for (i, weight), label in zip(top, names, strict=True)]


def contributions(
    encoder: SparseEncoder, query: str, document: str, n: int = 20
) -> tuple[float, list[tuple[int, float, float]]]:
    """Why `document` scores for `query`: the score q . d and the `n` dimensions j with the largest
    contributions q_j * d_j as (j, q_j, d_j), largest contribution first.

    Both sides are encoded as they are at search time, uncapped (`[dim]` sparse vectors).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    q = encoder.encode_query([query], convert_to_sparse_tensor=True)[0].coalesce()
    d = encoder.encode_document([document], convert_to_sparse_tensor=True)[0].coalesce()
    q_weights = dict(zip(q.indices()[0].tolist(), q.values().float().tolist(), strict=True))
    d_weights = dict(zip(d.indices()[0].tolist(), d.values().float().tolist(), strict=True))
    shared = [(j, q_weights[j], d_weights[j]) for j in q_weights.keys() & d_weights.keys()]
    shared.sort(key=lambda row: (-row[1] * row[2], row[0]))
    return float(sum(qj * dj for _, qj, dj in shared)), shared[:n]


def labels(
    encoder: SparseEncoder, ids: Sequence[int], explanations: Mapping[int, str] | None = None
) -> list[str]:
    """Readable names of dimensions: a latent's explanation (else `latent <id>`), or the token."""
    if isinstance(encoder[-1], SaeLatentPooling):
        return [(explanations or {}).get(i, f"latent {i}") for i in ids]
    return encoder.tokenizer.convert_ids_to_tokens(list(ids))


def format_rows(rows: Sequence[tuple[int, str, float]]) -> str:
    """One line per dimension: weight, id, label."""
    return "\n".join(f"{weight:8.4f}  {idx:>7}  {label}" for idx, label, weight in rows)
