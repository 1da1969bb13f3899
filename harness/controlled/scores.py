"""What a controlled run's evaluations scored, read from their results folders: mteb's main score
per task and per (task, subset), the harness's per-query nDCG@10, and paired tests of two stages
(`harness.compare.significance`: ranx's randomization test, a bootstrap interval, Holm).

An evaluation's results folder is `<run>/results/<model>_<before|after>/` (the `run.results_dir`
the controlled app gives `python -m harness`); inside it, mteb's `results/<model>/<revision>/
<Task>.json` and the harness's per-query files `…/harness/queries/<Task>/<split>/
<subset>.ndcg_at_10.json` (`harness.runfiles`).

A subset is named by mteb's `hf_subset` (a language, or a language pair such as
`deu_Latn-deu_Latn`); for a task scored on several splits, by `<split>/<hf_subset>`
(`subset_key`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Random swaps of the randomization test (and bootstrap resamples), and their seed.
PERMUTATIONS = 10_000
SEED = 0
#: Level at which a Holm-corrected p marks a difference as significant.
ALPHA = 0.05

SubsetScores = dict[str, dict[str, float]]
"""{task: {subset: main score}}."""
PerQuery = dict[tuple[str, str], dict[str, float]]
"""{(task, subset): {query id: nDCG@10}}."""


def stage_dir(out: Path, model: str, stage: str) -> Path:
    """The results folder of one evaluation (`stage`: "before" / "after") of a run in `out`."""
    return out / "results" / f"{model}_{stage}"


def _task_results(results: Path) -> list[Any]:
    """mteb's `TaskResult` of every task result file under an evaluation's results folder."""
    from mteb.results import TaskResult

    return [
        TaskResult.from_disk(path)
        for path in sorted(results.glob("results/*/*/*.json"))
        if path.name != "model_meta.json"
    ]


def read_scores(results: Path) -> dict[str, float]:
    """Main score per task of every mteb result file under `results` (one model, one stage)."""
    return {result.task_name: float(result.get_score()) for result in _task_results(results)}


def subset_key(split: str, subset: str, splits: Iterable[str]) -> str:
    """How a (split, subset) of a task scored on `splits` is named: `subset` when it is the only
    split, else `<split>/<subset>`."""
    return subset if len(set(splits)) == 1 else f"{split}/{subset}"


def read_subset_scores(results: Path) -> SubsetScores:
    """Main score per (task, subset) of every mteb result file under `results` (one model, one
    stage); the mean of a task's subsets over its splits is `read_scores`' task score."""
    scores: SubsetScores = {}
    for result in _task_results(results):
        for split, entries in result.scores.items():
            for entry in entries:
                key = subset_key(split, entry["hf_subset"], result.scores)
                scores.setdefault(result.task_name, {})[key] = float(entry["main_score"])
    return scores


def read_per_query(results: Path) -> PerQuery | None:
    """Per-query nDCG@10 of every (task, subset) an evaluation searched, from the harness's
    per-query files under `results`; None when it wrote none. Each subset's mean is checked
    against mteb's stored main score (a stale per-query file fails in one line).

    Raises:
        ValueError: the folder holds per-query files of several variants, or a subset's mean is
            not mteb's score.
    """
    from harness.compare.analysis import MAIN_SCORE_TOLERANCE
    from harness.compare.variants import find_variants

    variants = [v for v in find_variants(results) if v.units]
    if not variants:
        return None
    if len(variants) > 1:
        names = ", ".join(str(v.folder.relative_to(results)) for v in variants)
        raise ValueError(f"{results} holds per-query files of several variants ({names})")
    variant, stored = variants[0], read_subset_scores(results)
    splits: dict[str, set[str]] = {}
    for task, split, _ in variant.units:
        splits.setdefault(task, set()).add(split)
    per_query: PerQuery = {}
    for unit in sorted(variant.units):
        task, split, subset = unit
        key = subset_key(split, subset, splits[task])
        scores = {str(q): float(s) for q, s in variant.per_query(unit)["per_query"].items()}
        main = stored.get(task, {}).get(key)
        mean = sum(scores.values()) / len(scores) if scores else None
        if main is None or mean is None or abs(mean - main) > MAIN_SCORE_TOLERANCE:
            raise ValueError(
                f"{variant.units[unit]}: mean nDCG@10 {mean} is not mteb's {task} {key} score "
                f"{main} (a stale per-query file?)"
            )
        per_query[(task, key)] = scores
    return per_query


@dataclass(frozen=True)
class SubsetTest:
    """B vs A on one (task, subset): the paired test over its queries (`Paired`: n, means,
    delta = B - A, bootstrap interval low/high, p), Holm's p across the table and whether it is
    at most `ALPHA`."""

    task: str
    subset: str
    paired: Any  # harness.compare.significance.Paired
    p_holm: float
    significant: bool


def paired_subsets(
    a: Mapping[tuple[str, str], Mapping[str, float]],
    b: Mapping[tuple[str, str], Mapping[str, float]],
    *,
    permutations: int = PERMUTATIONS,
    seed: int = SEED,
    alpha: float = ALPHA,
) -> list[SubsetTest]:
    """B vs A per (task, subset) both scored, paired by query id, Holm-corrected across them.

    Args:
        a, b: `{(task, subset): {query id: score}}` (`read_per_query`) of the two stages.

    Raises:
        ValueError: a shared (task, subset) whose query ids differ between A and B.
    """
    from harness.compare.significance import holm, paired_test

    tests = []
    for key in sorted(set(a) & set(b)):
        if set(a[key]) != set(b[key]):
            raise ValueError(f"{key[0]} {key[1]}: the two evaluations scored different queries")
        queries = sorted(a[key])
        tests.append(
            (
                key,
                paired_test(
                    [a[key][q] for q in queries],
                    [b[key][q] for q in queries],
                    permutations=permutations,
                    seed=seed,
                ),
            )
        )
    adjusted = holm([paired.p for _, paired in tests])
    return [
        SubsetTest(task, subset, paired, float(p), bool(p <= alpha))
        for ((task, subset), paired), p in zip(tests, adjusted, strict=True)
    ]
