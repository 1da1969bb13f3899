"""Figures of a controlled training run (python -m harness.controlled): retrieval scores before and
after training per task and model, and the training curves (loss, L0 of pooled vectors) read from
each adapter's `train_log.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from harness.reports.plots import Figure, plt, save_figure, series_style


def read_train_log(folder: Path) -> list[dict[str, Any]]:
    """The lines of `<folder>/train_log.jsonl` that carry a training or held-out loss, in step order."""
    lines = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return [line for line in lines if "loss" in line or "eval_base_loss" in line]


def read_training_setup(folder: Path) -> dict[str, Any]:
    """What a finished `python -m harness.train` run in `folder` trained with: `temperature` (tau) and
    a `loss` description (objective, FLOPS lambdas and warm-up), from `train_summary.json` and
    `train_config.yaml`."""
    summary = json.loads((folder / "train_summary.json").read_text(encoding="utf-8"))
    flops = OmegaConf.load(folder / "train_config.yaml").train.flops
    loss = (
        f"{summary['objective']} + FLOPS, lambda_q {flops.query:g}, lambda_d {flops.document:g}, "
        f"{flops.schedule} warm-up over {flops.warmup_ratio:g} of the steps"
    )
    return {"temperature": summary["temperature"], "loss": loss}


def plot_before_after(scores: Mapping[str, Mapping[str, Mapping[str, float]]], folder: Path) -> Figure | None:
    """Grouped bars: one group per task, a before and an after bar per model.

    `scores[model][stage][task]` with stage in {"before", "after"}; tasks missing for a model are
    left out of that model's bars.
    """
    tasks = sorted({t for stages in scores.values() for stage in stages.values() for t in stage})
    if not tasks:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(tasks)), 3.6))
    x = np.arange(len(tasks))
    width = 0.8 / (2 * len(scores))
    for m, (model, stages) in enumerate(scores.items()):
        color = series_style(2 * m)["color"]
        for s, stage in enumerate(("before", "after")):
            values = [stages.get(stage, {}).get(t, np.nan) for t in tasks]
            offset = (2 * m + s - len(scores) + 0.5) * width
            ax.bar(x + offset, values, width, color=color, alpha=0.45 if stage == "before" else 1.0,
                   label=f"{model} {stage}")
    ax.set_xticks(x, [t.split(" (")[0].removeprefix("Local") for t in tasks], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("nDCG@10 (main score)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    caption = "Main score per task before (pale) and after (solid) training, per model; measured by this harness."
    return save_figure(fig, folder, "controlled_scores", caption)


def plot_training_curves(logs: Mapping[str, Sequence[Mapping[str, Any]]], folder: Path) -> Figure | None:
    """Three panels over optimiser steps: contrastive/KL loss (`base_loss`; dashed: `eval_base_loss` on
    the held-out pairs, from step 0), query L0, document L0."""
    if not any(logs.values()):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    panels = ((("base_loss", "eval_base_loss"), "ranking loss"), (("query_l0",), "query L0 (pooled)"),
              (("document_l0",), "document L0 (pooled)"))
    for m, (model, lines) in enumerate(logs.items()):
        for ax, (keys, title) in zip(axes, panels, strict=True):
            for key in keys:
                points = [(line["step"], line[key]) for line in lines if key in line]
                if points:
                    held_out = key.startswith("eval_")
                    ax.plot(*zip(*points, strict=True), label=f"{model} held-out" if held_out else model,
                            linestyle="--" if held_out else "-", **series_style(2 * m))
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
    for ax in axes:  # the heads' losses and L0 differ by orders of magnitude
        ax.set_yscale("log")
    axes[0].legend(fontsize=7, frameon=False)
    caption = "Training logs (mean over each logging window); L0 = non-zero entries of the uncapped pooled vectors."
    return save_figure(fig, folder, "controlled_training", caption)
