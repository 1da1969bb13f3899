"""The controlled latent-vs-vocabulary run (`python -m harness.controlled`): its commands compose
back to the controlled config (the same training recipe and budget for both models, `train=smoke`
or `train=paper`), bad settings fail in one line before anything runs or is written, and the
report's deltas, means, trends and sources match the files it is written from, for this app's
records and for the committed ones of the former `benchmarks/controlled_run.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from harness.config import CONF_DIR
from harness.controlled.plan import group_choices, plan, repo_relative
from harness.controlled.report import write_report
from harness.paths import REPO_ROOT

MODELS = ("splare_tiny", "splade_tiny_llm")
COMMITTED = REPO_ROOT / "results" / "controlled"


def _controlled(tmp_path: Path, *overrides: str) -> tuple[DictConfig, dict]:
    """The composed controlled config and its group choices, as the app sees them."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="controlled",
            overrides=[f"controlled.out={tmp_path / 'run'}", *overrides],
            return_hydra_config=True,
        )
    return cfg, group_choices(cfg.hydra.runtime.choices)


def _app(config_name: str, command: list[str], module: str) -> DictConfig:
    """The config `python -m <module>` composes from a planned command."""
    assert command[1:3] == ["-m", module]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=command[3:])


def test_smoke_commands_reproduce_the_config_and_share_the_budget(tmp_path: Path) -> None:
    cfg, choices = _controlled(tmp_path)
    assert choices == {
        "data": "embedded_pairs",
        "benchmark": "controlled",
        "train": "smoke",
        "controlled_budget": "smoke",
    }
    plans = plan(cfg, choices)
    assert [p.model for p in plans] == list(MODELS)
    train = {}
    for p in plans:
        assert "train=smoke" in p.commands["train"]
        composed = _app("train", p.commands["train"], "harness.train")
        assert composed.model.name == p.model
        assert (
            composed.train.output_dir
            == str(p.adapter)
            == str(repo_relative(tmp_path / "run" / p.adapter.name))
        )
        train[p.model] = {k: v for k, v in composed.train.items() if k != "output_dir"}
        assert composed.data == cfg.data
        for stage in ("before", "after"):
            evaluation = _app("config", p.commands[stage], "harness")
            assert evaluation.model.name == p.model
            assert evaluation.model.backbone.max_length == 256
            assert evaluation.benchmark == cfg.benchmark
            assert evaluation.run.results_dir == str(p.results[stage])
            assert evaluation.model.backbone.adapter == (
                str(p.adapter) if stage == "after" else None
            )
    first, other = train.values()
    assert first == other, "both models must train with the same recipe and budget"
    assert (
        first["steps"],
        first["batch_size"],
        first["max_length"],
        first["lr"],
        first["eval_pairs"],
        first["logging_steps"],
        first["precision"],
    ) == (40, 8, 64, 1e-4, 32, 4, "fp32")
    assert not (tmp_path / "run").exists()


def test_paper_recipe_and_command_line_settings_reach_the_commands(tmp_path: Path) -> None:
    cfg, choices = _controlled(
        tmp_path,
        "train=paper",
        "train.negatives=0",
        "train.steps=7",
        "data.n=50",
        "controlled.models=[splare_tiny]",
        "controlled.tasks=[LocalCranfield]",
    )
    assert choices["train"] == "paper" and choices["controlled_budget"] is None
    (p,) = plan(cfg, choices)
    composed = _app("train", p.commands["train"], "harness.train")
    train = composed.train
    # the paper's recipe as it is (no controlled budget), with this command line's settings
    assert (
        train.batch_size,
        train.lr,
        train.max_length,
        train.lora.r,
        train.gradient_checkpointing,
        train.precision,
    ) == (128, 5e-5, composed.data.max_length, 64, True, "auto")
    assert (train.steps, train.negatives, composed.data.n, train.eval_pairs) == (7, 0, 50, 32)
    evaluation = _app("config", p.commands["before"], "harness")
    model_length = _app("config", [sys.executable, "-m", "harness", "model=splare_tiny"], "harness")
    assert evaluation.model.backbone.max_length == model_length.model.backbone.max_length
    assert list(evaluation.run.tasks) == ["LocalCranfield"]


def test_cpu_recipe_gives_each_head_its_steps_within_one_cpu_budget(tmp_path: Path) -> None:
    cfg, choices = _controlled(tmp_path, "train=cpu", "benchmark=local_multilingual")
    assert choices["controlled_budget"] == "cpu"
    composed = {p.model: _app("train", p.commands["train"], "harness.train") for p in plan(cfg, choices)}
    steps = {model: c.train.steps for model, c in composed.items()}
    assert steps == dict(cfg.controlled.steps)
    assert steps["splade_tiny_llm"] < steps["splare_tiny"]  # the 262k head's steps cost more
    budgets = {c.train.cpu_minutes for c in composed.values()}
    assert budgets == {cfg.train.cpu_minutes} and cfg.train.cpu_minutes > 0
    recipes = [{k: v for k, v in c.train.items() if k not in ("output_dir", "steps")} for c in composed.values()]
    assert recipes[0] == recipes[1], "same recipe and budget apart from the schedule length"
    assert all(c.data.languages is None for c in composed.values())  # every dataset_build language


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["controlled.models=[bm25]"],
            "controlled.models 'bm25': model.kind 'bm25' cannot be trained",
        ),
        (["controlled.models=[no_such_model]"], "unknown model 'no_such_model'"),
        (["controlled.models=[splare_tiny,splare_tiny]"], "controlled.models lists a model twice"),
        (
            ["+controlled.steps={splare_tiny: 3, bm25: 2}"],
            "controlled.steps names ['bm25'], not in controlled.models",
        ),
        (["+controlled.steps={splare_tiny: 0}"], "controlled.steps.splare_tiny must be a positive"),
        (
            ["controlled.eval_max_length=0"],
            "controlled.eval_max_length must be a positive integer or null, got 0",
        ),
        (
            ["+train.no_such_setting=1"],
            "train.no_such_setting is not a setting of python -m harness.train",
        ),
        (["train.steps=0"], "train.steps must be a positive integer or null, got 0"),
        (
            ["train=paper"],
            "data 'embedded_pairs' has no hard negatives (in-batch only) but 8 were asked for",
        ),
        (
            ["controlled.tasks=[NoSuchTask]"],
            "run.tasks names ['NoSuchTask'] not in benchmark 'controlled'",
        ),
    ],
)
def test_bad_settings_fail_before_anything_runs(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg, choices = _controlled(tmp_path, *overrides)
    with pytest.raises(ValueError, match=re.escape(message)):
        plan(cfg, choices)
    assert not (tmp_path / "run").exists()


def test_a_finished_run_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "controlled_run.json").write_text("{}")
    cfg, choices = _controlled(tmp_path)
    with pytest.raises(ValueError, match="already holds a finished run"):
        plan(cfg, choices)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.controlled", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )


def test_cli_dry_run_prints_the_commands_and_writes_nothing(tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    proc = _cli(
        f"controlled.out={tmp_path / 'run'}",
        "controlled.models=[splare_tiny]",
        "controlled.dry_run=true",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()[-3:]
    assert [line.split()[:3] for line in lines] == [
        ["python", "-m", "harness"],
        ["python", "-m", "harness.train"],
        ["python", "-m", "harness"],
    ]
    assert (
        "train=smoke" in lines[1].split()
        and f"model.backbone.adapter={tmp_path}/run/splare_tiny_run" in lines[2]
    )
    assert not (tmp_path / "run").exists() and not any(
        work.iterdir()
    )  # no run folder, no Hydra files


def test_cli_bad_setting_is_one_line(tmp_path: Path) -> None:
    proc = _cli(f"controlled.out={tmp_path / 'run'}", "controlled.models=[bm25]", cwd=REPO_ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (
            "error: controlled.models 'bm25': model.kind 'bm25' cannot be trained here; "
            "trainable kinds: splare, splade_llm"
        )
    ]
    assert not (tmp_path / "run").exists()
    proc = _cli("report", str(tmp_path), cwd=REPO_ROOT)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        f"error: {tmp_path} holds no controlled_run.json (the folder of a finished controlled run)",
    )


def _write_run(folder: Path) -> dict:
    """A finished run of this app with made-up numbers: record (scores per task and per subset),
    adapters' files, one result file (no per-query files)."""
    rows = []
    for m, model in enumerate(("latent", "vocab")):
        adapter = folder / f"{model}_adapter"
        adapter.mkdir(parents=True)
        log = [
            {
                "step": s,
                "loss": 3.0 - 0.1 * s - m,
                "base_loss": 3.0 - 0.1 * s - m,
                "query_l0": 500.0 + s,
                "document_l0": 900.0 + s,
                "query_flops": 10.0 * s,
                "document_flops": 20.0 * s,
            }
            for s in range(1, 9)
        ]
        held_out = [
            {"step": s, "eval_base_loss": 2.5 - 0.1 * s} for s in (0, 4, 8)
        ]  # not in the base_loss trend
        lines = [json.dumps(line) for line in log + held_out] + [
            json.dumps({"step": 8, "train_runtime": 1.0})
        ]
        (adapter / "train_log.jsonl").write_text("\n".join(lines))
        (adapter / "train_summary.json").write_text(
            json.dumps(
                {"objective": "contrastive", "rows": 90, "temperature": 50.0 if m == 0 else 10.0}
            )
        )
        (adapter / "train_config.yaml").write_text(
            "data: {name: d, negatives: 0}\n"
            "train: "
            f"{{output_dir: {adapter}, seed: 0, steps: 8, epochs: 1, batch_size: 2, lr: 0.001, "
            "warmup_ratio: 0.01, max_length: 16, negatives: null, eval_pairs: 10, precision: fp32, "
            "lora: {r: 4}, flops: "
            "{query: 0.0001, document: 0.0002, schedule: quadratic, warmup_ratio: 0.33}}\n"
        )
        rows.append(
            {
                "model": model,
                "adapter": adapter.name,
                "before": {"A": 0.2 + m / 10, "B": 0.4},
                "after": {"A": 0.3, "B": 0.35 + m / 10},
                "before_subsets": {"A": {"de": 0.1 + m / 10, "en": 0.3 + m / 10}, "B": {"x": 0.4}},
                "after_subsets": {"A": {"de": 0.25, "en": 0.35}, "B": {"x": 0.35 + m / 10}},
                "train_seconds": 12.0,
                "eval_seconds": [3.0, 4.0],
                "commands": [f"python -m harness model={model}"],
            }
        )
    result = folder / "results" / "latent_before" / "results" / "variant-a" / "rev1"
    result.mkdir(parents=True)
    (result / "A.json").write_text("{}")
    record = {
        "command": "python -m harness.controlled train.steps=8",
        "choices": {"data": "d", "benchmark": "b", "train": "smoke", "controlled_budget": "smoke"},
        "config": {"controlled": {"note": "A note.", "eval_max_length": 32}},
        "machine": "test",
        "date": "today",
        "git": {"commit": "abc", "dirty": True},
        "rows": rows,
    }
    (folder / "controlled_run.json").write_text(json.dumps(record))
    return record


def _cells(report: str, first: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {first} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_report_matches_the_record(tmp_path: Path) -> None:
    record = _write_run(tmp_path)
    report = write_report(tmp_path)
    assert report == (tmp_path / "controlled_run.md").read_text()
    for task in ("A", "B"):
        cells = _cells(report, task)
        for m, row in enumerate(record["rows"]):
            before, after = row["before"][task], row["after"][task]
            assert cells[3 * m : 3 * m + 3] == [
                f"{before:.4f}",
                f"{after:.4f}",
                f"{after - before:+.4f}",
            ]
    means = _cells(report, "**mean**")
    for m, row in enumerate(record["rows"]):
        before, after = (sum(row[s].values()) / 2 for s in ("before", "after"))
        assert means[3 * m : 3 * m + 2] == [f"{before:.4f}", f"{after:.4f}"]
    # ranking loss: mean of the first and last quarter (2 of 8 logging steps) of the log
    for m, model in enumerate(("latent", "vocab")):
        first = (3.0 - 0.1 - m + 3.0 - 0.2 - m) / 2
        last = (3.0 - 0.7 - m + 3.0 - 0.8 - m) / 2
        assert _cells(report, model)[3] == f"{2.5:.4g} -> {1.7:.4g}"  # held-out: step 0 -> last
        assert _cells(report, model)[4] == f"{first:.4g} -> {last:.4g}"
    # what each model trained with comes from the files its training run left
    assert (
        "(recipe: `train=smoke` with the controlled budget `conf/controlled_budget/smoke.yaml`)"
        in report
    )
    assert (
        "data `d`, 90 training rows, 8 steps x batch 2, max length 16, lr 0.001 (warm-up 0.01), "
        "seed 0, "
        "LoRA r 4, the data's own negatives (0 per query), precision fp32, 10 rows held out"
    ) in report
    assert (
        "the same loss (contrastive + FLOPS, lambda_q 0.0001, lambda_d 0.0002, quadratic warm-up"
        in report
    )
    assert [_cells(report, model)[0] for model in ("latent", "vocab")] == ["50.0", "10.0"]
    assert (
        "git abc+dirty" in report and "\nA note.\n" in report and "(eval max length 32)" in report
    )
    # where the numbers come from: the result folders found, the adapters, the record
    where = repo_relative(tmp_path)
    sources = report.split("## Where the numbers come from")[1]
    assert f"  - latent before: `{where}/results/latent_before/results/variant-a/rev1/`" in sources
    assert f"  - vocab after: `{where}/results/vocab_after/` (not in this checkout)" in sources
    assert f"  - vocab: `{where}/vocab_adapter/`" in sources
    assert "the composed config in `controlled_run.json`" in sources
    for stem in ("controlled_scores", "controlled_training"):
        assert matplotlib.image.imread(tmp_path / f"{stem}.png").shape[0] > 100
        assert re.search(rf"\]\({stem}\.png\)", report)


def test_different_training_settings_are_reported(tmp_path: Path) -> None:
    _write_run(tmp_path)
    config = tmp_path / "vocab_adapter" / "train_config.yaml"
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.002"))
    report = write_report(tmp_path)
    assert (
        "The models' training settings differ (`train_config.yaml`): lr: latent 0.001, vocab 0.002."
        in report
    )


def _without_p_values(report: str) -> str:
    """The report with the two p-value cells of every significance row blanked: ranx's
    randomization test draws its permutations in parallel numba threads, so a re-run can move a
    p-value by one permutation (0.0001 vs <1e-04) even with the seed fixed."""
    return re.sub(r"(\| \[[^]|]*\] )\| [^|]* \| [^|]* \|$", r"\1| p | p |", report, flags=re.MULTILINE)


@pytest.mark.parametrize(
    "run", sorted(p.name for p in COMMITTED.iterdir() if (p / "controlled_run.json").is_file())
)
def test_committed_reports_are_what_the_app_writes(run: str, tmp_path: Path) -> None:
    """The committed records still make a report, and the committed report is that one:
    regenerated in a copy, it differs only by the folder's path. Those of the former
    benchmarks/controlled_run.py (`args`) render as they always did: no per-language or
    significance section, no columns of CPU spent."""
    copy = tmp_path / run
    shutil.copytree(
        COMMITTED / run, copy, ignore=shutil.ignore_patterns("*.png", "*.pdf", "controlled_run.md")
    )
    regenerated = write_report(copy)
    record = json.loads((copy / "controlled_run.json").read_text())
    tasks = {t for row in record["rows"] for t in (*row["before"], *row["after"])}
    assert ("on slices this small" in regenerated) == any("(slice_" in t for t in tasks)
    assert _without_p_values(
        regenerated.replace(str(repo_relative(copy)), f"results/controlled/{run}")
    ) == _without_p_values((COMMITTED / run / "controlled_run.md").read_text())
    if "args" in record:
        assert "the command's flags, recorded in `controlled_run.json` (`args`)" in regenerated
        assert "## Per language" not in regenerated and "## Significance" not in regenerated
    else:
        assert "## Per language" in regenerated and "## Significance" in regenerated
    for row in record["rows"]:  # every evaluation's result files are named as the scores' source
        for stage in ("before", "after"):
            assert (
                f"  - {row['model']} {stage}: "
                f"`{repo_relative(copy)}/results/{row['model']}_{stage}/results/"
                "splare-harness__" in regenerated
            )
    for stem in ("controlled_scores", "controlled_training"):
        assert matplotlib.image.imread(copy / f"{stem}.png").shape[0] > 100


def _section(report: str, title: str) -> str:
    """The text of the section headed `title` (`## ` or `### `), up to the next heading."""
    start = report.index(f"{title}\n")
    rest = report[start + len(title) + 1 :]
    ends = [i for i in (rest.find("\n## "), rest.find("\n### ")) if i >= 0]
    return rest[: min(ends)] if ends else rest


def _row(text: str, *first: str) -> list[str]:
    """The cells after `first` of the table row of `text` that starts with the cells `first`."""
    prefix = "| " + " | ".join(first) + " |"
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return [cell.strip() for cell in line.strip("|").split("|")][len(first) :]


def _write_evaluation(
    stage_dir: Path, per_query: dict[tuple[str, str, str], dict[str, float]]
) -> None:
    """One evaluation's results folder as `python -m harness` writes it: mteb's task files (main
    score of a subset = mean of its per-query scores, rounded as mteb stores it), the variant
    record and the per-query files. `per_query`: {(task, split, subset): {query id: nDCG@10}}."""
    import shutil as _shutil

    folder = stage_dir / "results" / "org__model" / "rev1"
    _shutil.rmtree(stage_dir / "results", ignore_errors=True)
    (folder / "harness").mkdir(parents=True)
    (folder / "harness" / "variant.json").write_text(json.dumps({"config": "m"}))
    tasks: dict[str, dict[str, list]] = {}
    for (task, split, subset), scores in per_query.items():
        mean = round(sum(scores.values()) / len(scores), 5)
        tasks.setdefault(task, {}).setdefault(split, []).append(
            {"hf_subset": subset, "languages": ["eng-Latn"], "main_score": mean}
        )
        queries = folder / "harness" / "queries" / task / split
        queries.mkdir(parents=True, exist_ok=True)
        (queries / f"{subset}.ndcg_at_10.json").write_text(
            json.dumps({"task": task, "split": split, "subset": subset, "per_query": scores})
        )
    for task, splits in tasks.items():
        (folder / f"{task}.json").write_text(
            json.dumps(
                {
                    "dataset_revision": "r",
                    "task_name": task,
                    "mteb_version": "2.0.0",
                    "evaluation_time": 1.0,
                    "kg_co2_emissions": None,
                    "scores": splits,
                }
            )
        )


def test_per_subset_table_comes_from_the_record(tmp_path: Path) -> None:
    record = _write_run(tmp_path)
    report = write_report(tmp_path)
    table = _section(report, "## Per language")
    for task, subset in (("A", "de"), ("A", "en"), ("B", "x")):
        cells = _row(table, task, subset)
        for m, row in enumerate(record["rows"]):
            before, after = row["before_subsets"][task][subset], row["after_subsets"][task][subset]
            assert cells[3 * m : 3 * m + 3] == [
                f"{before:.4f}",
                f"{after:.4f}",
                f"{after - before:+.4f}",
            ]
    assert _row(table, "A", "de")[2] == "+0.1500"  # latent: 0.10 -> 0.25
    # no evaluation wrote per-query files: the section says so in one line and has no table
    significance = _section(report, "## Significance")
    missing = [line for line in significance.splitlines() if line.startswith("No per-query")]
    assert len(missing) == 1 and all(
        f"{m} {s}" in missing[0] for m in ("latent", "vocab") for s in ("before", "after")
    )
    assert "### " not in report.split("## Significance")[1].split("## Training")[0]
    # the training table keeps its columns: these summaries say nothing of CPU time
    assert "CPU s / budget" not in report and "Steps done:" not in report


def test_per_subset_scores_are_read_from_the_result_files_when_the_record_lacks_them(
    tmp_path: Path,
) -> None:
    """A record of this app written before `rows[].<stage>_subsets` were kept (as the app's
    process that imported the older reader writes it) gets them from the evaluations' files."""
    from harness.controlled.scores import read_scores, read_subset_scores

    record = _write_run(tmp_path)
    shifts = {("latent", "before"): 0.0, ("latent", "after"): 0.1, ("vocab", "before"): 0.2,
              ("vocab", "after"): 0.3}
    for (model, stage), shift in shifts.items():
        _write_evaluation(
            tmp_path / "results" / f"{model}_{stage}",
            {
                ("A", "test", "de"): {f"q{i}": 0.1 * (i % 3) + shift for i in range(9)},
                ("A", "test", "en"): {f"q{i}": 0.05 * (i % 5) + shift for i in range(10)},
            },
        )
    latent_after = tmp_path / "results" / "latent_after"
    assert read_subset_scores(latent_after) == {"A": {"de": 0.2, "en": 0.2}}
    assert read_scores(latent_after) == {"A": pytest.approx(0.2)}  # mean of the subsets
    for row in record["rows"]:
        del row["before_subsets"], row["after_subsets"]
    (tmp_path / "controlled_run.json").write_text(json.dumps(record))
    table = _section(write_report(tmp_path), "## Per language")
    assert _row(table, "A", "de") == ["0.1000", "0.2000", "+0.1000", "0.3000", "0.4000", "+0.1000"]
    assert _row(table, "A", "en") == ["0.1000", "0.2000", "+0.1000", "0.3000", "0.4000", "+0.1000"]
    assert "| B |" not in table  # task B has no result files here


def test_significance_of_identical_and_shifted_queries(tmp_path: Path) -> None:
    """Hand-checkable: latent's after equals its before query by query (delta 0, p = 1, not
    significant); vocab's after is its before + 0.5 on each of 30 queries (every random swap but
    none/all gives a smaller |mean|: p < 1e-4, significant, interval exactly [+0.5, +0.5])."""
    from harness.controlled.scores import paired_subsets, read_per_query

    _write_run(tmp_path)
    base = {f"q{i:02d}": (i % 7) / 14 for i in range(30)}  # values in [0, 0.43]
    units = [("A", "test", "de"), ("A", "test", "en")]
    scores = {
        ("latent", "before"): base,
        ("latent", "after"): base,
        ("vocab", "before"): base,
        ("vocab", "after"): {q: v + 0.5 for q, v in base.items()},
    }
    for (model, stage), per_query in scores.items():
        _write_evaluation(
            tmp_path / "results" / f"{model}_{stage}", {unit: per_query for unit in units}
        )
    report = write_report(tmp_path)
    significance = report.split("## Significance")[1].split("## Training")[0]
    assert "No per-query" not in significance
    same = _section(report, "### latent: after vs before training")
    shifted = _section(report, "### vocab: after vs before training")
    models = _section(report, "### After training: vocab vs latent")
    mean = sum(base.values()) / 30
    for subset in ("de", "en"):
        assert _row(same, "A", subset) == [
            "30", f"{mean:.4f}", f"{mean:.4f}", "+0.0000", "[+0.0000, +0.0000]", "1", "1"
        ]
        assert _row(shifted, "A", subset) == [
            "30", f"{mean:.4f}", f"{mean + 0.5:.4f}", "+0.5000 *", "[+0.5000, +0.5000]",
            "<1e-04", "<1e-04"
        ]
        assert _row(models, "A", subset)[3] == "+0.5000 *"
    assert "| task | subset | queries | before | after | delta (after - before) |" in same
    assert "| task | subset | queries | latent | vocab | delta (vocab - latent) |" in models
    # the same numbers from the functions the report calls
    tests = paired_subsets(
        read_per_query(tmp_path / "results" / "latent_before"),
        read_per_query(tmp_path / "results" / "latent_after"),
    )
    assert [(t.subset, t.paired.p, t.p_holm, t.significant) for t in tests] == [
        ("de", 1.0, 1.0, False), ("en", 1.0, 1.0, False)
    ]
    tests = paired_subsets(
        read_per_query(tmp_path / "results" / "vocab_before"),
        read_per_query(tmp_path / "results" / "vocab_after"),
    )
    assert all(t.paired.delta == pytest.approx(0.5) and t.significant for t in tests)
    assert all(t.paired.n == 30 and t.paired.wins == 30 for t in tests)


def test_significance_leaves_out_a_stage_without_per_query_files(tmp_path: Path) -> None:
    _write_run(tmp_path)
    base = {f"q{i}": i / 20 for i in range(20)}
    for model, stage in (("latent", "before"), ("latent", "after"), ("vocab", "before")):
        _write_evaluation(tmp_path / "results" / f"{model}_{stage}", {("A", "test", "en"): base})
    report = write_report(tmp_path)
    significance = report.split("## Significance")[1].split("## Training")[0]
    where = repo_relative(tmp_path / "results" / "vocab_after")
    assert [line for line in significance.splitlines() if line.startswith("No per-query")] == [
        f"No per-query files for vocab after (`{where}/`): the tests that need them are left out."
    ]
    assert "### latent: after vs before training" in significance
    assert "### vocab:" not in significance and "### After training" not in significance


def test_a_stale_per_query_file_fails_in_one_line(tmp_path: Path) -> None:
    from harness.controlled.scores import read_per_query

    stage = tmp_path / "results" / "latent_before"
    _write_evaluation(stage, {("A", "test", "en"): {"q1": 0.5, "q2": 1.0}})
    (per_query,) = stage.glob("results/*/*/harness/queries/A/test/en.ndcg_at_10.json")
    per_query.write_text(json.dumps({"per_query": {"q1": 0.0, "q2": 1.0}}))
    with pytest.raises(ValueError, match=r"mean nDCG@10 0.5 is not mteb's A en score 0.75"):
        read_per_query(stage)


def test_training_table_says_what_each_run_spent(tmp_path: Path) -> None:
    _write_run(tmp_path)
    summary = tmp_path / "latent_adapter" / "train_summary.json"
    spent = {"steps": 5, "cpu_seconds": 1800.4, "cpu_budget_seconds": 1800.0,
             "stopped_by_cpu_budget": True}
    summary.write_text(json.dumps({**json.loads(summary.read_text()), **spent}))
    report = write_report(tmp_path)
    training = _section(report, "## Training")
    assert (
        "| model | tau | train s | steps (done / planned) | CPU s / budget | stopped by budget | "
        "eval s (before / after) |"
    ) in training
    assert _row(training, "latent")[2:5] == ["5 / 8", "1800 / 1800", "yes"]
    assert _row(training, "vocab")[2:5] == ["", "", ""]  # an older summary: empty cells
    header = next(line for line in training.splitlines() if line.startswith("| model |"))
    rule = next(line for line in training.splitlines() if line.startswith("|---"))
    assert header.count("|") == rule.count("|") == _row(training, "vocab").__len__() + 2
    assert "Steps done: the optimiser steps" in report


def test_a_restarted_run_reuses_only_a_training_of_the_same_command(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from harness.controlled.__main__ import finished_training

    cfg, choices = _controlled(tmp_path, "controlled.models=[splare_tiny]")
    (p,) = plan(cfg, choices)
    folder = REPO_ROOT / p.adapter
    assert finished_training(p) is None  # nothing trained yet
    composed = _app("train", p.commands["train"], "harness.train")
    folder.mkdir(parents=True)
    (folder / "train_config.yaml").write_text(OmegaConf.to_yaml(composed, resolve=True))
    assert finished_training(p) is None  # killed before the end: no summary
    (folder / "train_summary.json").write_text(json.dumps({"seconds": 12.5, "steps": 40}))
    assert finished_training(p) == {"seconds": 12.5, "steps": 40}
    composed.train.lr = 2 * composed.train.lr  # trained with other settings: trained again
    (folder / "train_config.yaml").write_text(OmegaConf.to_yaml(composed, resolve=True))
    assert finished_training(p) is None
