"""Report figures (matplotlib Agg, PNG + PDF): paired latent/vocabulary scatters, top-k, efficiency,
latency, layer and width curves. Each `plot_*` returns the written Figure, or None when the results
hold nothing to draw (the caller says so in the report).

Legends use the runs' short labels (`ModelRun.short`, from `variant.json` by
`harness.reports.variants.short_labels`) and sit below the axes, outside them (`outside_legend`);
each caption maps the short labels to the full model names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from harness.reports.collect import ModelRun, subset_scores, task_score
from harness.reports.variants import Variant, short_labels


@dataclass
class Figure:
    """A written figure: file stem, caption, files, its legend's labels and the axes (titles, or
    `axes <i>`) a legend overlaps once drawn (none: `save_figure` checks the drawn layout)."""

    stem: str
    caption: str
    png: Path
    pdf: Path
    legend: tuple[str, ...] = ()
    overlaps: tuple[str, ...] = field(default=())


def new_figure(width: float, height: float, ncols: int = 1, **kwargs) -> tuple[plt.Figure, object]:
    """A figure of `ncols` axes side by side in matplotlib's constrained layout (what
    `outside_legend` needs); (figure, axes or array of axes)."""
    return plt.subplots(1, ncols, figsize=(width, height), layout="constrained", **kwargs)


#: Legend text size (points) and the inches one legend row adds below the axes.
LEGEND_FONTSIZE = 7
_LEGEND_ROW_INCHES = 0.17
_CHAR_INCHES = 0.058  # average width of a legend character at LEGEND_FONTSIZE (DejaVu Sans)
_MARKER_INCHES = 0.5  # marker, padding and column gap of one legend entry


def outside_legend(fig: plt.Figure, entries: Sequence[tuple[object, str]] | None = None) -> None:
    """One legend for the figure, below all its axes and outside them (`outside lower center` of
    the constrained layout), in as many columns as the figure's width holds; the figure grows by
    the legend's height so the axes keep theirs. `entries`: (artist, label) pairs, default the
    labelled artists of every axes (each label once)."""
    if entries is None:
        seen: dict[str, object] = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(label, handle)
        entries = [(h, label) for label, h in seen.items()]
    if not entries:
        return
    widest = max(len(label) for _, label in entries) * _CHAR_INCHES + _MARKER_INCHES
    ncol = max(1, min(len(entries), int(fig.get_figwidth() // widest)))
    rows = math.ceil(len(entries) / ncol)
    fig.set_figheight(fig.get_figheight() + rows * _LEGEND_ROW_INCHES + 0.15)
    fig.legend([h for h, _ in entries], [label for _, label in entries], loc="outside lower center",
               ncol=ncol, fontsize=LEGEND_FONTSIZE, frameon=False)


def legend_overlaps(fig: plt.Figure) -> list[str]:
    """The axes (title, else `axes <i>`) whose data area a legend of `fig` overlaps, as drawn."""
    fig.canvas.draw()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    hits = []
    for legend in legends:
        box = legend.get_window_extent()
        for i, ax in enumerate(fig.axes):
            if box.overlaps(ax.get_window_extent()):
                hits.append(ax.get_title() or f"axes {i}")
    return hits


def save_figure(fig: plt.Figure, folder: Path, stem: str, caption: str) -> Figure:
    """Write `fig` as `<stem>.png` (150 dpi) and `.pdf` under `folder`, close it, and return the
    Figure with its legend labels and the legend overlaps found in the drawn layout."""
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    labels = tuple(t.get_text() for legend in legends for t in legend.get_texts())
    overlaps = tuple(legend_overlaps(fig))
    for path, dpi in ((png, 150), (pdf, None)):  # tight: every artist, titles and legends included
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Figure(stem, caption, png, pdf, labels, overlaps)


def _unique(items: Sequence) -> list:
    """`items` without repeats (by identity: runs are unhashable), in order."""
    seen: set[int] = set()
    return [x for x in items if id(x) not in seen and not seen.add(id(x))]


def full_names(runs: Sequence[ModelRun]) -> str:
    """Caption text naming each run's full model name behind its short label."""
    return "Labels: " + "; ".join(f"{r.short} = `{r.label}`" for r in runs) + "."


def _plain_log_ticks(axis: matplotlib.axis.Axis) -> None:
    """Log axis ticked at 1, 2, 5 x 10^n (only 10^n beyond two decades, so labels never collide)
    and labelled 50, 100, 200 rather than 5x10^1."""
    lo, hi = sorted(axis.get_view_interval())
    wide = lo > 0 and hi / lo > 100
    subs = (1.0,) if wide else (1.0, 2.0, 5.0)
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def series_style(i: int, n: int = 20) -> dict:
    """Distinct colour/marker for series i of n: tab10 colours up to 10 series (no two alike),
    else tab20; then 4 markers."""
    colours = 10 if n <= 10 else 20
    return {"color": plt.get_cmap(f"tab{colours}")(i % colours),
            "marker": "osD^"[(i // colours) % 4]}


#: The paper's Table 3 SPLARE-7B rows and their document top-k (0: no pooling cap).
PAPER_TOPK_DOCUMENT = {"SPLARE-7B (top-k 10/100)": 100, "SPLARE-7B (top-k 20/200)": 200,
                       "SPLARE-7B (top-k 40/400)": 400, "SPLARE-7B (no pooling cap)": 0}
_PAIR_AXES = ("backbone", "dtype", "top_k_query", "top_k_document", "trained", "search")


def latent_vocab_pairs(runs: Sequence[ModelRun]) -> list[tuple[ModelRun, ModelRun]]:
    """(latent, vocabulary) runs of decoder kinds (SPLARE vs SPLADE-LLM) on the same backbone,
    dtype, top-k, training state and search backend, with at least one task in common."""
    def same(a: Variant, b: Variant) -> bool:
        return all(getattr(a, k) == getattr(b, k) for k in _PAIR_AXES)

    latent = [r for r in runs if r.variant.kind == "splare"]
    vocab = [r for r in runs if r.variant.kind == "splade_llm"]
    return [(lat, voc) for lat in latent for voc in vocab
            if same(lat.variant, voc.variant) and set(lat.results) & set(voc.results)]


def _diagonal(ax: plt.Axes, values: Sequence[float]) -> None:
    lo, hi = min(values + [0.0]), max(values + [100.0])
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="y = x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")


def plot_latent_vs_vocab_tasks(runs: Sequence[ModelRun], reference: pd.DataFrame, folder: Path) -> Figure | None:
    """Per task: vocabulary-head nDCG@10 (x) vs latent-head nDCG@10 (y); paper Tables 6/7 in grey."""
    pairs = latent_vocab_pairs(runs)
    ref = reference[reference["table"].isin([6, 7])]
    paper = ref.pivot_table(index="task", columns="model", values="value", aggfunc="first")
    fig, ax = new_figure(6.5, 5)
    values: list[float] = []
    if {"SPLARE-7B", "SPLADE-Llama"} <= set(paper.columns):
        ax.scatter(paper["SPLADE-Llama"], paper["SPLARE-7B"], color="lightgrey", edgecolor="grey",
                   label="paper: SPLARE-7B vs SPLADE-Llama (Tables 6/7)")
        values += [*paper["SPLADE-Llama"], *paper["SPLARE-7B"]]
    for i, (lat, voc) in enumerate(pairs):
        common = sorted(set(lat.results) & set(voc.results))
        xs = [task_score(voc.results[t], "main_score") for t in common]
        ys = [task_score(lat.results[t], "main_score") for t in common]
        ax.scatter(xs, ys, label=f"{lat.short} vs {voc.short}", **series_style(i, len(pairs)))
        values += [v for v in xs + ys if v is not None]
    _diagonal(ax, values)
    ax.set_xlabel("vocabulary head (SPLADE): nDCG@10 per task")
    ax.set_ylabel("latent head (SPLARE): nDCG@10 per task")
    ax.set_title("Latent vs vocabulary head, per task")
    outside_legend(fig)
    drawn = _unique([r for pair in pairs for r in pair])
    caption = (f"Per task, paired: {len(pairs)} measured latent/vocabulary pair(s) (same backbone and "
               "top-k) and the paper's Tables 6/7 (grey). Above the diagonal: the latent head wins."
               + (f" {full_names(drawn)}" if drawn else ""))
    return save_figure(fig, folder, "latent_vs_vocab_tasks", caption)


def _task_label(task: str, tasks: Sequence[str]) -> str:
    """A task name without its parenthesised suffix (`X (slice_8q_seed0_24d)` -> `X`) when that
    stays unique among `tasks`."""
    bare = re.sub(r"\s*\(.*\)$", "", task)
    clash = sum(re.sub(r"\s*\(.*\)$", "", t) == bare for t in tasks) > 1
    return task if clash or not bare else bare


def plot_latent_vs_vocab_languages(runs: Sequence[ModelRun], folder: Path) -> Figure | None:
    """Per language (subset of multi-subset tasks): vocabulary (x) vs latent (y) score; colour =
    latent/vocabulary pair, marker = task."""
    series = []
    for pair in latent_vocab_pairs(runs):
        lat, voc = pair
        for task in sorted(set(lat.results) & set(voc.results)):
            a = subset_scores(lat.results[task], "main_score")
            b = subset_scores(voc.results[task], "main_score")
            langs = sorted(set(a) & set(b))
            if len(langs) >= 2:
                series.append((pair, task, langs, [b[g] for g in langs], [a[g] for g in langs]))
    if not series:
        return None
    pairs = _unique([pair for pair, *_ in series])
    tasks = sorted({task for _, task, *_ in series})
    markers = "osD^v<>p"
    fig, ax = new_figure(6.5, 5)
    values: list[float] = []
    for pair, task, langs, xs, ys in series:
        ax.scatter(xs, ys, color=series_style(next(i for i, p in enumerate(pairs) if p is pair),
                                      len(pairs))["color"],
                   marker=markers[tasks.index(task) % len(markers)])
        for g, x, y in zip(langs, xs, ys, strict=True):
            ax.annotate(g, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        values += xs + ys
    _diagonal(ax, values)
    ax.set_xlabel("vocabulary head: main score per language")
    ax.set_ylabel("latent head: main score per language")
    ax.set_title("Latent vs vocabulary head, per language")
    entries = [(Patch(color=series_style(i, len(pairs))["color"]), f"{lat.short} vs {voc.short}")
               for i, (lat, voc) in enumerate(pairs)]
    entries += [(Line2D([], [], color="grey", marker=markers[i % len(markers)], linestyle=""),
                 _task_label(task, tasks)) for i, task in enumerate(tasks)]
    entries.append((Line2D([], [], color="grey", linestyle="--", linewidth=1), "y = x"))
    outside_legend(fig, entries)
    drawn = _unique([r for pair in pairs for r in pair])
    return save_figure(fig, folder, "latent_vs_vocab_languages",
                       "Per language (hf_subset), paired runs with the same backbone and top-k; "
                       "measured only. Colour: the latent/vocabulary pair; marker: the task "
                       f"({', '.join(tasks)}). {full_names(drawn)}")


def _families(runs: Sequence[ModelRun], axis: Callable[[Variant], float | None], *vary: str) -> dict:
    groups: dict[tuple, list[ModelRun]] = {}
    for run in runs:
        if run.variant.recorded and axis(run.variant) is not None:
            groups.setdefault(run.variant.family(*vary), []).append(run)
    return {k: v for k, v in groups.items() if len({axis(r.variant) for r in v}) >= 2}


def _common_mean(group: Sequence[ModelRun]) -> tuple[list[float], int]:
    """Mean main score of each run over the tasks every run of the group has (and that count)."""
    common = set.intersection(*(set(r.results) for r in group))
    means = []
    for run in group:
        scores = [task_score(run.results[t], "main_score") for t in sorted(common)]
        scores = [s for s in scores if s is not None]
        means.append(sum(scores) / len(scores) if scores else float("nan"))
    return means, len(common)


def _doc_k(variant: Variant) -> float | None:
    return None if variant.top_k_document is None else float(variant.top_k_document)


def _family_labels(groups: Sequence[Sequence[ModelRun]], *vary: str) -> list[str]:
    """Short labels of curves (families), from their first run's record without the parts in
    `vary` (a top-k family: no top-k; a layer curve: no layer)."""
    records = [dict(g[0].record or {"name": g[0].name}) for g in groups]
    if "top_k_document" in vary:
        records = [{**r, "top_k": None} for r in records]
    return short_labels(records, omit=vary)


def _family_caption(groups: Sequence[Sequence[ModelRun]], labels: Sequence[str],
                    counts: Sequence[int]) -> str:
    return "Curves: " + "; ".join(
        f"{label} = {', '.join(f'`{r.label}`' for r in group)} ({n} common task(s))"
        for label, group, n in zip(labels, groups, counts, strict=True)) + "."


def plot_topk(runs: Sequence[ModelRun], reference: pd.DataFrame, folder: Path) -> Figure | None:
    """Mean nDCG@10 vs document top-k ("no cap" drawn right of the largest k); paper Table 3 dashed."""
    groups = _families(runs, _doc_k, "top_k_query", "top_k_document")
    fig, ax = new_figure(6.5, 4.5)
    paper = reference[(reference["table"] == 3) & reference["model"].isin(PAPER_TOPK_DOCUMENT)]
    ks = [k for g in groups.values() for k in (_doc_k(r.variant) for r in g) if k]
    ks += [100.0, 200.0, 400.0]
    nocap = 2 * max(ks)

    def xpos(k: float) -> float:
        return nocap if k == 0 else k

    for bench, frame in paper.groupby("benchmark"):
        if frame["metric"].iloc[0] != "ndcg_at_10":
            continue
        pts = []
        for _, row in frame.iterrows():
            k = PAPER_TOPK_DOCUMENT[row["model"]]
            pts.append((float(k) if k else nocap, row["value"]))
        pts.sort()
        ax.plot(*zip(*pts), linestyle="--", marker="s", alpha=0.6, label=f"paper SPLARE-7B, {bench}")
    families = [sorted(g, key=lambda r: xpos(_doc_k(r.variant))) for g in groups.values()]
    labels = _family_labels(families, "top_k_document")
    counts = []
    for group, label in zip(families, labels, strict=True):
        means, n = _common_mean(group)
        counts.append(n)
        ax.plot([xpos(_doc_k(r.variant)) for r in group], means, marker="o", label=label)
    ax.set_xscale("log")
    ticks = sorted({xpos(k) for k in ks} | {nocap})
    ax.set_xticks(ticks)
    ax.set_xticklabels(["no cap" if t == nocap else str(int(t)) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("document top-k (query top-k scales with it)")
    ax.set_ylabel("mean nDCG@10")
    ax.set_title("Effectiveness vs document top-k pooling")
    outside_legend(fig)
    caption = (f"Mean nDCG@10 vs document top-k: {len(groups)} measured family(ies) (solid; mean over "
               "the tasks all its variants share) and the paper's Table 3 SPLARE-7B averages "
               "(dashed).")
    if families:
        caption += " " + _family_caption(families, labels, counts)
    return save_figure(fig, folder, "ndcg_vs_topk", caption)


def _efficiency_points(runs: Sequence[ModelRun], key: str) -> list[tuple[ModelRun, list[float], list[float]]]:
    out = []
    for run in runs:
        xs, ys = [], []
        for task, stats in run.efficiency.items():
            score = task_score(run.results[task], "main_score") if task in run.results else None
            if key in stats and score is not None:
                xs.append(stats[key])
                ys.append(score)
        if xs:
            out.append((run, xs, ys))
    return out


def plot_efficiency(runs: Sequence[ModelRun], folder: Path) -> Figure | None:
    """Per (model, task): nDCG@10 vs average document nnz (left) and vs FLOPS (right)."""
    panels = [("avg_nnz_document", "average non-zeros per document"),
              ("flops", "FLOPS (expected multiply-adds per query-document pair)")]
    data = {key: _efficiency_points(runs, key) for key, _ in panels}
    if not any(data.values()):
        return None
    fig, axes = new_figure(11, 4.5, ncols=2, sharey=True)
    drawn = _unique([run for points in data.values() for run, _, _ in points])
    for ax, (key, label) in zip(axes, panels):
        for run, xs, ys in data[key]:
            ax.scatter(xs, ys, label=run.short, **series_style(
                next(i for i, r in enumerate(drawn) if r is run), len(drawn)))
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nDCG@10 (per task)")
    fig.suptitle("Effectiveness vs sparsity")
    outside_legend(fig)
    return save_figure(fig, folder, "ndcg_vs_sparsity",
                       "One point per (model, task) from `<Task>.efficiency.json` (subset/split "
                       f"means). {full_names(drawn)}")


def plot_latency(runs: Sequence[ModelRun], folder: Path) -> Figure | None:
    """Per (model, task): nDCG@10 vs search milliseconds per query (model inference excluded)."""
    data = _efficiency_points(runs, "search_ms_per_query")
    if not data:
        return None
    fig, ax = new_figure(6.5, 4.5)
    for i, (run, xs, ys) in enumerate(data):
        backends = {str(run.efficiency[t].get("backend", "?")) for t in run.efficiency}
        ax.scatter(xs, ys, label=f"{run.short} [{', '.join(sorted(backends))}]",
                   **series_style(i, len(data)))
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("search time per query (ms, inference excluded)")
    ax.set_ylabel("nDCG@10 (per task)")
    ax.set_title("Effectiveness vs search latency")
    ax.grid(alpha=0.3)
    outside_legend(fig)
    return save_figure(fig, folder, "ndcg_vs_latency",
                       "One point per (model, task); search backend in brackets; as measured on this "
                       f"machine. {full_names([run for run, _, _ in data])}")


def plot_axis_curve(runs: Sequence[ModelRun], folder: Path, axis: str) -> Figure | None:
    """Mean main score vs SAE `axis` ("layer" or "width") for families differing only in it."""
    def value(v: Variant) -> float | None:
        return getattr(v, axis)

    groups = _families([r for r in runs if r.variant.space == "latent"], value, axis)
    if not groups:
        return None
    fig, ax = new_figure(6.5, 4.5)
    families = [sorted(g, key=lambda r: value(r.variant)) for g in groups.values()]
    labels = _family_labels(families, axis)
    counts = []
    for group, label in zip(families, labels, strict=True):
        means, n = _common_mean(group)
        counts.append(n)
        ax.plot([value(r.variant) for r in group], means, marker="o", label=label)
    if axis == "width":
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("SAE width (latents)")
    else:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("backbone layer the SAE reads")
    ax.set_ylabel("mean main score (nDCG@10)")
    ax.set_title(f"SAE {axis} ablation")
    ax.grid(alpha=0.3)
    outside_legend(fig)
    return save_figure(fig, folder, f"ndcg_vs_{axis}",
                       f"Mean over the tasks every variant of a family shares; families differ only "
                       f"in {axis}. {_family_caption(families, labels, counts)}")
