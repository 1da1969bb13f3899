"""Efficiency statistics of a sparse run and their JSON file beside the task results.

`<stats_dir>/<task_name>.efficiency.json` holds `{"task_name": ..., "entries": [...]}` with one
entry per (subset, split); writing an entry replaces the previous one of the same pair.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp


def activation_rates(matrix: sp.csr_matrix) -> np.ndarray:
    """p_j = fraction of rows of `matrix` `[n, dim]` with dimension j active, `[dim]` float64."""
    if matrix.shape[0] == 0:
        return np.zeros(matrix.shape[1])
    return np.bincount(matrix.indices, minlength=matrix.shape[1]) / matrix.shape[0]


def flops(queries: sp.csr_matrix, docs: sp.csr_matrix) -> float:
    """SPLADE's FLOPS: expected multiplications per (query, doc) pair, sum_j p_j^q p_j^d."""
    return float(activation_rates(queries) @ activation_rates(docs))


def avg_nnz(matrix: sp.csr_matrix) -> float:
    """Mean number of active dimensions per row."""
    return float(matrix.nnz / matrix.shape[0]) if matrix.shape[0] else 0.0


def encode_summary(n_texts: int, n_tokens: int, seconds: float, from_cache: bool) -> dict[str, Any]:
    """Cost of encoding one side (documents or queries); cached runs report the original cost."""
    return {
        "n_texts": n_texts,
        "tokens": n_tokens,
        "seconds": seconds,
        "tokens_per_second": n_tokens / seconds if seconds > 0 else None,
        "from_cache": from_cache,
    }


def write_entry(stats_dir: Path, task_name: str, entry: Mapping[str, Any]) -> Path:
    """Insert or replace the (subset, split) entry of `task_name` atomically; returns the file."""
    stats_dir = Path(stats_dir)
    stats_dir.mkdir(parents=True, exist_ok=True)
    path = stats_dir / f"{task_name}.efficiency.json"
    payload: dict[str, Any] = {"task_name": task_name, "entries": []}
    if path.exists():
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}); remove it to start afresh"
            ) from err
    kept = [
        e
        for e in payload.get("entries", [])
        if (e.get("subset"), e.get("split")) != (entry["subset"], entry["split"])
    ]
    payload["entries"] = sorted([*kept, dict(entry)], key=lambda e: (e["subset"], e["split"]))
    fd, tmp = tempfile.mkstemp(dir=stats_dir, prefix=f".{task_name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
