"""The paper's numbers in the project's own reference format (`results/reference/`).

The shared transcription (`../shared/reference/splare_paper_scores.csv`, one row per paper table
cell) is rewritten by `write_reference` into `results/reference/splare_paper_scores.csv` with an
integer table number and an explicit source; `load_reference` reads that committed file.
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
