"""Paired significance of two variants: per-query scores from the run files, ranx's randomization
test, a bootstrap interval of the difference, Holm's correction across the rows of a table.

- Per-query scores: ranx's nDCG@10 of the harness's TREC run file against the task's qrels (every
  judged query; a query without a retrieved document scores 0), checked against the per-query
  nDCG@10 the harness wrote beside it (mteb's own pytrec_eval computation).
- Test: ranx's Fisher randomization test (`ranx.statistical_tests.fisher_randomization_test`:
  two-sided, the share of `permutations` random swaps within each pair whose |mean difference| is
  at least the observed one; no +1 correction, so p can be 0 = below 1 / permutations).
- Interval: ranx has none; `scipy.stats.bootstrap` (percentile method) of the mean paired
  difference.
- Holm: neither ranx nor scipy has it (statsmodels is no dependency): `holm` below, checked in the
  tests against statsmodels and a brute-force definition.

A task pools the queries of its (split, subset) units with weights `w_q = N / (U * n_u)` (N
queries in all, U units, n_u in the query's unit), so the weighted mean equals mteb's main score
(the plain mean over units of each unit's mean). Swapping a pair's two values commutes with the
weighting, so the randomization test on weighted values is the test of that statistic.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

#: The per-query measure (ranx's name), mteb's main score of retrieval tasks.
RANX_METRIC = "ndcg@10"
#: Largest tolerated difference between ranx's and the harness's per-query nDCG@10.
SCORE_TOLERANCE = 1e-6


def read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    """`{query id: {doc id: score}}` of a (gzipped when `.gz`) TREC run file.

    Raises:
        ValueError: a line that is not `qid Q0 docid rank score tag` (names file and line).
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    run: dict[str, dict[str, float]] = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            try:
                if len(fields) != 6:
                    raise ValueError
                run.setdefault(fields[0], {})[fields[2]] = float(fields[4])
            except ValueError:
                raise ValueError(f"{path}:{number}: not a TREC run line: {line.strip()!r}") from None
    return run


def per_query_scores(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """ranx's nDCG@10 of every judged query of `qrels` (queries missing from `run` score 0).

    Each ranking is put in trec_eval's order first (score descending, ties by doc id descending,
    `harness.runfiles.trec_order`) and handed to ranx as distinct decreasing scores, so tied
    scores are broken as mteb's pytrec_eval breaks them (ranx would break them otherwise).
    """
    from ranx import Qrels, Run, evaluate

    from harness.runfiles import trec_order

    judged = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    ranked = {q: trec_order(docs) for q, docs in run.items() if q in judged and docs}
    scores = dict.fromkeys(judged, 0.0)  # nothing retrieved: 0, as pytrec_eval scores it
    if ranked:  # ranx (numba) cannot hold an empty ranking: score only the ranked queries
        ranx_qrels = Qrels({q: judged[q] for q in ranked})
        ranx_run = Run({q: {d: float(len(order) - i) for i, (d, _) in enumerate(order)}
                        for q, order in ranked.items()})
        values = evaluate(ranx_qrels, ranx_run, RANX_METRIC, return_mean=False)
        scores.update(zip(ranx_qrels.keys(), (float(v) for v in np.atleast_1d(values)),
                          strict=True))
    return scores


def check_scores(ours: Mapping[str, float], harness: Mapping[str, float], where: str) -> None:
    """Fail in one line unless ranx's per-query scores equal the harness's (same queries, within
    `SCORE_TOLERANCE`): a stale run file, other qrels or another ranking would show here."""
    if set(ours) != set(harness):
        extra = sorted(set(ours) ^ set(harness))[:3]
        raise ValueError(f"{where}: run file and per-query file judge different queries ({extra})")
    worst = max(ours, key=lambda q: abs(ours[q] - harness[q]), default=None)
    if worst is not None and abs(ours[worst] - harness[worst]) > SCORE_TOLERANCE:
        raise ValueError(
            f"{where}: query {worst}: ranx nDCG@10 {ours[worst]:.6f} != harness {harness[worst]:.6f}"
        )


@dataclass(frozen=True)
class Paired:
    """The paired comparison of variant A and B over n items (queries or tasks).

    `delta` = mean_b - mean_a; `low`/`high` its bootstrap interval; `p` the randomization test's
    two-sided p-value (before any correction); wins/ties/losses count items where B > / = / < A.
    """

    n: int
    mean_a: float
    mean_b: float
    delta: float
    low: float
    high: float
    p: float
    wins: int
    ties: int
    losses: int


def paired_test(
    a: Sequence[float],
    b: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    permutations: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Paired:
    """Paired randomization test and bootstrap interval of B - A.

    Args:
        a, b: `[n]` scores of the same n items (same order) under variants A and B.
        weights: `[n]` non-negative weights with mean 1 (None: all 1); the statistic is the
            weighted mean difference.
        permutations: random swaps of the randomization test, also the bootstrap resamples.
        confidence: level of the interval.
        seed: seed of both.
    """
    from ranx.statistical_tests import fisher_randomization_test

    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1 or a_arr.size == 0:
        raise ValueError(f"paired scores need two equal non-empty [n] arrays, got {a_arr.shape} "
                         f"and {b_arr.shape}")
    w = np.ones_like(a_arr) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != a_arr.shape or (w < 0).any() or abs(w.mean() - 1) > 1e-9:
        raise ValueError("weights must be [n], non-negative, with mean 1")
    wa, wb = a_arr * w, b_arr * w
    p, _ = fisher_randomization_test(wa, wb, permutations, 1.0, seed)
    diff = wb - wa
    if np.ptp(diff) == 0:  # constant difference: every resample has the same mean
        low = high = float(diff[0])
    else:
        interval = stats.bootstrap((diff,), np.mean, confidence_level=confidence,
                                   n_resamples=permutations, method="percentile",
                                   rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return Paired(n=a_arr.size, mean_a=float(wa.mean()), mean_b=float(wb.mean()),
                  delta=float(diff.mean()), low=low, high=high, p=float(p),
                  wins=int((b_arr > a_arr).sum()), ties=int((b_arr == a_arr).sum()),
                  losses=int((b_arr < a_arr).sum()))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values `[m]` of `[m]` p-values (same order):
    the k-th smallest becomes max over j <= k of min(1, (m - j + 1) * p_(j))."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def unit_weights(units: Sequence[str]) -> np.ndarray:
    """`[n]` weights of n pooled queries labelled by their unit (split/subset): `N / (U * n_u)`,
    so the weighted mean is the mean over units of each unit's mean."""
    labels, inverse, counts = np.unique(np.asarray(units, dtype=object), return_inverse=True,
                                        return_counts=True)
    return len(units) / (len(labels) * counts[inverse])
