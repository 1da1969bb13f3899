"""Read `<Task>.efficiency.json` (written by the search layer beside each task result) defensively.

The file may hold its statistics flat or grouped per subset and/or split, e.g.
`{"backend": "exact", "subsets": {"en": {"test": {"avg_nnz_query": 38.2, ...}}}}` or a list of
records with `hf_subset` / `split` keys. Every dict that holds at least one known statistic is a
record; a task's statistic is the mean over its records (mteb's rule for subsets), and keys that
are absent everywhere are simply absent from the summary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATS = (
    "avg_nnz_query", "avg_nnz_document", "flops", "index_bytes", "encode_tokens_per_s",
    "search_ms_per_query",
)
SCALARS = ("backend", "top_k_query", "top_k_document")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _records(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in `node` (recursively) that carries at least one statistic of `STATS`."""
    if isinstance(node, dict):
        if any(_number(node.get(k)) is not None for k in STATS):
            yield node
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from _records(value)
    elif isinstance(node, list):
        for value in node:
            yield from _records(value)


def _first_scalar(node: Any, key: str) -> Any:
    """The first value stored under `key` anywhere in `node` (breadth-first), else None."""
    queue = [node]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            if key in item and not isinstance(item[key], (dict, list)):
                return item[key]
            queue.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            queue.extend(item)
    return None


def read_efficiency(path: Path) -> dict[str, Any]:
    """Per-task efficiency summary: mean of each statistic over records, plus backend/top-k.

    Returns {} when the file is missing; raises ValueError (one line) when it is not JSON.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    summary: dict[str, Any] = {}
    records = list(_records(data))
    for key in STATS:
        values = [v for v in (_number(r.get(key)) for r in records) if v is not None]
        if values:
            summary[key] = sum(values) / len(values)
    for key in SCALARS:
        value = _first_scalar(data, key)
        if value is not None:
            summary[key] = value
    return summary
