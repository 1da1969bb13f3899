"""The official MTEB leaderboard scores of sparse models and Δ against measured variants.

`../shared/reference/leaderboard_sparse_scores.csv` (see its README_leaderboard.md) holds one row
per (model, revision, task, eval split), copied from github.com/embeddings-benchmark/results; a
task with several eval splits has one more row whose split joins them with "+" (the task score).

A measured variant has a leaderboard counterpart when its `Variant.leaderboard_id` (the hub id of
a stock SparseEncoder, else the mteb model name) is a leaderboard model. Δ = measured − leaderboard
per task, on mteb's own task aggregate over the leaderboard's eval splits, on the 0-100 scale;
|Δ| > `FLAG` points is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.paths import REPO_ROOT
from harness.reports.collect import ModelRun, task_score
from harness.reports.tables import SUBSETS, Cell, Table

LEADERBOARD_CSV = REPO_ROOT.parent / "shared" / "reference" / "leaderboard_sparse_scores.csv"
SOURCE = "MTEB leaderboard (github.com/embeddings-benchmark/results f4cc6c8)"
COLUMNS = ("model", "revision", "task", "split", "main_score", "n_subsets", "mteb_version",
           "source_path")
#: |Δ| above this many points (0-100 scale) is flagged.
FLAG = 0.5
FLAG_MARK = "!"


def load_leaderboard(path: Path = LEADERBOARD_CSV) -> pd.DataFrame:
    """One row per (model, revision, task): the task score and the splits it averages.

    Columns: model, revision, task, splits (tuple), value (main score ×100), n_subsets,
    mteb_version, source_path. Where a task has several split rows, the "+"-joined row is kept.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"leaderboard table not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    values = pd.to_numeric(frame["main_score"], errors="coerce")
    if values.isna().any():
        bad = frame.loc[values.isna(), "main_score"].iloc[0]
        raise ValueError(f"{path}: main_score '{bad}' is not a number")
    frame = frame.assign(value=100.0 * values, n_subsets=frame["n_subsets"].astype(int),
                         joined=frame["split"].str.contains("+", regex=False))
    rows = []
    for _, group in frame.groupby(["model", "revision", "task"], sort=False):
        joined = group[group["joined"]]
        if len(joined) > 1 or (joined.empty and len(group) > 1):
            raise ValueError(f"{path}: task {group['task'].iloc[0]} of {group['model'].iloc[0]} has "
                             f"{len(group)} split rows and no single '+'-joined task row")
        row = (joined if len(joined) else group).iloc[0]
        rows.append({"model": row["model"], "revision": row["revision"], "task": row["task"],
                     "splits": tuple(row["split"].split("+")), "value": float(row["value"]),
                     "n_subsets": int(row["n_subsets"]), "mteb_version": row["mteb_version"],
                     "source_path": row["source_path"]})
    return pd.DataFrame(rows)


def counterpart_rows(leaderboard: pd.DataFrame, run: ModelRun) -> pd.DataFrame:
    """The leaderboard rows of the model `run` measures (empty when it has none)."""
    return leaderboard[leaderboard["model"] == run.variant.leaderboard_id]


def revision_note(run: ModelRun, rows: pd.DataFrame) -> str | None:
    """Why the measured revision may differ from the leaderboard's (None when they agree)."""
    published = sorted(set(rows["revision"]))
    v = run.variant
    ran = f"leaderboard ran {', '.join(published)}"
    if v.kind == "splade_mlm":
        if v.backbone != v.backbone_id:
            return f"weights from the local folder {v.backbone}, not the hub; {ran}"
        if v.backbone_revision in published:
            return None
        return f"hub revision {v.backbone_revision or 'not pinned (main)'}; {ran}"
    if run.revision in published:
        return None
    return f"revision {run.revision}; {ran}"


def delta_frame(leaderboard: pd.DataFrame, runs: Sequence[ModelRun]) -> pd.DataFrame:
    """Per measured run with a leaderboard counterpart and per leaderboard task of that model:
    the leaderboard score, the measured score (None when the task was not run), Δ and the flag.

    Columns: run (label), model, leaderboard_revision, task, splits, leaderboard, measured,
    delta (NaN when not measured), flagged, subsets ("<measured (split, subset) entries>/<the
    leaderboard's n_subsets>"), source_path.
    """
    out = []
    for run in runs:
        rows = counterpart_rows(leaderboard, run)
        for _, row in rows.iterrows():
            result = run.results.get(row["task"])
            measured = task_score(result, "main_score", row["splits"]) if result is not None else None
            n = sum(len(result.scores[s]) for s in row["splits"]) if measured is not None else 0
            delta = None if measured is None else measured - row["value"]
            out.append({"run": run.label, "model": row["model"],
                        "leaderboard_revision": row["revision"], "task": row["task"],
                        "splits": "+".join(row["splits"]), "leaderboard": row["value"],
                        "measured": measured, "delta": delta,
                        "flagged": delta is not None and abs(delta) > FLAG,
                        "subsets": f"{n}/{row['n_subsets']}", "source_path": row["source_path"]})
    return pd.DataFrame(out, columns=["run", "model", "leaderboard_revision", "task", "splits",
                                      "leaderboard", "measured", "delta", "flagged", "subsets",
                                      "source_path"])


def leaderboard_table(leaderboard: pd.DataFrame, runs: Sequence[ModelRun]) -> Table | None:
    """Measured vs leaderboard per task for every run with a leaderboard counterpart (else None).

    Δ cells are marked "!" when |Δ| > FLAG points and "‡" when the measured task has fewer
    (split, subset) entries than the leaderboard averaged.
    """
    frame = delta_frame(leaderboard, runs)
    if frame.empty:
        return None
    out = Table(key="leaderboard", header=["Run", "Task", "Splits", "Leaderboard", "Measured", "Δ"],
                title="MTEB leaderboard reproduction (main score ×100)")
    by_label = {r.label: r for r in runs}
    for label, group in frame.groupby("run", sort=False):
        run = by_label[label]
        rows = counterpart_rows(leaderboard, run)
        note = revision_note(run, rows)
        out.note(f"{label} reproduces leaderboard model {rows['model'].iloc[0]}"
                 + (f"; caveat: {note}." if note else "."))
        for caveat in run.variant.caveats:
            out.note(f"{label}: {caveat}.")
        for _, row in group.iterrows():
            measured, delta = (None if pd.isna(row[k]) else float(row[k]) for k in ("measured", "delta"))
            marks = FLAG_MARK if row["flagged"] else ""
            n, total = map(int, row["subsets"].split("/"))
            if measured is not None and n < total:
                marks += SUBSETS
                out.note(f"{SUBSETS} {label}, {row['task']}: {row['subsets']} (split, subset) "
                         "entries of the leaderboard's.")
            out.rows.append([Cell(text=label), Cell(text=row["task"]), Cell(text=row["splits"]),
                             Cell(row["leaderboard"], kind="leaderboard"),
                             Cell(measured, kind="measured"), Cell(delta, kind="delta", marks=marks)])
    out.note(f"Leaderboard: {SOURCE}, the file named in each row's source_path of "
             f"{LEADERBOARD_CSV.name}; measured: this harness (see Provenance).")
    out.note(f"Δ = measured − leaderboard; {FLAG_MARK} |Δ| > {FLAG} points; – task not measured.")
    return out
