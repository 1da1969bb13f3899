"""Controlled latent-vs-vocabulary experiment: the same recipe, data, steps and budget for both heads.

For each model config (default: `splare_tiny` = SAE latents, `splade_tiny_llm` = LM head, both on
the embedded Gemma-3-270M at layer 9), with the harness CLIs in subprocesses:

1. before: `python -m harness model=<m> benchmark=<b> <eval overrides>` (zero-shot, no adapter);
2. train:  `python -m harness.train model=<m> data=embedded_pairs <train overrides>`;
3. after:  step 1 again with `model.backbone.adapter=<adapter folder>`.

Writes `<out>/controlled_run.md` and `.json`: main score per task before/after, training time, last
logged loss / FLOPS / L0, and every command as run. Defaults aim at 2 CPU cores in about an hour:
the vocabulary head (262k-wide LM head) trains at ~85 s per step of 8 pairs x 64 tokens on a
busy 2-core machine and evaluates the embedded benchmark (~40k tokens) in minutes, the SAE head
is several times faster; scale `--steps`/`--batch-size` up on a GPU.

    PYTHONPATH=. python benchmarks/controlled_run.py [--steps 20] [--batch-size 8] [--max-length 64]
        [--benchmark embedded] [--tasks T ...] [--models splare_tiny splade_tiny_llm] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.paths import REPO_ROOT

MODELS = ("splare_tiny", "splade_tiny_llm")


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
        sys.executable, "-m", "harness.train", f"model={model}", f"data={args.data}",
        f"train.steps={args.steps}", f"train.batch_size={args.batch_size}",
        f"train.max_length={args.max_length}", f"train.lr={args.lr}", f"train.seed={args.seed}",
        f"train.logging_steps={max(1, args.steps // 10)}", f"train.output_dir={adapter}",
    ]


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


def last_log(adapter: Path) -> dict[str, Any]:
    """The last training log line carrying a loss (loss, FLOPS, L0 of queries and documents)."""
    lines = [json.loads(line) for line in (adapter / "train_log.jsonl").read_text().splitlines()]
    with_loss = [line for line in lines if "loss" in line]
    return with_loss[-1] if with_loss else {}


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


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown report: one line per (model, task), scores before/after, training figures."""
    lines = [
        "# Controlled run: SAE latents vs vocabulary head, same recipe",
        "",
        (
            f"Data `{args.data}`, {args.steps} steps x batch {args.batch_size}, max length {args.max_length} "
            f"(train) / {args.eval_max_length or 'model config'} (eval), lr {args.lr}, seed {args.seed}; "
            f"benchmark `{args.benchmark}`."
        ),
        "",
        "| model | task | before | after | train s | loss | query L0 | doc L0 | doc FLOPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        log = row["last_log"]
        for task in sorted(set(row["before"]) | set(row["after"])):
            before, after = row["before"].get(task), row["after"].get(task)
            lines.append(
                f"| {row['model']} | {task} | {before if before is None else f'{before:.4f}'} | "
                f"{after if after is None else f'{after:.4f}'} | {row['train_seconds']:.0f} | "
                f"{log.get('loss', '')} | {log.get('query_l0', '')} | {log.get('document_l0', '')} | "
                f"{log.get('document_flops', '')} |"
            )
    lines += ["", "Commands:", "", *[f"    {c}" for row in rows for c in row["commands"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--data", default="embedded_pairs")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--benchmark", default="embedded")
    parser.add_argument("--tasks", nargs="*", default=[], help="run.tasks filter (default: every task)")
    parser.add_argument("--eval-max-length", type=int, default=None, help="default: the model config's")
    parser.add_argument("--out", type=Path, default=None, help="default results/controlled/<timestamp>")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    out = (args.out or REPO_ROOT / "results" / "controlled" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        # a unique adapter folder name: the harness names variants (and encoding caches) after it
        adapter = out / f"{model}_{out.name}"
        before, after = out / "results" / f"{model}_before", out / "results" / f"{model}_after"
        commands = [eval_command(args, model, before, None), train_command(args, model, adapter),
                    eval_command(args, model, after, adapter)]
        seconds = [run(c, args.dry_run, out / f"{model}_{stage}.log")
                   for c, stage in zip(commands, ("before", "train", "after"), strict=True)]
        rows.append({
            "model": model,
            "before": {} if args.dry_run else read_scores(before),
            "after": {} if args.dry_run else read_scores(after),
            "train_seconds": seconds[1],
            "eval_seconds": [seconds[0], seconds[2]],
            "last_log": {} if args.dry_run else last_log(adapter),
            "commands": [" ".join(["python", *c[1:]]) for c in commands],
        })
    (out / "controlled_run.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                         "rows": rows}, indent=2))
    report = render(rows, args)
    (out / "controlled_run.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
