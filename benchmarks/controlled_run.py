"""Controlled latent-vs-vocabulary experiment: the same recipe, data, steps and budget for both heads.

For each model config (default: `splare_tiny` = SAE latents, `splade_tiny_llm` = LM head, both on
the embedded Gemma-3-270M at layer 9), with the harness CLIs in subprocesses:

1. before: `python -m harness model=<m> benchmark=<b> <eval overrides>` (zero-shot, no adapter);
2. train:  `python -m harness.train model=<m> data=embedded_pairs <train overrides>`;
3. after:  step 1 again with `model.backbone.adapter=<adapter folder>`.

Writes `<out>/controlled_run.json`, `controlled_run.md` (main score per task before/after with
deltas and means; training time, loss / L0 / FLOPS trends; every command as run) and two figures
(`controlled_scores.png`, `controlled_training.png`). Defaults fit 2 idle CPU cores in under an
hour: the vocabulary head (262k-wide LM head) trains at ~25 s per step of 8 pairs x 64 tokens and
encodes ~126 tok/s (SAE head: ~2.5 s per step, ~836 tok/s; results/bench/encode.md), and the
`controlled` benchmark holds ~96k tokens at eval max length 256. Scale `--steps`/`--batch-size`
up on a GPU.

    PYTHONPATH=. python benchmarks/controlled_run.py [--steps 40] [--batch-size 8] [--max-length 64]
        [--benchmark controlled] [--tasks T ...] [--models splare_tiny splade_tiny_llm] [--dry-run]
    PYTHONPATH=. python benchmarks/controlled_run.py --report-only --out <folder of a finished run>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.paths import REPO_ROOT
from harness.results import git_state

MODELS = ("splare_tiny", "splade_tiny_llm")


def check_models(models: list[str]) -> None:
    """Fail in one line, before any evaluation, on a model config that is unknown or not trainable."""
    from harness.config import compose_config
    from harness.train.model import check_trainable

    for model in models:
        try:
            check_trainable(compose_config([f"model={model}"]).model)
        except ValueError as error:
            raise SystemExit(f"--models {model}: {error}") from None


def eval_command(args: argparse.Namespace, model: str, results: Path, adapter: Path | None) -> list[str]:
    """`python -m harness` for one model (optionally with an adapter) into its own results folder."""
    command = [
        sys.executable, "-m", "harness", f"model={model}", f"benchmark={args.benchmark}",
        f"run.results_dir={results}",
    ]
    if args.eval_max_length:
        command.append(f"model.backbone.max_length={args.eval_max_length}")
    if args.tasks:
        command.append(f"run.tasks=[{','.join(args.tasks)}]")
    if adapter is not None:
        command.append(f"model.backbone.adapter={adapter}")
    return command


def train_command(args: argparse.Namespace, model: str, adapter: Path) -> list[str]:
    """`python -m harness.train` with the budget shared by every model of the comparison."""
    return [
        sys.executable, "-m", "harness.train", f"model={model}", f"data={args.data}", "train=smoke",
        f"train.steps={args.steps}", f"train.batch_size={args.batch_size}",
        f"train.max_length={args.max_length}", f"train.lr={args.lr}", f"train.seed={args.seed}",
        f"train.logging_steps={max(1, args.steps // 10)}", f"train.eval_pairs={args.eval_pairs}",
        f"train.output_dir={adapter}",
    ]


def repo_relative(path: Path) -> Path:
    """How the commands (run from the repository root) name `path`: relative to the repository
    when inside it (records never hold the checkout's absolute path), else absolute."""
    try:
        return path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return path.resolve()


def read_scores(results: Path) -> dict[str, float]:
    """Main score per task of every mteb result file under `results` (one model, one stage)."""
    from mteb.results import TaskResult

    scores = {}
    for path in sorted(results.glob("results/*/*/*.json")):
        if path.name == "model_meta.json":
            continue
        result = TaskResult.from_disk(path)
        scores[result.task_name] = float(result.get_score())
    return scores


def run(command: list[str], dry_run: bool, log: Path) -> float:
    """Run `command` from the repository root, tee-ing output to `log`; returns seconds."""
    print("$ python", " ".join(command[1:]), flush=True)
    if dry_run:
        return 0.0
    start = time.time()
    with log.open("w", encoding="utf-8") as handle:
        proc = subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-1:]
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)} -> {tail} (log: {log})")
    return time.time() - start


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _delta(before: float | None, after: float | None) -> str:
    return "" if before is None or after is None else f"{after - before:+.4f}"


def _window_mean(lines: list[dict[str, Any]], key: str, first: bool) -> float | None:
    """Mean of `key` over the first (or last) quarter of the logging steps (at least one)."""
    values = [line[key] for line in lines if key in line]
    if not values:
        return None
    n = max(1, len(values) // 4)
    chunk = values[:n] if first else values[-n:]
    return sum(chunk) / len(chunk)


def _held_out(lines: list[dict[str, Any]]) -> str:
    """`zero-shot -> final` ranking loss on the held-out training pairs (empty when none were held out)."""
    values = [line["eval_base_loss"] for line in lines if "eval_base_loss" in line]
    return f"{values[0]:.4g} -> {values[-1]:.4g}" if values else ""


def _trend(lines: list[dict[str, Any]], key: str) -> str:
    """`first -> last` quarter means of a logged value, 4 significant digits."""
    first, last = _window_mean(lines, key, True), _window_mean(lines, key, False)
    return "" if first is None or last is None else f"{first:.4g} -> {last:.4g}"


def render(record: dict[str, Any], logs: dict[str, list[dict[str, Any]]], setups: dict[str, dict[str, Any]],
           figures: list[Any]) -> str:
    """Markdown report: scores before/after per task and model (with means), then training figures.
    `setups[model]`: its training run's `temperature` and `loss` description (`read_training_setup`)."""
    args, rows = record["args"], record["rows"]
    models = [row["model"] for row in rows]
    losses = sorted({setup["loss"] for setup in setups.values()})
    loss = (f"the same loss ({losses[0]})" if len(losses) == 1
            else "losses " + "; ".join(f"{m}: {setups[m]['loss']}" for m in models))
    tasks = sorted({t for row in rows for t in (*row["before"], *row["after"])})
    header = " | ".join(f"{m} before | after | delta" for m in models)
    lines = [
        "# Controlled run: SAE latents vs vocabulary head, same recipe",
        "",
        f"Measured by this harness on {record['machine']} ({record['date']}, git {record['git']}):",
        "",
        f"    {record['command']}",
        "",
        *([record["args"]["note"], ""] if record["args"].get("note") else []),
        (
            f"Every model is trained with the same data (`{args['data']}`), {args['steps']} steps x batch "
            f"{args['batch_size']}, max length {args['max_length']}, lr {args['lr']}, seed {args['seed']}, "
            f"{args.get('eval_pairs', '0')} rows held out for the held-out loss, and {loss}; only the "
            "head and its paper temperature tau differ. Evaluated with the harness on benchmark "
            f"`{args['benchmark']}` (eval max length {args['eval_max_length']}), before (zero-shot) and "
            "after training, nDCG@10 (mteb main score). A sliced task's name gives the queries and "
            "documents kept per subset; on slices this small, per-task deltas of a few points are noise-level."
        ),
        "",
        f"| task | {header} |",
        "|---|" + "---|---|---|" * len(models),
    ]
    for task in tasks:
        cells = []
        for row in rows:
            before, after = row["before"].get(task), row["after"].get(task)
            cells += [_score(before), _score(after), _delta(before, after)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    means = []
    for row in rows:
        common = [t for t in tasks if t in row["before"] and t in row["after"]]
        before = sum(row["before"][t] for t in common) / len(common) if common else None
        after = sum(row["after"][t] for t in common) / len(common) if common else None
        means += [_score(before), _score(after), _delta(before, after)]
    lines += ["| **mean** | " + " | ".join(means) + " |", ""]
    lines += [
        "## Training",
        "",
        (
            "| model | tau | train s | eval s (before / after) | held-out ranking loss, step 0 -> last | "
            "ranking loss, first -> last quarter | query L0 | document L0 | query FLOPS | document FLOPS |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        log = logs.get(row["model"], [])
        trends = " | ".join(_trend(log, key) for key in ("base_loss", "query_l0", "document_l0",
                                                          "query_flops", "document_flops"))
        lines.append(
            f"| {row['model']} | {setups[row['model']]['temperature']} | {row['train_seconds']:.0f} | "
            f"{row['eval_seconds'][0]:.0f} / {row['eval_seconds'][1]:.0f} | {_held_out(log)} | {trends} |"
        )
    wall = sum(row["train_seconds"] + sum(row["eval_seconds"]) for row in rows)
    lines += [
        "",
        (
            "L0 and FLOPS are of the uncapped pooled training vectors (top-k applies at inference). "
            f"Wall time of all {3 * len(rows)} commands: {wall / 60:.1f} min."
        ),
        "",
    ]
    for figure in figures:
        lines += [f"![{figure.caption}]({figure.png.name})", "", f"*{figure.caption}*", ""]
    lines += ["## Commands", "", *[f"    {c}" for row in rows for c in row["commands"]], ""]
    return "\n".join(lines)


def write_report(out: Path) -> str:
    """Figures and `controlled_run.md` from `<out>/controlled_run.json` and the adapters' training logs."""
    from harness.reports.training import (
        plot_before_after,
        plot_training_curves,
        read_train_log,
        read_training_setup,
    )

    record = json.loads((out / "controlled_run.json").read_text(encoding="utf-8"))
    logs = {row["model"]: read_train_log(out / row["adapter"]) for row in record["rows"]}
    setups = {row["model"]: read_training_setup(out / row["adapter"]) for row in record["rows"]}
    scores = {row["model"]: {"before": row["before"], "after": row["after"]} for row in record["rows"]}
    figures = [f for f in (plot_before_after(scores, out), plot_training_curves(logs, out)) if f is not None]
    report = render(record, logs, setups, figures)
    (out / "controlled_run.md").write_text(report, encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--data", default="embedded_pairs")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-pairs", type=int, default=32, help="training rows held out for the held-out loss")
    parser.add_argument("--benchmark", default="controlled")
    parser.add_argument("--tasks", nargs="*", default=[], help="run.tasks filter (default: every task)")
    parser.add_argument("--eval-max-length", type=int, default=256, help="0: the model config's")
    parser.add_argument("--out", type=Path, default=None, help="default results/controlled/<timestamp>")
    parser.add_argument("--note", default="", help="a sentence printed under the report's title")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report of an existing --out")
    args = parser.parse_args(argv)
    if args.report_only:
        if args.out is None:
            parser.error("--report-only needs --out <folder of a finished run>")
        print(write_report(args.out.resolve()))
        return 0
    check_models(args.models)
    out = (args.out or REPO_ROOT / "results" / "controlled" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    where = repo_relative(out)  # `out` as the recorded commands name it
    rows = []
    for model in args.models:
        # a unique adapter folder name: the harness names variants (and encoding caches) after it
        adapter = where / f"{model}_{out.name}"
        before, after = where / "results" / f"{model}_before", where / "results" / f"{model}_after"
        commands = [eval_command(args, model, before, None), train_command(args, model, adapter),
                    eval_command(args, model, after, adapter)]
        seconds = [run(c, args.dry_run, out / f"{model}_{stage}.log")
                   for c, stage in zip(commands, ("before", "train", "after"), strict=True)]
        if args.dry_run:
            continue
        rows.append({
            "model": model,
            "adapter": adapter.name,
            "before": read_scores(REPO_ROOT / before),
            "after": read_scores(REPO_ROOT / after),
            "train_seconds": seconds[1],
            "eval_seconds": [seconds[0], seconds[2]],
            "commands": [" ".join(["python", *c[1:]]) for c in commands],
        })
    if args.dry_run:
        return 0
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "command": "python benchmarks/controlled_run.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {version('torch')}",
        "date": time.strftime("%Y-%m-%d"),
        "git": git_state() or "unknown",
        "rows": rows,
    }
    (out / "controlled_run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(write_report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
