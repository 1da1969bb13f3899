"""The paper's numbers in the project's own reference format (`results/reference/`).

The shared transcription (`../shared/reference/splare_paper_scores.csv`, one row per paper table
cell) is rewritten by `write_reference` into `results/reference/splare_paper_scores.csv` with an
integer table number and an explicit source; `load_reference` reads that committed file.
`load_paper_efficiency` reads the paper's efficiency figures (`results/reference/paper_efficiency.csv`,
hand-copied from the "Efficiency" bullet of `../shared/docs/splare_notes.md`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.paths import REPO_ROOT

PAPER = "arXiv 2603.13277v1"
SHARED_CSV = REPO_ROOT.parent / "shared" / "reference" / "splare_paper_scores.csv"
REFERENCE_CSV = REPO_ROOT / "results" / "reference" / "splare_paper_scores.csv"
SHARED_COLUMNS = ("paper_table", "model", "benchmark", "task", "metric", "value", "setting")
COLUMNS = ("table", "setting", "model", "benchmark", "task", "metric", "value", "source")
PAPER_EFFICIENCY_CSV = REPO_ROOT / "results" / "reference" / "paper_efficiency.csv"
EFFICIENCY_COLUMNS = ("model", "search", "corpus", "documents", "top_k_query", "top_k_document",
                      "metric", "value", "qualifier", "note", "source")
#: Efficiency metric -> (what it is, unit) as the report states it.
EFFICIENCY_METRICS = {"search_ms_per_query": ("search", " ms/query"), "loss_pct": ("loss", " %")}
#: The source's own words before a number: approximate ("about"), a lower bound ("over").
QUALIFIERS = ("", "about", "over")


def _read_checked(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV as strings and fail in one line when a required column is missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"reference table not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def transcribe(shared_csv: Path = SHARED_CSV) -> pd.DataFrame:
    """The shared paper-score CSV as a reference frame with columns `COLUMNS`.

    `paper_table` "table7" becomes table 7 and source "arXiv 2603.13277v1 Table 7"; values are
    floats on the paper's 0-100 scale; an empty setting stays "".
    """
    frame = _read_checked(shared_csv, SHARED_COLUMNS)
    tables = frame["paper_table"].str.extract(r"^table(\d+)$")[0]
    bad = frame.loc[tables.isna(), "paper_table"]
    if len(bad):
        raise ValueError(f"{shared_csv}: paper_table '{bad.iloc[0]}' is not of the form tableN")
    values = pd.to_numeric(frame["value"], errors="coerce")
    if values.isna().any():
        raise ValueError(f"{shared_csv}: value '{frame.loc[values.isna(), 'value'].iloc[0]}' is not a number")
    out = pd.DataFrame({
        "table": tables.astype(int),
        "setting": frame["setting"].str.strip(),
        "model": frame["model"].str.strip(),
        "benchmark": frame["benchmark"].str.strip(),
        "task": frame["task"].str.strip(),
        "metric": frame["metric"].str.strip(),
        "value": values.astype(float),
    })
    out["source"] = [f"{PAPER} Table {t}" for t in out["table"]]
    return out[list(COLUMNS)]


def write_reference(shared_csv: Path = SHARED_CSV, out: Path = REFERENCE_CSV) -> Path:
    """Write the transcribed reference CSV to `out` (the committed `results/reference/` file)."""
    frame = transcribe(shared_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, float_format="%.1f")
    return out


def load_reference(path: Path = REFERENCE_CSV) -> pd.DataFrame:
    """The committed reference numbers: one row per paper table cell, columns `COLUMNS`."""
    frame = _read_checked(path, COLUMNS)
    frame["table"] = frame["table"].astype(int)
    frame["value"] = frame["value"].astype(float)
    return frame[list(COLUMNS)]


def reference_value(reference: pd.DataFrame, table: int, model: str, benchmark: str, task: str,
                    setting: str | None = None) -> float | None:
    """One paper cell, or None when the paper does not report it."""
    sel = ((reference["table"] == table) & (reference["model"] == model)
           & (reference["benchmark"] == benchmark) & (reference["task"] == task))
    if setting is not None:
        sel &= reference["setting"] == setting
    rows = reference.loc[sel, "value"]
    return float(rows.iloc[0]) if len(rows) else None


def _numeric(frame: pd.DataFrame, column: str, path: Path, required: bool) -> pd.Series:
    """Column `column` as floats (NaN for an empty cell unless `required`); one-line error otherwise."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame.loc[values.isna() & ((frame[column] != "") | required), column]
    if len(bad):
        raise ValueError(f"{path}: {column} '{bad.iloc[0]}' is not a number")
    return values.astype(float)


def load_paper_efficiency(path: Path = PAPER_EFFICIENCY_CSV) -> pd.DataFrame:
    """The paper's efficiency figures, one row per figure, columns `EFFICIENCY_COLUMNS`.

    Source: the "Efficiency" bullet of `../shared/docs/splare_notes.md` (a summary of arXiv
    2603.13277v1), copied by hand and nothing beyond it: SPLARE-7B with Seismic, one thread, 8.8M
    MS MARCO documents (the text's rounding), about 5 ms/query at top-k 40/400 without model
    inference; documents pruned to 100: SPLARE loses about 2 %, SPLADE over 6 %. `qualifier` keeps
    the text's word ("about": approximate, "over": a lower bound); an empty cell: the text does not
    say. `value`, `documents` and the top-k columns are floats (NaN where empty); `metric` is one of
    `EFFICIENCY_METRICS`.
    """
    frame = _read_checked(path, EFFICIENCY_COLUMNS)
    for column, allowed in (("metric", EFFICIENCY_METRICS), ("qualifier", QUALIFIERS)):
        bad = frame.loc[~frame[column].isin(allowed), column]
        if len(bad):
            valid = ", ".join(map(repr, allowed))
            raise ValueError(f"{path}: {column} '{bad.iloc[0]}' is not one of {valid}")
    for column in ("documents", "top_k_query", "top_k_document", "value"):
        frame[column] = _numeric(frame, column, path, required=column == "value")
    return frame[list(EFFICIENCY_COLUMNS)]
