"""Per-query output for outside tools: a gzipped TREC run (top-100 per query) and the per-query
nDCG@10 of every (task, split, subset) a run searches, beside the task results.

Files, in `<model>/<revision>/harness/queries/<Task>/<split>/`:

- `<subset>.trec.gz`: `qid Q0 docid rank score run_id`, the top `DEPTH` documents per query.
- `<subset>.ndcg_at_10.json`: `{"per_query": {qid: nDCG@10}, "mean": …, "n_queries": …, …}`.

`RunFileWriter` wraps the model mteb evaluates (any mteb `SearchProtocol`: the harness's sparse
search model or mteb's BM25) and writes both right after each `search`, while the task's qrels are
loaded. The per-query values are mteb's own computation, repeated on the ranking mteb scores:

- Ranking: what `search` returned, minus a document whose id equals the query id when the task
  sets `ignore_identical_ids` (mteb removes such self-matches before scoring), minus each query's
  first result when it sets `skip_first_result`.
- Metric: pytrec_eval's `ndcg_cut.10` (mteb's scorer), gain = the qrels grade (every grade > 0
  counts; relevance thresholds only matter for binary measures), qrels = the split's
  `relevant_docs` after mteb dropped queries without any judgment.
- Order: pytrec_eval (trec_eval) ranks by score descending, ties by doc id descending, whatever
  the rank column says. The file is written in that order and cut at `DEPTH`, so its top 10 is
  exactly the top 10 mteb scored from its full top-1000; scores are written with `repr`
  (shortest round-trip float), so ties survive the text file.
- Mean: a query with no retrieved document has no line in the TREC file, yet pytrec_eval scores
  its empty ranking 0 and mteb averages over every searched query (= every judged query): average
  the per-query file, or score the TREC file over all judged queries with missing ones as 0
  (trec_eval `-c`). mteb stores the mean rounded to 5 decimals.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytrec_eval
from mteb.abstasks import AbsTask
from mteb.abstasks.aggregated_task import AbsTaskAggregate

from harness.results import RunLog, atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

#: Documents kept per query in the TREC run file.
DEPTH = 100
#: pytrec_eval's name of the per-query measure (mteb's main score of retrieval tasks).
MEASURE = "ndcg_cut_10"
QUERIES_DIR = "queries"

Ranking = Mapping[str, Mapping[str, float]]
"""{query id: {doc id: score}}, mteb's retrieval output."""


def scored_ranking(
    results: Ranking, *, ignore_identical_ids: bool, skip_first_result: bool
) -> dict[str, dict[str, float]]:
    """The ranking mteb scores from `results` (a new dict; `results` is left as it is):
    self-matches dropped under `ignore_identical_ids`, then each query's top result dropped under
    `skip_first_result` (mteb's stable sort by score, ties in insertion order)."""
    out = {}
    for qid, docs in results.items():
        kept = {d: s for d, s in docs.items() if not (ignore_identical_ids and d == qid)}
        if skip_first_result:
            kept = dict(sorted(kept.items(), key=lambda x: x[1], reverse=True)[1:])
        out[qid] = kept
    return out


def trec_order(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """(doc id, score) in trec_eval's order: score descending, ties by doc id descending."""
    return sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)


def trec_lines(ranking: Ranking, tag: str, depth: int = DEPTH) -> str:
    """TREC run text, `qid Q0 docid rank score tag`, the first `depth` documents per query.

    Raises:
        ValueError: an id contains whitespace (the TREC format cannot hold it).
    """
    lines = []
    for qid, docs in ranking.items():
        for rank, (did, score) in enumerate(trec_order(docs)[:depth], start=1):
            for value in (qid, did):
                if not value or any(c.isspace() for c in value):
                    raise ValueError(f"id {value!r} cannot be written to a TREC run file")
            lines.append(f"{qid} Q0 {did} {rank} {score!r} {tag}\n")
    return "".join(lines)


def per_query_ndcg(qrels: Mapping[str, Mapping[str, int]], ranking: Ranking) -> dict[str, float]:
    """pytrec_eval's nDCG@10 per query, as mteb computes it (queries without qrels are left out)."""
    evaluator = pytrec_eval.RelevanceEvaluator(
        {q: dict(d) for q, d in qrels.items()}, {"ndcg_cut.10"}
    )
    scores = evaluator.evaluate({q: dict(d) for q, d in ranking.items()})
    return {qid: values[MEASURE] for qid, values in scores.items()}


def split_data(task: AbsTask, subset: str, split: str) -> Mapping[str, Any]:
    """The loaded `RetrievalSplitData` mteb is evaluating (as `AbsTask.evaluate` looks it up)."""
    dataset = task.dataset
    if subset not in dataset and subset == "default":
        return dataset[split]
    return dataset[subset][split]


def _by_name(tasks: Iterable[AbsTask]) -> dict[str, AbsTask]:
    """Task name -> task, the sub-tasks of aggregate tasks included."""
    found: dict[str, AbsTask] = {}
    for task in tasks:
        found[task.metadata.name] = task
        if isinstance(task, AbsTaskAggregate):
            found.update(_by_name(task.metadata.tasks))
    return found


class RunFileWriter:
    """mteb `SearchProtocol` around another one: passes `index` and `search` on and writes the run
    file and per-query nDCG@10 of each searched (task, split, subset) under `folder`.

    Args:
        inner: the model mteb would evaluate (a `SearchProtocol`).
        folder: `<model>/<revision>/harness/queries`.
        tasks: the tasks being evaluated (the same objects mteb loads data into).
        run: this run's log; each search is added to its `computed` set, its id tags the files.
        depth: documents per query in the TREC file.
    """

    def __init__(self, inner: Any, folder: Path, tasks: Iterable[AbsTask], run: RunLog,
                 depth: int = DEPTH):
        self.inner = inner
        self.folder = Path(folder)
        self.tasks = _by_name(tasks)
        self.run = run
        self.depth = depth

    @property
    def mteb_model_meta(self) -> Any:
        """The wrapped model's ModelMeta (results are keyed by it)."""
        return self.inner.mteb_model_meta

    def index(self, corpus: Any, **kwargs: Any) -> None:
        """`inner.index`, unchanged."""
        self.inner.index(corpus, **kwargs)

    def search(self, queries: Any, **kwargs: Any) -> dict[str, dict[str, float]]:
        """`inner.search`; its output goes back to mteb untouched, after the files are written."""
        results = self.inner.search(queries, **kwargs)
        meta, split, subset = kwargs["task_metadata"], kwargs["hf_split"], kwargs["hf_subset"]
        self.run.computed.add((meta.name, split, subset))
        self.write(meta.name, split, subset, results)
        return results

    def paths(self, task_name: str, split: str, subset: str) -> tuple[Path, Path]:
        """(TREC run file, per-query nDCG file) of one (task, split, subset)."""
        base = self.folder / task_name / split
        return base / f"{subset}.trec.gz", base / f"{subset}.ndcg_at_10.json"

    def write(self, task_name: str, split: str, subset: str, results: Ranking) -> None:
        """Write the two files of one searched (task, split, subset) (atomically)."""
        task = self.tasks.get(task_name)
        if task is None:
            raise RuntimeError(f"searched task {task_name!r} is not among the tasks being evaluated")
        flags = {"ignore_identical_ids": bool(getattr(task, "ignore_identical_ids", False)),
                 "skip_first_result": bool(getattr(task, "skip_first_result", False))}
        ranking = scored_ranking(results, **flags)
        per_query = per_query_ndcg(split_data(task, subset, split)["relevant_docs"], ranking)
        run_path, ndcg_path = self.paths(task_name, split, subset)
        try:
            text = trec_lines(ranking, self.run.run_id, self.depth)
        except ValueError as err:
            logger.warning("%s %s/%s: no TREC run file (%s)", task_name, split, subset, err)
            text = None
        if text is not None:
            atomic_write_bytes(run_path, gzip.compress(text.encode("utf-8"), mtime=0))
        record = {
            "task": task_name, "split": split, "subset": subset, "run_id": self.run.run_id,
            "measure": MEASURE, "depth": self.depth, "trec_file": run_path.name if text else None,
            **flags, "n_queries": len(per_query),
            "mean": sum(per_query.values()) / len(per_query) if per_query else None,
            "per_query": per_query,
        }
        atomic_write_text(ndcg_path, json.dumps(record, indent=1) + "\n")
