"""Render a comparison: tables (Markdown, LaTeX, CSV), figures (PNG, PDF) and `comparison.md`.

Figures use the variants' short labels (`harness.reports.variants.short_labels`); the full names
are in each caption and in the variants table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.compare.examples import Example


def write_table(frame: pd.DataFrame, folder: Path, stem: str, floatfmt: str = ".4f") -> str:
    """Write `<stem>.md`, `.tex` and `.csv` under `folder`; returns the Markdown text."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{stem}.csv", index=False)
    (folder / f"{stem}.tex").write_text(
        frame.to_latex(index=False, float_format=lambda x: format(x, floatfmt), escape=True),
        encoding="utf-8")
    markdown = frame.to_markdown(index=False, floatfmt=floatfmt)
    (folder / f"{stem}.md").write_text(markdown + "\n", encoding="utf-8")
    return markdown


def save_figure(fig: plt.Figure, folder: Path, stem: str) -> str:
    """Save `<stem>.png` and `.pdf`; returns the PNG's file name."""
    fig.savefig(folder / f"{stem}.png", dpi=150, bbox_inches="tight")
    fig.savefig(folder / f"{stem}.pdf", bbox_inches="tight")
    plt.close(fig)
    return f"{stem}.png"


def format_p(p: float, permutations: int) -> str:
    """A p-value as text; 0 from the randomization test is shown as `< 1/permutations`."""
    return f"<{1 / permutations:.0e}" if p == 0 else f"{p:.3g}"


def display_task_table(table: pd.DataFrame, label_a: str, label_b: str,
                       permutations: int) -> pd.DataFrame:
    """The reader's version of `analysis.task_table`: scores, Δ with its interval, p, Holm p, a
    `*` on significant rows."""
    return pd.DataFrame({
        "task": table.task,
        "queries": table.n,
        label_a: table.A,
        label_b: table.B,
        "Δ (B−A)": [f"{d:+.4f}{' *' if s else ''}" for d, s in zip(table.delta,
                                                                    table.significant,
                                                                    strict=True)],
        "95% CI": [f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(table.low, table.high,
                                                               strict=True)],
        "p": [format_p(p, permutations) for p in table.p],
        "p (Holm)": [format_p(p, permutations) for p in table.p_holm],
        "queries B>A / = / <": [f"{w} / {t} / {lo}" for w, t, lo in
                                zip(table.q_wins, table.q_ties, table.q_losses, strict=True)],
    })


def delta_figure(tables: Sequence[tuple[str, str, pd.DataFrame]], alpha: float) -> plt.Figure:
    """Δ (B − A) per task and for the mean over tasks, with bootstrap-interval error bars; one
    panel per compared pair (label A, label B, task table). Significant rows are filled."""
    n_tasks = max(len(t) for _, _, t in tables)
    fig, axes = plt.subplots(len(tables), 1, figsize=(8, 0.45 * n_tasks * len(tables) + 1.2),
                             squeeze=False, sharex=True)
    for ax, (label_a, label_b, table) in zip(axes[:, 0], tables, strict=True):
        y = np.arange(len(table))[::-1]
        err = np.vstack([table.delta - table.low, table.high - table.delta])
        for filled in (True, False):
            rows = table.significant.to_numpy() == filled
            ax.errorbar(table.delta[rows], y[rows], xerr=err[:, rows], fmt="o", capsize=3,
                        color="C0", mfc="C0" if filled else "white",
                        label=f"significant (Holm, α={alpha})" if filled else "not significant")
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(y, [t.replace(" (slice", "\n(slice") for t in table.task], fontsize=7)
        ax.set_title(f"{label_b}  −  {label_a}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("Δ nDCG@10 (B − A), 95% bootstrap interval")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.02 / len(tables)))
    fig.tight_layout()
    return fig


def wtl_figure(summaries: Sequence[tuple[str, pd.DataFrame]], by: str) -> plt.Figure:
    """Stacked win / tie / loss bars of B vs A per `by` value, one panel per pair."""
    fig, axes = plt.subplots(1, len(summaries), figsize=(4.2 * len(summaries), 3.6),
                             squeeze=False, sharey=True)
    colours = {"win": "#2a9d4b", "tie": "#b8b8b8", "loss": "#d1495b"}
    for ax, (title, frame) in zip(axes[0], summaries, strict=True):
        left = np.zeros(len(frame))
        for outcome in ("win", "tie", "loss"):
            ax.barh(frame[by], frame[outcome], left=left, color=colours[outcome], label=outcome)
            left += frame[outcome].to_numpy()
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("units (task × subset)")
        ax.tick_params(axis="y", labelsize=7)
    axes[0, 0].invert_yaxis()
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return fig


def crosslingual_figure(task: str, grid: pd.DataFrame, labels: Sequence[str]) -> plt.Figure:
    """Heat maps of mean nDCG@10 by (query language, document language), one per variant, side by
    side, same colour scale (0 to 1)."""
    langs_q = sorted(grid.query_lang.unique())
    langs_d = sorted(grid.doc_lang.unique())
    fig, axes = plt.subplots(1, len(labels), figsize=(2.9 * len(labels) + 1, 3.1), squeeze=False)
    image = None
    for ax, label in zip(axes[0], labels, strict=True):
        cells = grid[grid.variant == label]
        matrix = np.full((len(langs_q), len(langs_d)), np.nan)
        for row in cells.itertuples():
            matrix[langs_q.index(row.query_lang), langs_d.index(row.doc_lang)] = row.score
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for (i, j), value in np.ndenumerate(matrix):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.6 else "black")
        ax.set_xticks(range(len(langs_d)), [lang.split("-")[0] for lang in langs_d], fontsize=7)
        ax.set_yticks(range(len(langs_q)),
                      [lang.split("-")[0] for lang in langs_q] if ax is axes[0, 0] else [],
                      fontsize=7)
        ax.set_xlabel("document language", fontsize=7)
        ax.set_title(label.replace(" · ", "\n", 1), fontsize=7)
    axes[0, 0].set_ylabel("query language", fontsize=7)
    fig.suptitle(task, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="nDCG@10")
    return fig


def overlap_figure(table: pd.DataFrame) -> plt.Figure:
    """Parallel-pair overlap (bars, 95% bootstrap interval) and the mismatched-pair level (black
    ticks) per model, one panel per (source, cut)."""
    panels = table[["source", "cut"]].drop_duplicates()
    panels = panels.assign(order=panels.cut.ne("uncapped")).sort_values(["order", "source"])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False,
                             sharey=True)
    models = list(dict.fromkeys(table.model))
    for ax, (source, cut) in zip(axes[0], panels[["source", "cut"]].itertuples(index=False),
                                 strict=True):
        part = table[(table.source == source) & (table.cut.str.startswith(cut[:4]))]
        langs = list(dict.fromkeys(part.language))
        width = 0.8 / len(models)
        for m, model in enumerate(models):
            rows = part[part.model == model].set_index("language").reindex(langs)
            x = np.arange(len(langs)) + (m - (len(models) - 1) / 2) * width
            ax.bar(x, rows.parallel, width, color=f"C{m}", label=model,
                   yerr=[rows.parallel - rows.low, rows.high - rows.parallel], capsize=2)
            ax.scatter(x, rows.mismatched, marker="_", color="black", s=120, zorder=3,
                       label="mismatched pairs" if m == 0 else None)
        ax.set_xticks(range(len(langs)), [f"en–{lang.split('_')[0]}" for lang in langs])
        ax.set_title(f"{source.removeprefix('Local')}, {cut}", fontsize=8)
        ax.set_ylim(0, 1.05)
    axes[0, 0].set_ylabel("mass on dims active in translation")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(models) + 1, fontsize=7,
               bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    return fig


def examples_markdown(examples: Sequence[Example], max_chars: int = 220) -> str:
    """The "examples" section: per sampled query, each variant's top document, its judgment and
    the dimensions that carry its score."""
    def clip(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= max_chars else text[:max_chars] + "…"

    lines = []
    for ex in examples:
        lines += [f"#### {ex.task} · {ex.split}/{ex.subset} · query {ex.qid}", "",
                  f"> {clip(ex.query)}", ""]
        for match in ex.matches:
            if match.doc_id is None:
                lines += [f"- **{match.variant}**: nothing retrieved", ""]
                continue
            verdict = "relevant" if match.relevant else "not relevant"
            shown_id = match.doc_id if len(match.doc_id) <= 16 else match.doc_id[:12] + "…"
            lines += [(f"- **{match.variant}**: top document `{shown_id}` "
                      f"(score {match.score:.4g}, {verdict}, qrels grade {match.relevant or 0}): "
                      f"{clip(ex.docs[match.doc_id])}")]
            if match.dims:
                dims = "; ".join(f"{name} {value:.3g} ({share:.0%})"
                                 for name, value, share in match.dims)
                lines.append(f"  - top q_j·d_j: {dims}")
            lines.append("")
    return "\n".join(lines)
