"""Tasks of a benchmark config: mteb tasks by benchmark/type/name plus local offline tasks."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from mteb.abstasks.abstask import AbsTask

from harness.paths import shared_data_root
from harness.tasks.availability import DatasetNotCachedError, check_datasets_cached
from harness.tasks.catalogue import (
    RERANKING_TYPES,
    RETRIEVAL_TYPES,
    TaskRow,
    benchmark_tasks,
    named_tasks,
    task_row,
)

__all__ = ["DatasetNotCachedError", "TaskRow", "check_datasets_cached", "load_tasks", "resolve_data_root", "select_mteb_tasks", "task_row"]

logger = logging.getLogger(__name__)


def resolve_data_root(value: str | None) -> Path | None:
    """`auto` → the shared data folder if present; a path → that folder (must exist); null → None."""
    if value in (None, "", "null"):
        return None
    if value == "auto":
        return shared_data_root()
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"benchmark.data_root={value}: no such folder")
    return path


def select_mteb_tasks(bench: Mapping) -> list[AbsTask]:
    """The mteb tasks a benchmark config names: by benchmark + type, then explicit names."""
    types = list(bench.get("task_types") or RETRIEVAL_TYPES)
    if bench.get("reranking"):
        types += [t for t in RERANKING_TYPES if t not in types]
    tasks = benchmark_tasks(bench["mteb_benchmark"], types) if bench.get("mteb_benchmark") else []
    known = {t.metadata.name for t in tasks}
    tasks += [t for t in named_tasks(list(bench.get("tasks") or [])) if t.metadata.name not in known]
    return tasks


def _local_task(entry: str | Mapping, root: Path | None) -> AbsTask:
    """A local task from a config entry: a registry name, or {name, subsets?, **builder options}."""
    from harness.tasks import local

    if isinstance(entry, str):
        return local.get_local_task(entry, root)
    options = {k: v for k, v in dict(entry).items() if k not in ("name", "subsets")}
    task = local.get_local_task(entry["name"], root, **options)
    subsets = list(entry.get("subsets") or [])
    if subsets:
        unknown = [s for s in subsets if s not in task.metadata.hf_subsets]
        if unknown:
            raise ValueError(f"{entry['name']}: unknown subsets {unknown}; valid: {task.metadata.hf_subsets}")
        task = task.filter_languages(None, hf_subsets=subsets)
    return task


def _entry_name(entry: str | Mapping) -> str:
    return entry if isinstance(entry, str) else str(entry["name"])


def load_tasks(bench: Mapping, only: Sequence[str] | None = None) -> list[AbsTask]:
    """Every task of benchmark config `bench` (see conf/benchmark/*.yaml), optionally filtered.

    Local tasks are built here (offline); hub tasks load their data later, inside mteb.evaluate.
    A sliced task (`slice_queries`) is renamed `<name> (slice_<n>q_seed0)` so its results are
    never mistaken for the full task's.
    """
    from harness.tasks import local
    from harness.tasks.local_beir import beir_folders

    folders = beir_folders(bench)  # malformed entries fail here, before any task is built
    tasks = select_mteb_tasks(bench)
    tasks += [_local_task(entry, None) for entry in bench.get("local_tasks") or []]
    data_tasks = list(bench.get("data_tasks") or [])
    if data_tasks:
        root = resolve_data_root(bench.get("data_root"))
        if root is None:
            names = ", ".join(_entry_name(e) for e in data_tasks)
            logger.warning("no data root (set HARNESS_DATA_ROOT): skipping %s", names)
        else:
            tasks += [_local_task(entry, root) for entry in data_tasks]
    tasks += [local.beir_task(f.path, query_language=f.query_language,
                              document_language=f.document_language) for f in folders]
    if only:
        names = {t.metadata.name for t in tasks}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"run.tasks names {unknown} not in benchmark '{bench['name']}'; valid: {sorted(names)}")
        tasks = [t for t in tasks if t.metadata.name in set(only)]
    if bench.get("slice_queries"):
        n_docs = bench.get("slice_docs")
        tasks = [
            local.slice_task(t, int(bench["slice_queries"]), seed=0,
                             n_docs=int(n_docs) if n_docs else None, rename=True)
            for t in tasks
        ]
    return tasks
