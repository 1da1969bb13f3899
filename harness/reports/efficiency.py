"""Read `<Task>.efficiency.json` (written by the search layer beside each task result) defensively.

The file may hold its statistics flat or grouped per subset and/or split, e.g.
`{"backend": "exact", "subsets": {"en": {"test": {"avg_nnz_query": 38.2, ...}}}}` or a list of
records with `hf_subset` / `split` keys. Every dict that holds at least one known statistic is a
record; a task's statistic is the mean over its records (mteb's rule for subsets), and keys that
are absent everywhere are simply absent from the summary. The search layer's own shape is read too:
`top_k: {"query": 40, "document": 400}` gives top_k_query/top_k_document, and a record's
`encode: {"documents": {"tokens": .., "seconds": ..}, "queries": {..}}` gives encode_tokens_per_s
(all tokens over all seconds of that record) when the record has no such key.
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


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _records(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in `node` (recursively) that carries at least one statistic of `STATS`."""
    if isinstance(node, dict):
        if any(finite_number(node.get(k)) is not None for k in STATS):
            yield node
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from _records(value)
    elif isinstance(node, list):
        for value in node:
            yield from _records(value)


def _encode_rate(record: dict[str, Any]) -> float | None:
    """Tokens per second over both sides of a record's `encode` summary (None without one)."""
    sides = record.get("encode")
    sides = [s for s in sides.values() if isinstance(s, dict)] if isinstance(sides, dict) else []
    tokens = [finite_number(s.get("tokens")) for s in sides]
    seconds = [finite_number(s.get("seconds")) for s in sides]
    if not sides or None in tokens or None in seconds or sum(seconds) <= 0:
        return None
    return sum(tokens) / sum(seconds)


def _stat(record: dict[str, Any], key: str) -> float | None:
    """Statistic `key` of one record: its own number, else (encoding speed) derived from `encode`."""
    value = finite_number(record.get(key))
    if value is None and key == "encode_tokens_per_s":
        return _encode_rate(record)
    return value


def _first(node: Any, key: str, mapping: bool = False) -> Any:
    """The first value stored under `key` anywhere in `node` (breadth-first) that is a dict when
    `mapping`, else a scalar; None when there is none."""
    queue = [node]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            if key in item and isinstance(item[key], dict) == mapping and not isinstance(item[key], list):
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
        values = [v for v in (_stat(r, key) for r in records) if v is not None]
        if values:
            summary[key] = sum(values) / len(values)
    top_k = _first(data, "top_k", mapping=True) or {}
    for key in SCALARS:
        value = _first(data, key)
        if value is None and key.startswith("top_k_"):
            value = top_k.get(key.removeprefix("top_k_"))
        if value is not None:
            summary[key] = value
    return summary
