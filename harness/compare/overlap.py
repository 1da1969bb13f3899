"""Language-agnostic features, measured: how much of a text's pooled vector sits on dimensions
that are also active in its translation.

overlap(u -> v) = sum_{j: v_j > 0} u_j / sum_j u_j  (share of u's mass on dimensions active in v);
a pair's overlap is the mean of both directions. Measured on document vectors, uncapped (as pooled)
and cut to the variant's document top-k (as searched), for parallel pairs and, as the chance level,
for mismatched pairs (text i against the translation of text i+1).

Parallel texts come from the local tasks (read in place from the shared data folder): XQuAD
paragraphs and Belebele passages. Two documents are parallel when the same query (same id, same
language) judges one in the pivot subset (English documents) and the other in a cross-lingual
subset (documents in language L): `en` / `<L>-en` for XQuAD, `eng_Latn-eng_Latn` /
`<L>-eng_Latn` for Belebele.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

#: Parallel sources: task -> (split, pivot subset, cross subset of language L).
SOURCES: dict[str, tuple[str, str, str]] = {
    "LocalXQuADRetrieval": ("validation", "en", "{lang}-en"),
    "LocalBelebeleRetrieval": ("test", "eng_Latn-eng_Latn", "{lang}-eng_Latn"),
}


def mass_overlap(u: sp.csr_matrix, v: sp.csr_matrix) -> np.ndarray:
    """`[n]` share of each row of u's mass on the dimensions active (> 0) in the same row of v.

    Args:
        u, v: `[n, dim]` non-negative sparse matrices. A row of u with no mass gets 0.
    """
    if u.shape != v.shape:
        raise ValueError(f"overlap needs equal shapes, got {u.shape} and {v.shape}")
    u, v = sp.csr_matrix(u, dtype=np.float64), sp.csr_matrix(v, dtype=np.float64)
    if (u.data < 0).any() or (v.data < 0).any():
        raise ValueError("overlap is defined for non-negative vectors")
    active = (v > 0).astype(np.float64)
    shared = np.asarray(u.multiply(active).sum(axis=1)).ravel()
    total = np.asarray(u.sum(axis=1)).ravel()
    return np.divide(shared, total, out=np.zeros_like(total), where=total > 0)


def symmetric_overlap(u: sp.csr_matrix, v: sp.csr_matrix) -> np.ndarray:
    """`[n]` mean of overlap(u -> v) and overlap(v -> u), row by row."""
    return (mass_overlap(u, v) + mass_overlap(v, u)) / 2


def top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """`[n, dim]` copy keeping each row's `k` largest entries (k <= 0: unchanged)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    if k <= 0:
        return matrix
    rows = []
    for i in range(matrix.shape[0]):
        row = matrix.getrow(i)
        if row.nnz > k:
            keep = np.argpartition(row.data, -k)[-k:]
            row = sp.csr_matrix((row.data[keep], (np.zeros(k, dtype=int), row.indices[keep])),
                                shape=row.shape)
        rows.append(row)
    return sp.vstack(rows, format="csr")


def parallel_texts(task: Any, pivot: str, cross: str, split: str) -> list[tuple[str, str]]:
    """(English text, translation) pairs of a loaded local task: the documents the same query
    judges in subset `pivot` and in subset `cross`, one pair per pivot document, in id order."""
    from mteb._create_dataloaders import _retrieval_texts
    from mteb.types import PromptType

    from harness.runfiles import split_data

    for subset in (pivot, cross):
        if subset not in task.hf_subsets:
            raise ValueError(f"{task.metadata.name} has no subset '{subset}'; valid: "
                             f"{task.hf_subsets}")
    sides = []
    for subset in (pivot, cross):
        data = split_data(task, subset, split)
        texts = dict(zip(data["corpus"]["id"], _retrieval_texts(data["corpus"],
                                                                 PromptType.document),
                         strict=True))
        sides.append((data["relevant_docs"], texts))
    (qrels_p, texts_p), (qrels_c, texts_c) = sides
    pairs: dict[str, str] = {}
    for qid in sorted(set(qrels_p) & set(qrels_c)):
        doc_p = [d for d, g in qrels_p[qid].items() if g > 0]
        doc_c = [d for d, g in qrels_c[qid].items() if g > 0]
        if len(doc_p) == 1 and len(doc_c) == 1:
            pairs.setdefault(doc_p[0], doc_c[0])
    return [(texts_p[p], texts_c[c]) for p, c in sorted(pairs.items())]


@dataclass(frozen=True)
class OverlapRow:
    """One (model, source, language) measurement over n pairs (means; CI of the parallel mean)."""

    model: str
    source: str
    language: str
    cut: str
    n: int
    parallel: float
    low: float
    high: float
    mismatched: float
    l0_pivot: float
    l0_translation: float


def measure(
    pairs: Sequence[tuple[str, str]], encode: Any, top_k: int, *, model: str, source: str,
    language: str, seed: int = 0, confidence: float = 0.95,
) -> list[OverlapRow]:
    """Overlap rows (uncapped and at `top_k`) of `pairs` (n >= 2) encoded with `encode`.

    Args:
        pairs: (English text, translation) pairs.
        encode: texts -> `[n, dim]` scipy CSR document vectors.
        top_k: the variant's document top-k (0 = none; then only the uncapped row).
    """
    if len(pairs) < 2:
        raise ValueError(f"{source} {language}: need at least 2 parallel pairs, got {len(pairs)}")
    u = encode([p for p, _ in pairs])
    v = encode([t for _, t in pairs])
    rows = []
    for cut, k in (("uncapped", 0), (f"top-{top_k}", top_k))[: 2 if top_k > 0 else 1]:
        uk, vk = top_k_rows(u, k), top_k_rows(v, k)
        parallel = symmetric_overlap(uk, vk)
        shifted = vk[np.roll(np.arange(vk.shape[0]), -1)]
        interval = stats.bootstrap((parallel,), np.mean, confidence_level=confidence,
                                   n_resamples=10_000, method="percentile",
                                   rng=np.random.default_rng(seed)).confidence_interval
        rows.append(OverlapRow(model, source, language, cut, len(pairs), float(parallel.mean()),
                               float(interval.low), float(interval.high),
                               float(symmetric_overlap(uk, shifted).mean()),
                               float(np.diff(uk.indptr).mean()),
                               float(np.diff(vk.indptr).mean())))
    return rows


def sample_pairs(pairs: Sequence[tuple[str, str]], n: int, seed: int) -> list[tuple[str, str]]:
    """`n` pairs sampled with `seed` (all when fewer), in their original order."""
    if len(pairs) <= n:
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


def run_overlap(
    models: Mapping[str, tuple[Any, int]], tasks: Mapping[str, Any], languages: Sequence[str],
    n: int, seed: int,
) -> pd.DataFrame:
    """Overlap table for every model x source task x language.

    Args:
        models: short model label -> (texts -> `[n, dim]` CSR encode function, document top-k).
        tasks: source task name (a key of `SOURCES`) -> the loaded local task.
        languages: per task, the cross-subset languages to measure (those the task has).
        n: parallel pairs per (task, language).
    Returns: one row per OverlapRow (columns are its fields).
    """
    rows = []
    for source, task in tasks.items():
        split, pivot, cross = SOURCES[source]
        for language in languages:
            subset = cross.format(lang=language)
            if subset not in task.hf_subsets:
                continue
            pairs = sample_pairs(parallel_texts(task, pivot, subset, split), n, seed)
            for label, (encode, top_k) in models.items():
                rows += measure(pairs, encode, top_k, model=label, source=source,
                                language=language, seed=seed)
    if not rows:
        raise ValueError(f"no parallel subset for languages {list(languages)} in {list(tasks)}")
    return pd.DataFrame([row.__dict__ for row in rows])
