"""Build `reports/<name>/` from results on disk: tables (.md/.tex/.csv), figures, provenance, index.md.

Nothing is recomputed: scores come from mteb TaskResult files, efficiency from the search layer's
`<Task>.efficiency.json`, search cost at scale from `results/bench/search.json`, paper numbers
from `results/reference/`.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from harness.paths import REPO_ROOT
from harness.reports import plots
from harness.reports import tables as T
from harness.reports.collect import ModelRun, load_measured
from harness.reports.leaderboard import LEADERBOARD_CSV, leaderboard_table, load_leaderboard
from harness.reports.reference import (
    PAPER,
    PAPER_EFFICIENCY_CSV,
    REFERENCE_CSV,
    load_paper_efficiency,
    load_reference,
)
from harness.reports.render import to_markdown, write_table
from harness.reports.search_cost import SEARCH_BENCH, TITLE, search_cost_table
from harness.reports.variants import paper_family, top_k_label

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def build_tables(reference: pd.DataFrame, runs: Sequence[ModelRun],
                 families: dict[str, str] | None = None,
                 leaderboard: pd.DataFrame | None = None) -> list[T.Table]:
    """Every report table: paper-shaped first, the leaderboard reproduction (when `leaderboard`
    is given and a run has a counterpart there), then the measured-only ones, efficiency last."""
    out = [
        T.benchmark_table(reference, runs, 1, T.TABLE1, families),
        T.benchmark_table(reference, runs, 3, T.TABLE3, families),
        T.per_task_table(reference, runs, 6, T.ENG, families),
        T.per_task_table(reference, runs, 7, T.MULTI, families),
        T.language_table(reference, runs, families),
        T.language_average_table(reference, runs, families),
    ]
    if leaderboard is not None and (table := leaderboard_table(leaderboard, runs)):
        out.append(table)
    in_paper_tables = set(reference.loc[reference["table"].isin([6, 7]), "task"]) | {T.MIRACL.task}
    if extra := T.measured_task_table(runs, in_paper_tables):
        out.append(extra)
    out += T.measured_language_tables(runs, in_paper_tables)
    if efficiency := T.efficiency_table(runs):
        out.append(efficiency)
    return out


def build_figures(reference: pd.DataFrame, runs: Sequence[ModelRun], folder: Path) -> tuple[list, list[str]]:
    """Write every figure that the results support; return them and the reasons for the others."""
    attempts = [
        ("latent vs vocabulary per task", lambda: plots.plot_latent_vs_vocab_tasks(runs, reference, folder),
         ""),
        ("latent vs vocabulary per language", lambda: plots.plot_latent_vs_vocab_languages(runs, folder),
         "no latent/vocabulary pair (same backbone and top-k) shares a multi-language task"),
        ("nDCG vs document top-k", lambda: plots.plot_topk(runs, reference, folder), ""),
        ("nDCG vs nnz / FLOPS", lambda: plots.plot_efficiency(runs, folder),
         "no `<Task>.efficiency.json` with avg_nnz_document or flops beside the results"),
        ("nDCG vs search ms/query", lambda: plots.plot_latency(runs, folder),
         "no `<Task>.efficiency.json` with search_ms_per_query beside the results"),
        ("layer curve", lambda: plots.plot_axis_curve(runs, folder, "layer"),
         "no two latent runs differ only in layer"),
        ("width curve", lambda: plots.plot_axis_curve(runs, folder, "width"),
         "no two latent runs differ only in SAE width"),
    ]
    figures, skipped = [], []
    for title, make, reason in attempts:
        figure = make()
        if figure is None:
            skipped.append(f"{title}: {reason}")
        else:
            figures.append(figure)
    return figures, skipped


def _provenance(runs: Sequence[ModelRun], folder: Path, repo_root: Path) -> list[str]:
    """Markdown lines stating, per measured model, what it is (its `variant.json`), and the
    commands and composed configs of the runs recorded beside its results."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for run in runs:
        v = run.variant
        lines += [f"### {run.label}", ""]
        lines.append(f"- model name `{run.name}`, revision `{run.revision}`; results: `{_rel(run.folder, repo_root)}`")
        lines.append(f"- figure label: {run.short}")
        if v.recorded:
            lines.append(f"- from `harness/variant.json`: config `{v.config}`, kind {v.kind} ({v.space} space); "
                         f"backbone: {v.backbone or '–'}; layer: {_or_dash(v.layer)}; SAE: {v.sae or '–'} "
                         f"(width {_or_dash(v.width)}); dtype: {v.dtype or '–'}; attention: "
                         f"{v.attention or '–'}; top-k (query/document): {top_k_label(v)}; search: "
                         f"{v.search}; paper counterpart: {paper_family(v) or 'none'}")
        for caveat in v.caveats:
            lines.append(f"- caveat: {caveat}")
        for i, record in enumerate(run.records):
            lines.append(f"- run `{record.folder.stem}`: `{record.command or 'command not recorded'}`"
                         + (f" (code `{record.git}`)" if record.git else ""))
            if record.config is not None:
                copy = folder / f"{_SAFE.sub('_', run.label)}.{i}.config.yaml"
                copy.write_text(yaml.safe_dump(record.config, sort_keys=False), encoding="utf-8")
                rel = copy.relative_to(folder.parent)
                lines.append(f"  composed config: [`{rel}`]({rel})")
        if not run.records:
            lines.append("- command: not recorded (no run record beside the results)")
        for record in run.runs:
            lines.append(f"- Hydra run `{_rel(record.folder, repo_root)}`: `{record.command or 'not recorded'}`")
        lines.append(f"- tasks measured ({len(run.results)}): {', '.join(sorted(run.results))}")
        lines.append("")
    return lines


def _shown_leaderboard(path: Path) -> str:
    """The shared leaderboard CSV as `../shared/…` (relative to the checkout), else as given."""
    return os.path.relpath(path, REPO_ROOT) if path == LEADERBOARD_CSV else str(path)


def _or_dash(value: object) -> str:
    return "–" if value is None else str(value)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def build_report(name: str, results_root: Path, run_globs: Sequence[str] = (), out_root: Path = Path("reports"),
                 reference_path: Path = REFERENCE_CSV, families: dict[str, str] | None = None,
                 repo_root: Path | None = None, leaderboard_path: Path | None = None,
                 search_bench: Path = SEARCH_BENCH, paper_efficiency: Path = PAPER_EFFICIENCY_CSV) -> Path:
    """Write `out_root/<name>/` (tables/, figures/, provenance/, index.md); return the index path.

    `leaderboard_path`: the leaderboard CSV; None = the shared one when present (else no
    leaderboard table, said in the index). `search_bench`: the search benchmark's JSON (no
    search-cost table when it is absent, said in the index in one line).
    """
    if not name or _SAFE.search(name):
        raise ValueError(f"report name '{name}' must be non-empty and use only letters, digits, '.', '_', '-'")
    reference = load_reference(reference_path)
    if leaderboard_path is None and LEADERBOARD_CSV.is_file():
        leaderboard_path = LEADERBOARD_CSV
    leaderboard = load_leaderboard(leaderboard_path) if leaderboard_path is not None else None
    runs = load_measured(Path(results_root), run_globs)
    if not runs:
        raise ValueError(f"no measured results under {results_root}" + (f" for runs {list(run_globs)}" if run_globs else ""))
    repo_root = repo_root or Path.cwd()
    report = Path(out_root) / name
    shutil.rmtree(report, ignore_errors=True)
    tables = build_tables(reference, runs, families, leaderboard)
    not_shown = []
    if cost := search_cost_table(search_bench, load_paper_efficiency(paper_efficiency)):
        tables.append(cost)
    else:
        not_shown.append(f"{TITLE}: not shown: no `latent_vs_vocabulary` in "
                         f"`{_rel(Path(search_bench), repo_root)}` (written by `make bench-search`).")
    for table in tables:
        write_table(table, report / "tables")
    figures, skipped = build_figures(reference, runs, report / "figures")
    provenance = _provenance(runs, report / "provenance", repo_root)
    lines = [
        f"# Report `{name}`",
        "",
        f"Built {datetime.datetime.now().isoformat(timespec='seconds')} from results on disk only "
        f"(`{_rel(Path(results_root), repo_root)}`" + (f", runs {', '.join(f'`{g}`' for g in run_globs)}" if run_globs else "")
        + f"); rebuild with `python -m harness.reports build --name {name}"
        + f" --results {_rel(Path(results_root), repo_root)}" + "".join(f" --runs '{g}'" for g in run_globs) + "`.",
        "",
        "## Where every number comes from",
        "",
        (f"- **paper**: columns/rows marked `(paper)` or `paper, Table N` are copied from {PAPER} via "
        f"`{_rel(Path(reference_path), repo_root)}` (transcribed from the shared reference CSV)."),
        ("- **measured here**: every other score column/row is named after a measured model; the command and "
        "composed config that produced it are listed under *Provenance* below. Scores are mteb's own task "
        "aggregates (metric averaged over the subsets and splits present), ×100."),
        ("- **leaderboard**: the column `Leaderboard` of the leaderboard table is the official MTEB "
         "result of the same model, copied from "
         + (f"`{_shown_leaderboard(Path(leaderboard_path))}`" if leaderboard_path is not None
            else "nowhere (no leaderboard CSV found: no such table)") + "."),
        ("- **efficiency**: the efficiency table holds each run's `<Task>.efficiency.json` (the search "
         "layer's record of the run named in the table's notes); the search-cost table's measured rows "
         f"are `{_rel(Path(search_bench), repo_root)}` (its command in the table's notes), its paper "
         f"rows `{_rel(Path(paper_efficiency), repo_root)}`."),
        ("- **Δ** = measured − the paper's number for the paper model the run reproduces (same table, same "
        "task/benchmark); shown only where both exist."),
        ("- † average over partial coverage (the footnote gives n/N); ‡ task with fewer subsets than mteb "
        "lists; § measured under a caveat (zero-shot, sliced queries). A marked average is never complete."),
        "",
        "## Tables",
        "",
    ]
    for table in tables:
        lines.append(to_markdown(table))
        lines.append(f"Files: [`{table.key}.md`](tables/{table.key}.md), [`.tex`](tables/{table.key}.tex), "
                     f"[`.csv`](tables/{table.key}.csv), [`.long.csv`](tables/{table.key}.long.csv)")
        lines.append("")
    lines += [*not_shown, ""] if not_shown else []
    lines += ["## Figures", ""]
    for fig in figures:
        lines += [f"![{fig.caption}](figures/{fig.png.name})", "", (f"*{fig.caption}* "
                  f"([PDF](figures/{fig.pdf.name}))"), ""]
    if skipped:
        lines += ["Not drawn (nothing in the results to draw):", ""]
        lines += [f"- {s}" for s in skipped] + [""]
    lines += ["## Provenance of measured numbers", "", *provenance]
    index = report / "index.md"
    index.write_text("\n".join(lines), encoding="utf-8")
    return index
