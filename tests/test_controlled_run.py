"""The controlled latent-vs-vocabulary run (benchmarks/controlled_run.py): its commands compose
with the harness's configs, both models get the same training budget, and the report's deltas,
means and training trends match a recomputation from the record it is written from.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import matplotlib.image
import pytest
from hydra import compose, initialize_config_dir

from harness.config import CONF_DIR, compose_config
from harness.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "controlled_run.py"


@pytest.fixture(scope="module")
def controlled():
    spec = importlib.util.spec_from_file_location("controlled_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _overrides(command: list[str], module: str) -> list[str]:
    """The `key=value` arguments after `python -m <module>`."""
    assert command[1:3] == ["-m", module]
    return command[3:]


def test_commands_compose_and_share_the_budget(controlled, tmp_path: Path) -> None:
    args = controlled.argparse.Namespace(
        data="embedded_pairs", steps=40, batch_size=8, max_length=64, lr=1e-4, seed=0,
        benchmark="controlled", tasks=[], eval_max_length=256, eval_pairs=32,
    )
    train = {}
    for model in controlled.MODELS:
        evaluate = compose_config(_overrides(controlled.eval_command(args, model, tmp_path, tmp_path / "a"), "harness"))
        assert evaluate.model.backbone.max_length == 256
        assert evaluate.model.backbone.adapter == str(tmp_path / "a")
        assert evaluate.benchmark.name == "controlled"
        overrides = _overrides(controlled.train_command(args, model, tmp_path / model), "harness.train")
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        assert cfg.model.name == model
        train[model] = {k: v for k, v in cfg.train.items() if k != "output_dir"}
    first, *others = train.values()
    assert all(other == first for other in others), "models must train with the same recipe and budget"
    assert (first["steps"], first["batch_size"], first["max_length"], first["eval_pairs"]) == (40, 8, 64, 32)


def _write_run(folder: Path) -> dict:
    rows = []
    for m, model in enumerate(("latent", "vocab")):
        adapter = folder / f"{model}_adapter"
        adapter.mkdir(parents=True)
        log = [{"step": s, "loss": 3.0 - 0.1 * s - m, "base_loss": 3.0 - 0.1 * s - m,
                "query_l0": 500.0 + s, "document_l0": 900.0 + s, "query_flops": 10.0 * s,
                "document_flops": 20.0 * s} for s in range(1, 9)]
        held_out = [{"step": s, "eval_base_loss": 2.5 - 0.1 * s} for s in (0, 4, 8)]  # not in the base_loss trend
        lines = [json.dumps(line) for line in log + held_out] + [json.dumps({"step": 8, "train_runtime": 1.0})]
        (adapter / "train_log.jsonl").write_text("\n".join(lines))
        (adapter / "train_summary.json").write_text(json.dumps({"objective": "contrastive",
                                                                "temperature": 50.0 if m == 0 else 10.0}))
        (adapter / "train_config.yaml").write_text(
            "train:\n  flops: {query: 0.0001, document: 0.0002, schedule: quadratic, warmup_ratio: 0.33}\n")
        rows.append({
            "model": model, "adapter": adapter.name,
            "before": {"A": 0.2 + m / 10, "B": 0.4}, "after": {"A": 0.3, "B": 0.35 + m / 10},
            "train_seconds": 12.0, "eval_seconds": [3.0, 4.0], "commands": [f"python -m harness model={model}"],
        })
    record = {"args": {"data": "d", "steps": "8", "batch_size": "2", "max_length": "16", "lr": "0.001",
                       "seed": "0", "benchmark": "b", "eval_max_length": "32"},
              "command": "python benchmarks/controlled_run.py", "machine": "test", "date": "today",
              "git": "abc", "rows": rows}
    (folder / "controlled_run.json").write_text(json.dumps(record))
    return record


def _cells(report: str, first: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {first} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_report_matches_the_record(controlled, tmp_path: Path) -> None:
    record = _write_run(tmp_path)
    report = controlled.write_report(tmp_path)
    assert report == (tmp_path / "controlled_run.md").read_text()
    for task in ("A", "B"):
        cells = _cells(report, task)
        for m, row in enumerate(record["rows"]):
            before, after = row["before"][task], row["after"][task]
            assert cells[3 * m: 3 * m + 3] == [f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}"]
    means = _cells(report, "**mean**")
    for m, row in enumerate(record["rows"]):
        before, after = (sum(row[s].values()) / 2 for s in ("before", "after"))
        assert means[3 * m: 3 * m + 2] == [f"{before:.4f}", f"{after:.4f}"]
    # ranking loss: mean of the first and last quarter (2 of 8 logging steps) of the log
    for m, model in enumerate(("latent", "vocab")):
        first = (3.0 - 0.1 - m + 3.0 - 0.2 - m) / 2
        last = (3.0 - 0.7 - m + 3.0 - 0.8 - m) / 2
        assert _cells(report, model)[3] == f"{2.5:.4g} -> {1.7:.4g}"  # held-out: step 0 -> last
        assert _cells(report, model)[4] == f"{first:.4g} -> {last:.4g}"
    # what each model trained with comes from the files its training run left
    assert "the same loss (contrastive + FLOPS, lambda_q 0.0001, lambda_d 0.0002, quadratic warm-up" in report
    assert [_cells(report, model)[0] for model in ("latent", "vocab")] == ["50.0", "10.0"]
    for stem in ("controlled_scores", "controlled_training"):
        assert matplotlib.image.imread(tmp_path / f"{stem}.png").shape[0] > 100
        assert re.search(rf"\]\({stem}\.png\)", report)


@pytest.mark.parametrize("model", ["bm25", "no_such_model"])
def test_untrainable_or_unknown_model_fails_before_any_work(controlled, model: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=f"--models {model}: "):
        controlled.main(["--models", model, "--out", str(out)])
    assert not out.exists()
