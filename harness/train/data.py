"""Training data (`cfg.data`, conf/data/*.yaml) -> a `datasets.Dataset` the sparse trainer reads.

Output columns, in this order (the losses read them by position): `query`, `positive`,
`negative_1` .. `negative_k`, and `label` (teacher scores `[1 + k]` of positive and negatives)
when the source has teacher scores.

Sources:
- `hub`: a dataset id (`datasets.load_dataset(id, subset, split=...)`), optionally with id columns
  resolved through other subsets of the same dataset (`lookups`, sentence-transformers'
  `resolve_ids`); offline it needs `data.path` (a local copy), else HubUnavailableError.
- `jsonl`: `data.path`, one JSON object a line: `{"query", "positive", "negatives"?, "scores"?}`
  (`scores`: teacher scores of [positive, *negatives]); other field names via `data.columns`.
- `embedded`: (query, positive) pairs of `dataset_build` text, disjoint from the embedded
  evaluation task (`harness.tasks.local_embedded.embedded_training_pairs`).

`data.columns` maps roles to field names: `query`, `positive`, `negatives` (list), `scores` (list),
or `documents` (list: positive first, then negatives) instead of `positive`/`negatives`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from harness.offline import require_local_or_hub

logger = logging.getLogger(__name__)

SOURCES = ("hub", "jsonl", "embedded")
DEFAULT_COLUMNS = {"query": "query", "positive": "positive", "negatives": "negatives", "scores": "scores"}
LABEL = "label"


def _columns(data_cfg: Mapping) -> dict[str, str | None]:
    columns = dict(DEFAULT_COLUMNS)
    columns.update(dict(data_cfg.get("columns") or {}))
    if columns.get("documents"):
        columns["positive"] = columns["negatives"] = None
    return columns


def standardise(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str | None], negatives: int,
                source: str) -> Dataset:
    """Rows in any layout -> the trainer's columns, keeping rows with at least `negatives` negatives.

    Raises ValueError (one line, naming `source`) when a required field is missing, when teacher
    scores do not cover positive + negatives, or when no row has enough negatives.
    """
    if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 0:
        raise ValueError(f"data.negatives must be an integer >= 0, got {negatives!r}")
    if not rows:
        raise ValueError(f"{source}: no training rows")
    scores_key = columns.get("scores")
    has_scores = bool(scores_key) and scores_key in rows[0]
    if has_scores and negatives == 0:
        raise ValueError(
            f"{source} has teacher scores: KL distillation needs data.negatives >= 1 (paper: 8)"
        )
    out: dict[str, list] = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(negatives)}}
    if has_scores:
        out[LABEL] = []
    short = 0
    for i, row in enumerate(rows):
        try:
            query = row[columns["query"]]
            if columns.get("documents"):
                docs = list(row[columns["documents"]])
                positive, negs = docs[0], docs[1:]
            else:
                positive = row[columns["positive"]]
                negs = list(row.get(columns["negatives"]) or []) if columns.get("negatives") else []
        except (KeyError, IndexError) as err:
            raise ValueError(f"{source}: row {i} lacks field {err} (set data.columns)") from None
        if len(negs) < negatives:
            short += 1
            continue
        out["query"].append(str(query))
        out["positive"].append(str(positive))
        for j in range(negatives):
            out[f"negative_{j + 1}"].append(str(negs[j]))
        if has_scores:
            scores = [float(s) for s in row[scores_key]]
            if len(scores) < 1 + negatives:
                raise ValueError(
                    f"{source}: row {i} has {len(scores)} teacher scores, needs {1 + negatives} "
                    "(positive + data.negatives)"
                )
            out[LABEL].append(scores[: 1 + negatives])
    if not out["query"]:
        raise ValueError(f"{source}: no row has data.negatives={negatives} negatives")
    if short:
        logger.warning("%s: dropped %d of %d rows with fewer than %d negatives", source, short, len(rows), negatives)
    return Dataset.from_dict(out)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from harness.tasks.local_data import read_jsonl

    return [row for _, row in read_jsonl(path)]


def _local_rows(path: str, n: int | None) -> list[dict[str, Any]]:
    """Rows of a local copy: a JSONL file or a `Dataset.save_to_disk` folder."""
    local = Path(path).expanduser()
    if local.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(local))
        return list(dataset.select(range(min(n, len(dataset)))) if n else dataset)
    if not local.is_file():
        raise FileNotFoundError(f"data.path={path}: no such file or folder")
    rows = _read_jsonl(local)
    return rows[:n] if n else rows


def _hub_rows(data_cfg: Mapping, n: int | None, max_list: int) -> list[dict[str, Any]]:
    """Rows of hub dataset `data.id`, id columns resolved through `data.lookups` subsets."""
    from datasets import load_dataset

    hub_id = require_local_or_hub(str(data_cfg["id"]), None, "data.path", "dataset")
    split = data_cfg.get("split") or "train"
    dataset = load_dataset(hub_id, data_cfg.get("subset"), split=split)
    if n:
        dataset = dataset.select(range(min(n, len(dataset))))
    lookups = dict(data_cfg.get("lookups") or {})
    if lookups:
        from sentence_transformers.util import resolve_ids

        tables = {col: load_dataset(hub_id, subset, split=split) for col, subset in lookups.items()}
        transform = resolve_ids(tables, max_list_length=max_list, output_format="lists")
        dataset = dataset.with_format(None).map(transform, batched=True, remove_columns=dataset.column_names)
    return list(dataset)


def load_training_data(data_cfg: Mapping) -> Dataset:
    """The training `Dataset` of `data_cfg`, `data.negatives` hard negatives per query (see module doc)."""
    source = data_cfg.get("source")
    negatives = data_cfg.get("negatives", 0)
    if source not in SOURCES:
        raise ValueError(f"data.source '{source}' unknown; valid: {', '.join(SOURCES)}")
    n = data_cfg.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"data.n must be a positive integer or null, got {n!r}")
    name = f"data '{data_cfg.get('name', source)}'"
    if source == "embedded":
        from harness.tasks.local_embedded import embedded_training_pairs

        if negatives:
            raise ValueError(
                f"{name} has no hard negatives (in-batch only) but {negatives} were asked for: "
                "use train=smoke (the data's own negatives) or train.negatives=0"
            )
        languages = data_cfg.get("languages")
        pairs = embedded_training_pairs(list(languages) if languages else None, n)
        return standardise([{"query": q, "positive": p} for q, p in pairs], DEFAULT_COLUMNS, 0, name)
    path = data_cfg.get("path")
    if source == "jsonl" and not path:
        raise ValueError(f"{name}: data.source=jsonl needs data.path=/path/to/train.jsonl")
    rows = _local_rows(path, n) if path else _hub_rows(data_cfg, n, 1 + negatives)
    return standardise(rows, _columns(data_cfg), negatives, name)
