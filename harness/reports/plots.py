"""Report figures (matplotlib Agg, PNG + PDF): paired latent/vocabulary scatters, top-k, efficiency,
latency, layer and width curves. Each `plot_*` returns the written Figure, or None when the results
hold nothing to draw (the caller says so in the report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

from harness.reports.collect import ModelRun, subset_scores, task_score
from harness.reports.variants import Variant, top_k_label


@dataclass
class Figure:
    """A written figure: file stem, caption, and where its numbers come from."""

    stem: str
    caption: str
    png: Path
    pdf: Path


def save_figure(fig: plt.Figure, folder: Path, stem: str, caption: str) -> Figure:
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
    fig.tight_layout()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for path, dpi in ((png, 150), (pdf, None)):
        fig.savefig(path, dpi=dpi, bbox_inches="tight", bbox_extra_artists=legends)
    plt.close(fig)
    return Figure(stem, caption, png, pdf)


def _legend(ax: plt.Axes, n: int) -> None:
    """In-axes legend for a few entries; below the axes (outside tight_layout) for many."""
    if n > 4:
        legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
        legend.set_in_layout(False)
    else:
        ax.legend(fontsize=8, frameon=False)


def _plain_log_ticks(axis: matplotlib.axis.Axis) -> None:
    """Log axis ticked at 1, 2, 5 x 10^n and labelled 50, 100, 200 rather than 5x10^1."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def series_style(i: int) -> dict:
    """Distinct colour/marker for series i (20 colours x 4 markers)."""
    return {"color": plt.get_cmap("tab20")(i % 20), "marker": "osD^"[(i // 20) % 4]}


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
    fig, ax = plt.subplots(figsize=(6.5, 5))
    values: list[float] = []
    if {"SPLARE-7B", "SPLADE-Llama"} <= set(paper.columns):
        ax.scatter(paper["SPLADE-Llama"], paper["SPLARE-7B"], color="lightgrey", edgecolor="grey",
                   label="paper: SPLARE-7B vs SPLADE-Llama (Tables 6/7)")
        values += [*paper["SPLADE-Llama"], *paper["SPLARE-7B"]]
    for i, (lat, voc) in enumerate(pairs):
        common = sorted(set(lat.results) & set(voc.results))
        xs = [task_score(voc.results[t], "main_score") for t in common]
        ys = [task_score(lat.results[t], "main_score") for t in common]
        ax.scatter(xs, ys, label=f"measured: {lat.label} vs {voc.label}", **series_style(i))
        values += [v for v in xs + ys if v is not None]
    _diagonal(ax, values)
    ax.set_xlabel("vocabulary head (SPLADE): nDCG@10 per task")
    ax.set_ylabel("latent head (SPLARE): nDCG@10 per task")
    ax.set_title("Latent vs vocabulary head, per task")
    _legend(ax, len(pairs) + 2)
    caption = (f"Per task, paired: {len(pairs)} measured latent/vocabulary pair(s) (same backbone and "
               "top-k) and the paper's Tables 6/7 (grey). Above the diagonal: the latent head wins.")
    return save_figure(fig, folder, "latent_vs_vocab_tasks", caption)


def plot_latent_vs_vocab_languages(runs: Sequence[ModelRun], folder: Path) -> Figure | None:
    """Per language (subset of multi-subset tasks): vocabulary (x) vs latent (y) score."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    values: list[float] = []
    drawn = 0
    for lat, voc in latent_vocab_pairs(runs):
        for task in sorted(set(lat.results) & set(voc.results)):
            a = subset_scores(lat.results[task], "main_score")
            b = subset_scores(voc.results[task], "main_score")
            langs = sorted(set(a) & set(b))
            if len(langs) < 2:
                continue
            xs, ys = [b[g] for g in langs], [a[g] for g in langs]
            ax.scatter(xs, ys, label=f"{task}: {lat.label} vs {voc.label}", **series_style(drawn))
            for g, x, y in zip(langs, xs, ys):
                ax.annotate(g, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            values += xs + ys
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    _diagonal(ax, values)
    ax.set_xlabel("vocabulary head: main score per language")
    ax.set_ylabel("latent head: main score per language")
    ax.set_title("Latent vs vocabulary head, per language")
    _legend(ax, drawn + 1)
    return save_figure(fig, folder, "latent_vs_vocab_languages",
                 "Per language (hf_subset), paired runs with the same backbone and top-k; measured only.")


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


def _family_label(variant: Variant, *vary: str) -> str:
    """What a curve's variants share, from their records: kind, backbone, layer, SAE width."""
    parts = [variant.kind or "?", (variant.backbone or "?").rstrip("/").split("/")[-1]]
    if variant.layer is not None and "layer" not in vary:
        parts.append(f"L{variant.layer}")
    if variant.width is not None and "width" not in vary:
        parts.append(f"{variant.width} latents")
    return " ".join(parts)


def plot_topk(runs: Sequence[ModelRun], reference: pd.DataFrame, folder: Path) -> Figure | None:
    """Mean nDCG@10 vs document top-k ("no cap" drawn right of the largest k); paper Table 3 dashed."""
    groups = _families(runs, _doc_k, "top_k_query", "top_k_document")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
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
    for group in groups.values():
        group = sorted(group, key=lambda r: xpos(_doc_k(r.variant)))
        means, n = _common_mean(group)
        ax.plot([xpos(_doc_k(r.variant)) for r in group], means, marker="o",
                label=f"measured {_family_label(group[0].variant)} ({n} common task(s))")
    ax.set_xscale("log")
    ticks = sorted({xpos(k) for k in ks} | {nocap})
    ax.set_xticks(ticks)
    ax.set_xticklabels(["no cap" if t == nocap else str(int(t)) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("document top-k (query top-k scales with it)")
    ax.set_ylabel("mean nDCG@10")
    ax.set_title("Effectiveness vs document top-k pooling")
    _legend(ax, len(groups) + 2)
    return save_figure(fig, folder, "ndcg_vs_topk",
                 f"Mean nDCG@10 vs document top-k: {len(groups)} measured family(ies) (solid; mean over the "
                 "tasks all its variants share) and the paper's Table 3 SPLARE-7B averages (dashed).")


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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, (key, label) in zip(axes, panels):
        for i, (run, xs, ys) in enumerate(data[key]):
            ax.scatter(xs, ys, label=run.label, **series_style(i))
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nDCG@10 (per task)")
    fig.suptitle("Effectiveness vs sparsity")
    _legend(axes[0], max(len(d) for d in data.values()))
    return save_figure(fig, folder, "ndcg_vs_sparsity",
                 "One point per (model, task) from `<Task>.efficiency.json` (subset/split means).")


def plot_latency(runs: Sequence[ModelRun], folder: Path) -> Figure | None:
    """Per (model, task): nDCG@10 vs search milliseconds per query (model inference excluded)."""
    data = _efficiency_points(runs, "search_ms_per_query")
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (run, xs, ys) in enumerate(data):
        backends = {str(run.efficiency[t].get("backend", "?")) for t in run.efficiency}
        ax.scatter(xs, ys, label=f"{run.label} [{', '.join(sorted(backends))}]", **series_style(i))
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("search time per query (ms, inference excluded)")
    ax.set_ylabel("nDCG@10 (per task)")
    ax.set_title("Effectiveness vs search latency")
    ax.grid(alpha=0.3)
    _legend(ax, len(data))
    return save_figure(fig, folder, "ndcg_vs_latency",
                 "One point per (model, task); search backend in brackets; as measured on this machine.")


def plot_axis_curve(runs: Sequence[ModelRun], folder: Path, axis: str) -> Figure | None:
    """Mean main score vs SAE `axis` ("layer" or "width") for families differing only in it."""
    def value(v: Variant) -> float | None:
        return getattr(v, axis)

    groups = _families([r for r in runs if r.variant.space == "latent"], value, axis)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for group in groups.values():
        group = sorted(group, key=lambda r: value(r.variant))
        means, n = _common_mean(group)
        ax.plot([value(r.variant) for r in group], means, marker="o",
                label=f"{_family_label(group[0].variant, axis)}, top-k {top_k_label(group[0].variant)} "
                      f"({n} task(s))")
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
    _legend(ax, len(groups))
    return save_figure(fig, folder, f"ndcg_vs_{axis}",
                 f"Mean over the tasks every variant of a family shares; families differ only in {axis}.")
