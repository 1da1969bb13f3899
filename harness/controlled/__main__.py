"""`python -m harness.controlled [train=smoke|paper] [overrides]`: the controlled run, SAE latents
against a vocabulary head trained with the same recipe.

For each model of `controlled.models` (default: `splare_tiny` = SAE latents, `splade_tiny_llm` = LM
head, both on the embedded Gemma-3-270M at layer 9), with the harness CLIs in subprocesses:

1. before: `python -m harness model=<m> benchmark=<b> …` (zero-shot, no adapter);
2. train:  `python -m harness.train model=<m> data=<d> train=<recipe> …` (the same for every model);
3. after:  step 1 again with `model.backbone.adapter=<adapter folder>`.

Every setting is checked, and every command's config composed, before the first command runs.
The run folder (`controlled.out`) gets `controlled_run.json` (the composed config, the group
choices, the commands, scores per task and per (task, subset), seconds), `controlled_run.md` and
two figures (`harness.controlled.report`), the adapters, the evaluations' results and one log per
command.

Examples:
    python -m harness.controlled                                   # CPU: train=smoke, 40 steps each
    python -m harness.controlled train.steps=100 controlled.tasks=[LocalCranfield]
    python -m harness.controlled train=paper data=msmarco_bge_kd benchmark=mteb_eng \\
        'controlled.models=[splare7b,splade_llama]'                # the paper's recipe (GPU)
    python -m harness.controlled controlled.dry_run=true          # check and print the commands
    python -m harness.controlled --cfg job                         # print the composed config
    python -m harness.controlled report results/controlled/<run>   # rewrite a finished run's report
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from harness.cli import main_with_checked_groups, one_line_errors
from harness.controlled.plan import (
    GROUPS,
    RECORD_FILE,
    STAGES,
    ModelPlan,
    compose_app,
    group_choices,
    plan,
    repo_relative,
    shown,
)
from harness.controlled.scores import read_scores, read_subset_scores
from harness.paths import REPO_ROOT
from harness.results import git_state


def run_command(command: list[str], log: Path) -> float:
    """Run `command` from the repository root, its output into `log`; returns seconds. A failing
    command ends the run in one line with its last output line."""
    print("$", shown(command), flush=True)
    start = time.time()
    with log.open("w", encoding="utf-8") as handle:
        proc = subprocess.run(
            command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-1:]
        raise SystemExit(
            f"failed ({proc.returncode}): {shown(command)} -> {tail} (log: {repo_relative(log)})"
        )
    return time.time() - start


def finished_training(model_plan: ModelPlan) -> dict | None:
    """`train_summary.json` of a training that this very command already finished in the adapter
    folder (a killed controlled run restarted on the same `controlled.out`): its
    `train_config.yaml` equals what the command composes, model, data and train sections alike.
    None otherwise (no folder, a killed training, other settings)."""
    folder = REPO_ROOT / model_plan.adapter
    summary, config = folder / "train_summary.json", folder / "train_config.yaml"
    if not summary.is_file() or not config.is_file():
        return None
    done = OmegaConf.load(config)
    planned = compose_app("train", model_plan.commands["train"][3:])
    for section in ("model", "data", "train"):
        if OmegaConf.to_container(done[section], resolve=True) != OmegaConf.to_container(
            planned[section], resolve=True
        ):
            return None
    return json.loads(summary.read_text(encoding="utf-8"))


def run_model(model_plan: ModelPlan, out: Path) -> dict:
    """The three commands of one model, in order; its row of the record. A training this command
    already finished is reused (its own seconds recorded); the evaluations resume by themselves
    (`run.overwrite=only-missing`)."""
    seconds = {}
    reused = False
    for stage in STAGES:
        summary = finished_training(model_plan) if stage == "train" else None
        if summary is not None:
            print(f"reusing the finished training in {model_plan.adapter}", flush=True)
            seconds[stage], reused = float(summary["seconds"]), True
            continue
        log = out / f"{model_plan.model}_{stage}.log"
        seconds[stage] = run_command(model_plan.commands[stage], log)
    return {
        "train_reused": reused,
        "model": model_plan.model,
        "adapter": model_plan.adapter.name,
        "before": read_scores(REPO_ROOT / model_plan.results["before"]),
        "after": read_scores(REPO_ROOT / model_plan.results["after"]),
        "before_subsets": read_subset_scores(REPO_ROOT / model_plan.results["before"]),
        "after_subsets": read_subset_scores(REPO_ROOT / model_plan.results["after"]),
        "train_seconds": seconds["train"],
        "eval_seconds": [seconds["before"], seconds["after"]],
        "commands": [shown(model_plan.commands[stage]) for stage in STAGES],
    }


@hydra.main(config_path="../../conf", config_name="controlled", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    with one_line_errors():
        hydra_cfg = HydraConfig.get()
        choices = group_choices(hydra_cfg.runtime.choices)
        plans = plan(cfg, choices)
    if cfg.controlled.dry_run:
        for model_plan in plans:
            for stage in STAGES:
                print(shown(model_plan.commands[stage]))
        return
    from harness.controlled.report import write_report

    out = Path(str(cfg.controlled.out)).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_model(model_plan, out) for model_plan in plans]
    record = {
        "command": shlex.join(["python", "-m", "harness.controlled", *hydra_cfg.overrides.task]),
        "choices": choices,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {version('torch')}",
        "date": time.strftime("%Y-%m-%d"),
        "git": git_state() or "unknown",
        "rows": rows,
    }
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(write_report(out))


def main() -> None:
    if sys.argv[1:2] == ["report"]:
        if len(sys.argv) != 3:
            raise SystemExit(
                "usage: python -m harness.controlled report <folder of a finished run>"
            )
        from harness.controlled.report import write_report

        with one_line_errors():
            print(write_report(Path(sys.argv[2]).resolve()))
        return
    main_with_checked_groups(_app, GROUPS)


if __name__ == "__main__":
    main()
