"""Why a document matched: for sampled queries of each task, every variant's top-ranked document
(from its run file), whether the qrels judge it relevant, and the dimensions that carry its score
(`models.inspect.contributions`: q_j * d_j, largest first).

Dimension names: vocabulary tokens for SPLADE; for SPLARE, a latent's description from a local
explanation file (Neuronpedia export format, `models.inspect.load_explanations`) when one is given,
else `latent <id>` with the corpus tokens that activate it most, computed here on (a seeded sample
of) the task's own corpus. Nothing is fetched.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.compare.significance import read_trec_run
from harness.compare.variants import Unit, Variant
from harness.runfiles import split_data, trec_order


@dataclass
class Match:
    """One variant's top document for one query and the dimensions carrying its score."""

    variant: str
    doc_id: str | None
    relevant: int | None
    score: float | None
    dims: list[tuple[str, float, float]] = field(default_factory=list)
    """(dimension name, q_j * d_j, share of q . d), largest first."""


@dataclass
class Example:
    """A sampled query of a task and every variant's match."""

    task: str
    split: str
    subset: str
    qid: str
    query: str
    matches: list[Match]
    docs: dict[str, str]
    """doc id -> text, for the documents shown."""


def unit_texts(task: Any, unit: Unit) -> tuple[dict[str, str], dict[str, str]]:
    """({query id: text}, {doc id: text}) of a unit, as the model read them (mteb's texts)."""
    from mteb._create_dataloaders import _retrieval_texts
    from mteb.types import PromptType

    _, split, subset = unit
    data = split_data(task, subset, split)
    queries = dict(zip(data["queries"]["id"], _retrieval_texts(data["queries"], PromptType.query),
                       strict=True))
    docs = dict(zip(data["corpus"]["id"], _retrieval_texts(data["corpus"], PromptType.document),
                    strict=True))
    return queries, docs


def sample_queries(units: Sequence[Unit], judged: Mapping[Unit, Sequence[str]], n: int,
                   seed: int) -> dict[str, list[tuple[Unit, str]]]:
    """Per task, `n` (unit, query id) pairs sampled with `seed` from its units' judged queries."""
    by_task: dict[str, list[tuple[Unit, str]]] = {}
    for unit in units:
        by_task.setdefault(unit[0], []).extend((unit, q) for q in sorted(judged[unit]))
    return {task: random.Random(seed).sample(items, min(n, len(items)))
            for task, items in sorted(by_task.items())}


def top_document(variant: Variant, unit: Unit, qid: str) -> tuple[str, float] | None:
    """(doc id, score) ranked first for `qid` in the variant's run file (trec_eval order)."""
    ranking = read_trec_run(variant.run_file(unit)).get(qid)
    return trec_order(ranking)[0] if ranking else None


def latent_top_tokens(
    encoder: Any, texts: Sequence[str], latents: Sequence[int], n_tokens: int = 5,
    batch_size: int = 8,
) -> dict[int, list[tuple[str, float]]]:
    """For each latent, the `n_tokens` distinct tokens of `texts` with the largest activation
    log(1 + relu(z)) (the pooled quantity), largest first.

    Runs the encoder's modules up to its SAE pooling on `texts` (documents, `[batch, tokens]` at a
    time) and reads `sae.encode` of every pooled token position (`[positions, d_sae]` per batch).
    """
    backbone, pooling = encoder[0], encoder[-1]
    wanted = torch.tensor(sorted(set(latents)), dtype=torch.long)
    best: dict[int, dict[str, float]] = {int(j): {} for j in wanted}
    device = next(pooling.parameters()).device
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            features = backbone.preprocess(list(texts[start:start + batch_size]))
            features = {k: v.to(device) for k, v in features.items()}
            for module in list(encoder)[:-1]:
                features = module(features)
            mask = features.get("pooling_mask", features["attention_mask"].bool())
            hidden = features["token_embeddings"][mask]
            acts = torch.log1p(torch.relu(pooling.sae.encode(hidden)[:, wanted.to(device)]))
            tokens = backbone.tokenizer.convert_ids_to_tokens(
                features["input_ids"][mask].tolist())
            for col, latent in enumerate(wanted.tolist()):
                column = acts[:, col]
                for pos in torch.nonzero(column > 0).ravel().tolist():
                    token, value = tokens[pos], float(column[pos])
                    if value > best[latent].get(token, 0.0):
                        best[latent][token] = value
    return {j: sorted(found.items(), key=lambda kv: -kv[1])[:n_tokens]
            for j, found in best.items()}


def is_latent_encoder(encoder: Any) -> bool:
    """True for SPLARE encoders (an SAE pooling head)."""
    from models.sae_pooling import SaeLatentPooling

    return isinstance(encoder[-1], SaeLatentPooling)


def explain_matches(
    examples: Sequence[Example], encoder: Any, variant_label: str, *, n_dims: int,
    explanations: Mapping[int, str] | None, corpus: Mapping[str, Sequence[str]],
) -> None:
    """Fill the `dims` of `variant_label`'s matches in `examples` (in place).

    Args:
        corpus: task -> documents whose tokens name latents when no explanation is given.
    """
    from models.inspect import contributions, labels

    per_task: dict[str, list[tuple[Match, list[tuple[int, float, float]], float]]] = {}
    for example in examples:
        for match in example.matches:
            if match.variant != variant_label or match.doc_id is None:
                continue
            score, rows = contributions(encoder, example.query, example.docs[match.doc_id],
                                        n_dims)
            per_task.setdefault(example.task, []).append((match, rows, score))
    latent = is_latent_encoder(encoder)
    for task, items in per_task.items():
        ids = sorted({j for _, rows, _ in items for j, _, _ in rows})
        if latent and explanations is None:
            tops = latent_top_tokens(encoder, corpus[task], ids)
            names = {j: f"latent {j} ({', '.join(repr(t) for t, _ in tops[j][:4]) or '-'})"
                     for j in ids}
        else:
            names = dict(zip(ids, labels(encoder, ids, explanations), strict=True))
        for match, rows, score in items:
            match.dims = [(names[j], qj * dj, qj * dj / score if score else 0.0)
                          for j, qj, dj in rows]


def corpus_sample(task: Any, units: Sequence[Unit], n_docs: int, seed: int) -> list[str]:
    """Up to `n_docs` distinct documents of the task's units (seeded sample), as the model read
    them: the corpus whose tokens name the latents."""
    texts = sorted({text for unit in units for text in unit_texts(task, unit)[1].values()})
    return random.Random(seed).sample(texts, min(n_docs, len(texts)))
