"""Local retrieval tasks built offline: registry, BEIR folders, deterministic slices.

- `LOCAL_TASKS` / `get_local_task(name, data_root)`: the embedded `EmbeddedMultilingualRetrieval`
  (text installed with `dataset_build`) and the `Local*` versions of MTEB tasks read from the shared
  data folder (`$HARNESS_DATA_ROOT` or the benchmark's `data_root`).
- `beir_task(folder)`: any BEIR folder becomes `LocalBEIR-<folder name>` (languages of its queries
  and documents from the benchmark entry, `harness.tasks.local_beir`).
- `slice_task(task, n_queries, seed)`: a smaller copy of any retrieval task for smoke runs.
Every task is an mteb `AbsTaskRetrieval` whose data is built (and validated) when it is created.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval

from harness.tasks.local_beir import DEFAULT_LANGUAGE, beir_task_class
from harness.tasks.local_data import LocalDataError, LocalRetrievalTask, make_task_class
from harness.tasks.local_embedded import EMBEDDED_NAME, embedded_task, embedded_training_pairs
from harness.tasks.local_sources import (
    belebele_task,
    cranfield_task,
    legalbench_task,
    vaswani_task,
    xquad_task,
)

__all__ = [
    "LOCAL_TASKS",
    "LocalDataError",
    "LocalTaskSpec",
    "beir_task",
    "embedded_training_pairs",
    "get_local_task",
    "slice_task",
]


@dataclass(frozen=True)
class LocalTaskSpec:
    """A registered local task: `folder` under the data root and `factory(folder)` returning its
    task class, or `folder=None` and `factory(**options)` for tasks that need no data root."""

    folder: str | None
    factory: Callable[..., type[LocalRetrievalTask]]
    description: str


LOCAL_TASKS: dict[str, LocalTaskSpec] = {
    EMBEDDED_NAME: LocalTaskSpec(
        None, embedded_task, "dataset_build text: first sentence → rest of passage, 8 languages"
    ),
    "LocalXQuADRetrieval": LocalTaskSpec(
        "xquad", xquad_task, "XQuAD question → paragraph, per language and cross-lingual"
    ),
    "LocalBelebeleRetrieval": LocalTaskSpec(
        "belebele", belebele_task, "Belebele question → passage, eng/deu and cross-lingual"
    ),
    "LocalLegalBenchCorporateLobbying": LocalTaskSpec(
        "legalbench_corporate_lobbying", legalbench_task, "bill title → bill summary"
    ),
    "LocalCranfield": LocalTaskSpec(
        "cranfield", cranfield_task, "Cranfield 1400, graded (gain = 5 - grade)"
    ),
    "LocalVaswani": LocalTaskSpec(
        "vaswani_npl", vaswani_task, "NPL physics abstracts, binary qrels"
    ),
}


def get_local_task(name: str, data_root: Path | None, **options: Any) -> AbsTaskRetrieval:
    """The local task `name`, built and validated now. Tasks read from the shared data need
    `data_root` (the folder holding `xquad/`, `belebele/`, …); `options` go to the embedded task
    (`languages`, `docs_per_language`)."""
    spec = LOCAL_TASKS.get(name)
    if spec is None:
        raise ValueError(f"unknown local task '{name}'; valid: {', '.join(LOCAL_TASKS)}")
    if spec.folder is None:
        return spec.factory(**options)()
    if options:
        raise ValueError(f"local task '{name}' takes no options, got {sorted(options)}")
    if data_root is None:
        raise LocalDataError(
            f"local task '{name}' reads <data root>/{spec.folder}: set HARNESS_DATA_ROOT or the "
            "benchmark's data_root"
        )
    if not Path(data_root).is_dir():
        raise LocalDataError(f"local task '{name}': data root {data_root} is not a folder")
    return spec.factory(Path(data_root) / spec.folder)()


def beir_task(
    folder: Path,
    name: str | None = None,
    query_language: str = DEFAULT_LANGUAGE,
    document_language: str = DEFAULT_LANGUAGE,
) -> AbsTaskRetrieval:
    """A BEIR-format folder as a task named `LocalBEIR-<folder name>` (or `name`), its queries in
    `query_language` and documents in `document_language` (mteb tags; cross-lingual when they
    differ)."""
    return beir_task_class(Path(folder), name, query_language=query_language,
                           document_language=document_language)()


def _slice_split(
    split: dict[str, Any], n_queries: int, n_docs: int, seed: int
) -> dict[str, Any] | None:
    """Keep `n_queries` judged queries (seeded sample), every document they judge (and their
    top-ranked candidates), plus seeded distractors up to `n_docs` documents; None if nothing drops."""
    qrels = split["relevant_docs"]
    queries: Dataset = split["queries"]
    corpus: Dataset = split["corpus"]
    judged = sorted(qid for qid in queries["id"] if qrels.get(qid))
    if len(judged) <= n_queries and len(corpus) <= n_docs:
        return None
    kept = set(random.Random(seed).sample(judged, min(n_queries, len(judged))))
    top_ranked = split.get("top_ranked")
    needed = {did for qid in kept for did in qrels[qid]}
    if top_ranked:
        needed |= {did for qid in kept for did in top_ranked.get(qid, [])}
    others = sorted(set(corpus["id"]) - needed)
    needed |= set(
        random.Random(seed).sample(others, max(0, min(len(others), n_docs - len(needed))))
    )
    return {
        "corpus": corpus.select([i for i, did in enumerate(corpus["id"]) if did in needed]),
        "queries": queries.select([i for i, qid in enumerate(queries["id"]) if qid in kept]),
        "relevant_docs": {qid: dict(qrels[qid]) for qid in queries["id"] if qid in kept},
        "top_ranked": {qid: list(top_ranked[qid]) for qid in kept if qid in top_ranked}
        if top_ranked
        else None,
    }


def slice_task(
    task: AbsTaskRetrieval,
    n_queries: int,
    seed: int = 0,
    n_docs: int | None = None,
    rename: bool = False,
) -> AbsTaskRetrieval:
    """A deterministic smaller copy of retrieval task `task` for smoke runs.

    Per (subset, split): `n_queries` of the judged queries (sampled with `seed`), all documents
    their qrels name, and distractors sampled with `seed` up to `n_docs` documents (default
    10 × n_queries). The slice is recorded in `metadata.dataset["revision"]`
    (`<revision>+slice_<n>q_seed<seed>`, stored in every mteb result file) and, with `rename`,
    in the name too (`<name> (slice_<n>q_seed<seed>)`, as mteb names filtered tasks). `task`
    itself is returned when the slice would keep everything. The task's data is loaded (from the
    hub for hub tasks).
    """
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1:
        raise ValueError(f"slice: n_queries must be a positive integer, got {n_queries!r}")
    n_docs = 10 * n_queries if n_docs is None else n_docs
    if not task.data_loaded:
        task.load_data()
    task.convert_v1_dataset_format_to_v2(num_proc=None)
    sliced = {
        subset: {
            split: _slice_split(task.dataset[subset][split], n_queries, n_docs, seed)
            for split in task.eval_splits
        }
        for subset in task.hf_subsets
    }
    if all(s is None for splits in sliced.values() for s in splits.values()):
        return task
    data = {
        subset: {
            split: s if s is not None else task.dataset[subset][split]
            for split, s in splits.items()
        }
        for subset, splits in sliced.items()
    }
    meta = task.metadata
    tag = f"slice_{n_queries}q_seed{seed}" + ("" if n_docs == 10 * n_queries else f"_{n_docs}d")
    update: dict[str, Any] = {
        "description": f"{meta.description} [{tag}]",
        "eval_langs": {s: meta.eval_langs[s] for s in task.hf_subsets}
        if meta.is_multilingual
        else meta.eval_langs,
        "eval_splits": list(task.eval_splits),
        "dataset": {**meta.dataset, "revision": f"{meta.dataset['revision']}+{tag}"},
    }
    if rename:
        update.update(name=f"{meta.name} ({tag})", adapted_from=[meta.name])
    sliced_meta = meta.model_copy(update=update)
    return make_task_class(sliced_meta, lambda: data)()
