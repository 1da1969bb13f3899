"""Search cost at scale, latent vs vocabulary: the benchmark's measurement beside the paper's figures.

Measured rows come from `results/bench/search.json` (written by `benchmarks/bench_search.py`, key
`latent_vs_vocabulary`: per model its shape, FLOPS, postings per query and, per exact kernel, a
dict with `cpu_ms_per_query`); every kernel the file holds is a row, whatever its name. Paper rows
and notes come from `results/reference/paper_efficiency.csv` (`load_paper_efficiency`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.paths import REPO_ROOT
from harness.reports.collect import load_json
from harness.reports.efficiency import finite_number
from harness.reports.reference import EFFICIENCY_METRICS
from harness.reports.tables import Cell, Table
from harness.reports.variants import config_space, top_k_text

SEARCH_BENCH = REPO_ROOT / "results" / "bench" / "search.json"
TITLE = "Search cost at scale, latent vs vocabulary"
#: bench_search.py's kernel keys as the table names them; another key is shown as it is.
KERNELS = {"taat": "exact, term-at-a-time", "maxscore": "exact, MaxScore",
           "windowed": "exact, windowed, block-max top-k"}
#: The paper metric shown as a row; other paper figures become notes.
SPEED = "search_ms_per_query"
HEADER = ["Model", "Space", "Source", "Search", "Docs", "Dim", "Top-k (q/d)", "nnz document",
          "nnz query", "FLOPS", "Postings/query", "ms/query"]


def _cell(value: Any, kind: str, digits: int) -> Cell:
    """A number cell ("–" when `value` is not a finite number)."""
    return Cell(finite_number(value), kind=kind, digits=digits)


def _measured_rows(model: str, entry: dict[str, Any], top_k: dict[str, Any]) -> list[list[Cell]]:
    """One row per kernel of a `latent_vs_vocabulary` entry (a dict with `cpu_ms_per_query`)."""
    shape = [Cell(text=model), Cell(text=config_space(model) or "?"), Cell(text="measured")]
    numbers = [_cell(entry.get("docs"), "measured", 0), _cell(entry.get("dim"), "measured", 0),
               Cell(text=top_k_text(top_k.get("query"), top_k.get("document"))),
               _cell(entry.get("avg_nnz_doc"), "measured", 1),
               _cell(entry.get("avg_nnz_query"), "measured", 1),
               _cell(entry.get("flops"), "measured", 2),
               _cell(entry.get("postings_per_query"), "measured", 0)]
    return [[*shape, Cell(text=KERNELS.get(kernel, kernel)), *numbers,
             _cell(timing["cpu_ms_per_query"], "measured", 3)]
            for kernel, timing in entry.items()
            if isinstance(timing, dict) and finite_number(timing.get("cpu_ms_per_query")) is not None]


def _given(value: float) -> int:
    """Decimals that show a paper number as the paper gives it (5 -> 0, 0.2 -> 1)."""
    return 0 if float(value).is_integer() else 1


def _optional(value: float) -> int | None:
    """A whole number from the paper CSV, None where the paper does not say (NaN)."""
    return None if math.isnan(value) else int(value)


def _paper_row(row: pd.Series) -> list[Cell]:
    """A paper search-speed figure as a row (its qualifier, e.g. "about", kept)."""
    search = ", ".join(x for x in (row["search"], row["corpus"]) if x)
    top_k = top_k_text(_optional(row["top_k_query"]), _optional(row["top_k_document"]))
    empty = [Cell(kind="paper") for _ in range(4)]
    return [Cell(text=row["model"]), Cell(text=config_space(row["model"]) or "–"), Cell(text="paper"),
            Cell(text=search), _cell(_optional(row["documents"]), "paper", 0), Cell(kind="paper"),
            Cell(text=top_k), *empty,
            Cell(row["value"], kind="paper", digits=_given(row["value"]), qualifier=row["qualifier"])]


def _paper_note(row: pd.Series) -> str:
    """A paper figure that is not a search speed, as a sentence."""
    what, unit = EFFICIENCY_METRICS[row["metric"]]
    value = " ".join(filter(None, (row["qualifier"], f"{row['value']:.{_given(row['value'])}f}{unit}")))
    return f"Paper, {row['model']} ({row['note']}): {what} {value}."


def search_cost_table(bench_path: Path, paper: pd.DataFrame) -> Table | None:
    """The measured `latent_vs_vocabulary` kernels of `bench_path` beside the paper's figures
    (`load_paper_efficiency` rows). None when the file or its `latent_vs_vocabulary` is missing;
    a one-line error when it is not a JSON object."""
    bench_path = Path(bench_path)
    bench = load_json(bench_path) or {}
    models = bench.get("latent_vs_vocabulary")
    if not isinstance(models, dict) or not models:
        return None
    profiles = bench.get("profiles") if isinstance(bench.get("profiles"), dict) else {}
    out = Table(key="search_cost", header=HEADER,
                title=f"{TITLE}: CPU ms/query at equal top-k, beside the paper")
    for model, entry in models.items():
        top_k = (profiles.get(model) or {}).get("top_k") or {}
        out.rows += _measured_rows(model, entry, top_k) if isinstance(entry, dict) else []
    speed = paper["metric"] == SPEED
    out.rows += [_paper_row(row) for _, row in paper[speed].iterrows()]
    command = f"`{bench['command']}`" if bench.get("command") else "a command not recorded"
    out.note(f"Measured rows: `{bench_path.name}` key `latent_vs_vocabulary`, written by {command}; "
             "documents and queries are generated to match each model's measured vector profile; "
             "top-k from its `profiles`; Space from the model's shipped `conf/model/<model>.yaml`.")
    out.note("ms/query (measured): CPU milliseconds per query of one search thread (`cpu_ms_per_query`). "
             "FLOPS: expected shared active dimensions per (query, document) pair.")
    for _, row in paper.iterrows():
        out.note(f"Paper rows and figures: {row['source']}.")
        out.note(f"{row['model']} (paper): {row['note']}." if row["metric"] == SPEED else _paper_note(row))
    if speed.any():
        out.note("A paper row is another search method on another collection (its Search and Docs "
                 "cells): it stands beside the measured rows, it is not their target.")
    return out
