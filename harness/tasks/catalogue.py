"""Task catalogue read offline from mteb's own metadata and descriptive statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mteb
from mteb.abstasks.abstask import AbsTask

RETRIEVAL_TYPES = ("Retrieval",)
RERANKING_TYPES = ("Reranking", "InstructionReranking")


@dataclass(frozen=True)
class TaskRow:
    """One line of the catalogue: what a researcher checks before launching a run."""

    name: str
    type: str
    main_score: str
    languages: int
    subsets: int
    splits: str
    documents: int | None
    queries: int | None


def benchmark_tasks(benchmark: str, task_types: Sequence[str]) -> list[AbsTask]:
    """Tasks of the mteb benchmark `benchmark` whose type is in `task_types`, in benchmark order."""
    try:
        bench = mteb.get_benchmark(benchmark)
    except (KeyError, ValueError) as err:
        raise ValueError(f"unknown mteb benchmark '{benchmark}': {err}") from None
    return [t for t in bench.tasks if t.metadata.type in task_types]


def named_tasks(names: Sequence[str]) -> list[AbsTask]:
    """mteb tasks by exact name, superseded ones included (MTEB(eng, v2) still lists
    ClimateFEVERHardNegatives & co.); an unknown name fails with one line naming it."""
    known = {t.metadata.name for t in mteb.get_tasks(exclude_superseded=False)}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"unknown mteb task(s) {missing}; see `mteb.get_tasks()` for valid names")
    return list(mteb.get_tasks(tasks=list(names), exclude_superseded=False)) if names else []


_TEXT_STATS = {"num_documents": "documents_text_statistics", "num_queries": "queries_text_statistics"}


def _count(stats: dict, key: str) -> int | None:
    """`key` of one stats block; older mteb stats only keep text lengths: total / average."""
    if stats.get(key) is not None:
        return int(stats[key])
    text = stats.get(_TEXT_STATS[key]) or {}
    if text.get("average_text_length"):
        return round(text["total_text_length"] / text["average_text_length"])
    return None


def _split_counts(split_stats: dict, key: str) -> int | None:
    """Count `key` for one split, summing per-subset statistics when the total is absent."""
    total = _count(split_stats, key)
    if total is not None:
        return total
    per_subset = split_stats.get("hf_subset_descriptive_stats") or {}
    values = [_count(s, key) for s in per_subset.values()]
    return sum(values) if values and None not in values else None


def task_row(task: AbsTask) -> TaskRow:
    """Describe `task` from its metadata and mteb's stored descriptive statistics (no download)."""
    meta = task.metadata
    stats = meta.descriptive_stats or {}
    splits = [s for s in meta.eval_splits if s in stats] or list(meta.eval_splits)

    def total(key: str) -> int | None:
        counts = [_split_counts(stats[s], key) for s in splits if s in stats]
        return sum(counts) if counts and None not in counts else None

    return TaskRow(
        name=meta.name,
        type=meta.type,
        main_score=meta.main_score,
        languages=len(meta.languages),
        subsets=len(meta.hf_subsets),
        splits=",".join(meta.eval_splits),
        documents=total("num_documents"),
        queries=total("num_queries"),
    )
