"""`controlled_run.md` and its two figures, from a finished run's folder: the record
(`controlled_run.json`), each adapter's training files and the evaluations' mteb result files.

Reads the records of this app (`config`, `choices`) and those of the former
`benchmarks/controlled_run.py` (`args`: its command-line flags) alike. A record of this app also
gets a per-(task, subset) table and paired significance tests per subset, from the evaluations'
result and per-query files (`harness.controlled.scores`); the former script's records render as
they always did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.controlled.plan import RECORD_FILE, repo_relative
from harness.controlled.scores import (
    ALPHA,
    PERMUTATIONS,
    SEED,
    PerQuery,
    SubsetScores,
    paired_subsets,
    read_per_query,
    read_subset_scores,
    stage_dir,
)
from harness.reports.training import (
    plot_before_after,
    plot_training_curves,
    read_train_log,
    read_training_setup,
)

REPORT_FILE = "controlled_run.md"
TRAIN_CONFIG = "train_config.yaml"


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
    """`zero-shot -> final` ranking loss on the held-out training pairs (empty when none were
    held out)."""
    values = [line["eval_base_loss"] for line in lines if "eval_base_loss" in line]
    return f"{values[0]:.4g} -> {values[-1]:.4g}" if values else ""


def _trend(lines: list[dict[str, Any]], key: str) -> str:
    """`first -> last` quarter means of a logged value, 4 significant digits."""
    first, last = _window_mean(lines, key, True), _window_mean(lines, key, False)
    return "" if first is None or last is None else f"{first:.4g} -> {last:.4g}"


#: `train_summary.json` keys of what a training run spent (older runs' summaries lack them; their
#: reports have no such columns).
SPENT_KEYS = frozenset({"cpu_seconds", "cpu_budget_seconds", "stopped_by_cpu_budget"})
SPENT_NOTE = (
    "Steps done: the optimiser steps each training run took (`train_summary.json` `steps`), "
    f"planned: `train.steps` of its `{TRAIN_CONFIG}`. CPU s: the training process's CPU time "
    "(`cpu_seconds`) against its `train.cpu_minutes` budget (`cpu_budget_seconds`; none: no "
    "budget); a run the budget stopped (`stopped_by_cpu_budget`) ended before its planned steps."
)


def _spent_cells(summary: Mapping[str, Any], train: Mapping[str, Any]) -> str:
    """`steps (done / planned) | CPU s / budget | stopped by budget | ` of one training run (empty
    cells where its summary lacks the keys)."""
    done, planned = summary.get("steps"), train.get("steps")
    steps = "" if done is None else f"{done}" + ("" if planned is None else f" / {planned}")
    cpu, budget = summary.get("cpu_seconds"), summary.get("cpu_budget_seconds")
    used = "" if cpu is None else f"{cpu:.0f} / " + ("none" if budget is None else f"{budget:.0f}")
    stopped = summary.get("stopped_by_cpu_budget")
    stopped_cell = "" if stopped is None else ("yes" if stopped else "no")
    return f"{steps} | {used} | {stopped_cell} | "


def _git(value: Any) -> str:
    """The record's git state: `{"commit", "dirty"}` (this app) or a free-text line (older
    records)."""
    if isinstance(value, Mapping):
        return value["commit"] + ("+dirty" if value.get("dirty") else "")
    return str(value)


def run_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the report says about how the run was set up, from either kind of record: `note`,
    `benchmark`, `eval_max_length` (None = the model config's), `recipe` (the `train=` group, or
    None when the command named none) and `config` (where the settings are recorded)."""
    if "config" in record:
        settings, choices = record["config"]["controlled"], record["choices"]
        budget = choices.get("controlled_budget")
        recipe = f"`train={choices['train']}`" + (
            f" with the controlled budget `conf/controlled_budget/{budget}.yaml`" if budget else ""
        )
        return {
            "note": settings["note"],
            "benchmark": choices["benchmark"],
            "eval_max_length": settings["eval_max_length"],
            "recipe": recipe,
            "config": (
                f"the composed config in `{RECORD_FILE}` (`config`; group choices in `choices`)"
            ),
        }
    args = record["args"]
    trained = [c for row in record["rows"] for c in row["commands"] if " harness.train " in c]
    named = sorted({word for c in trained for word in c.split() if word.startswith("train=")})
    return {
        "note": args.get("note", ""),
        "benchmark": args["benchmark"],
        "eval_max_length": int(args["eval_max_length"]) or None,
        "recipe": f"`{named[0]}`"
        if len(named) == 1
        else "the training app's defaults of the time, its command names no `train=` group",
        "config": f"the command's flags, recorded in `{RECORD_FILE}` (`args`)",
    }


def _train_sentence(
    trained: Mapping[str, Mapping[str, Any]],
    summaries: Mapping[str, Mapping[str, Any]],
    setups: Mapping[str, Mapping[str, Any]],
    recipe: str,
) -> str:
    """The training settings shared by every model (from each adapter's `train_config.yaml`), or
    the settings in which they differ."""
    models = list(trained)
    sections = {
        m: {**cfg["train"], "output_dir": None, "data": cfg["data"]} for m, cfg in trained.items()
    }
    first = sections[models[0]]
    differ = sorted(
        {
            key
            for m in models
            for key in {*first, *sections[m]}
            if sections[m].get(key) != first.get(key)
        }
    )
    if differ:
        return (
            f"Recipe: {recipe}. The models' training settings differ (`{TRAIN_CONFIG}`): "
            + "; ".join(
                f"{key}: " + ", ".join(f"{m} {sections[m].get(key)!r}" for m in models)
                for key in differ
            )
            + "."
        )
    train, data = trained[models[0]]["train"], trained[models[0]]["data"]
    length = f"{train['steps']} steps" if train.get("steps") else f"{train['epochs']} epoch(s)"
    rows = {summaries[m].get("rows") for m in models}
    rows_text = f", {rows.pop()} training rows" if len(rows) == 1 and None not in rows else ""
    negatives = train.get("negatives")
    if negatives is None:
        negatives_text = f"the data's own negatives ({data.get('negatives', 0)} per query)"
    else:
        negatives_text = f"{negatives} hard negatives per query"
    precision = f", precision {train['precision']}" if "precision" in train else ""
    losses = sorted({setup["loss"] for setup in setups.values()})
    loss = (
        f"the same loss ({losses[0]})"
        if len(losses) == 1
        else "losses " + "; ".join(f"{m}: {setups[m]['loss']}" for m in models)
    )
    return (
        f"Every model is trained by `python -m harness.train` (recipe: {recipe}) with the same "
        "settings "
        f"(the `data` and `train` sections of each adapter's `{TRAIN_CONFIG}`, identical but for "
        f"`output_dir`): data `{data['name']}`{rows_text}, {length} x batch {train['batch_size']}, "
        f"max length {train['max_length']}, lr {train['lr']} (warm-up {train['warmup_ratio']}), "
        f"seed {train['seed']}, LoRA r {train['lora']['r']}, {negatives_text}{precision}, "
        f"{train.get('eval_pairs', 0)} rows held out for the held-out loss, and {loss}; only the "
        "head "
        "and its paper temperature tau differ."
    )


def _result_folders(stage_dir: Path) -> list[str]:
    """`<variant>/<revision>` folders of the mteb result files under an evaluation's results
    folder."""
    return sorted(
        {
            str(p.parent.relative_to(stage_dir / "results"))
            for p in stage_dir.glob("results/*/*/*.json")
            if p.name != "model_meta.json"
        }
    )


def subset_scores(record: Mapping[str, Any], out: Path) -> dict[str, dict[str, SubsetScores]] | None:
    """`{model: {stage: {task: {subset: main score}}}}` of a run in `out`: the record's
    `rows[].before_subsets` / `after_subsets`, or, where a record of this app lacks them (written
    before they were kept), read from the evaluation's result files (`read_subset_scores`). None
    for a record of the former `benchmarks/controlled_run.py` (`args`), whose report has no
    per-subset sections."""
    if "config" not in record:
        return None
    return {
        row["model"]: {
            stage: row[f"{stage}_subsets"]
            if f"{stage}_subsets" in row
            else read_subset_scores(stage_dir(out, row["model"], stage))
            for stage in ("before", "after")
        }
        for row in record["rows"]
    }


def _subset_lines(subsets: Mapping[str, Mapping[str, SubsetScores]]) -> list[str]:
    """The per-(task, subset) table: before / after / delta per model."""
    models = list(subsets)
    keys = sorted(
        {
            (task, subset)
            for stages in subsets.values()
            for scores in stages.values()
            for task, by_subset in scores.items()
            for subset in by_subset
        }
    )
    lines = [
        "## Per language",
        "",
        (
            "mteb's main score of each (task, subset) (a subset is a language or a query-document "
            "language pair), before and after training."
        ),
        "",
        "| task | subset | " + " | ".join(f"{m} before | after | delta" for m in models) + " |",
        "|---|---|" + "---|---|---|" * len(models),
    ]
    for task, subset in keys:
        cells = []
        for model in models:
            before = subsets[model]["before"].get(task, {}).get(subset)
            after = subsets[model]["after"].get(task, {}).get(subset)
            cells += [_score(before), _score(after), _delta(before, after)]
        lines.append(f"| {task} | {subset} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _test_table(tests: Sequence[Any], label_a: str, label_b: str) -> list[str]:
    """Markdown rows of `paired_subsets`' tests, B vs A; `*` marks a significant delta."""
    from harness.compare.report import format_p

    lines = [
        (
            f"| task | subset | queries | {label_a} | {label_b} | delta ({label_b} - {label_a}) "
            "| 95% CI | p | p (Holm) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for test in tests:
        paired = test.paired
        mark = " *" if test.significant else ""
        lines.append(
            f"| {test.task} | {test.subset} | {paired.n} | {paired.mean_a:.4f} | "
            f"{paired.mean_b:.4f} | {paired.delta:+.4f}{mark} | "
            f"[{paired.low:+.4f}, {paired.high:+.4f}] | {format_p(paired.p, PERMUTATIONS)} | "
            f"{format_p(test.p_holm, PERMUTATIONS)} |"
        )
    return lines


def significance_lines(
    per_query: Mapping[str, Mapping[str, PerQuery | None]], out: Path
) -> list[str]:
    """The significance section: per model, after vs before; after training, every other model
    vs the first. `per_query[model][stage]` is `read_per_query` of that evaluation (None: it
    wrote no per-query files; the tests that need it are left out, said in one line)."""
    models = list(per_query)
    lines = [
        "## Significance",
        "",
        (
            "Per (task, subset), paired over its queries: ranx's Fisher randomization test "
            f"(two-sided, {PERMUTATIONS} random swaps, seed {SEED}) and a 95% percentile-bootstrap "
            "interval of the mean difference (scipy), by `harness.compare.significance`, on the "
            "per-query nDCG@10 each evaluation wrote "
            "(`harness/queries/<Task>/<split>/<subset>.ndcg_at_10.json`, each subset's mean "
            "checked against mteb's score, which it stores rounded to 5 decimals: the last digit "
            "of a mean here can differ from the table above); p (Holm) corrects across the rows "
            f"of one table, and `*` marks p (Holm) <= {ALPHA}."
        ),
        "",
    ]
    missing = [
        f"{model} {stage} (`{repo_relative(stage_dir(out, model, stage))}/`)"
        for model in models
        for stage in ("before", "after")
        if per_query[model][stage] is None
    ]
    if missing:
        lines += [
            f"No per-query files for {', '.join(missing)}: the tests that need them are left out.",
            "",
        ]
    pairs = [
        (f"{model}: after vs before training", "before", "after", stages["before"], stages["after"])
        for model, stages in per_query.items()
    ] + [
        (
            f"After training: {other} vs {models[0]}",
            models[0],
            other,
            per_query[models[0]]["after"],
            per_query[other]["after"],
        )
        for other in models[1:]
    ]
    for title, label_a, label_b, a, b in pairs:
        if a is None or b is None:
            continue
        tests = paired_subsets(a, b)
        lines += [f"### {title}", "", *_test_table(tests, label_a, label_b), ""]
    return lines


def _sources(
    out: Path, record: Mapping[str, Any], config: str, per_subset: bool = False
) -> list[str]:
    """The report's last section: which file every number of it comes from (`per_subset`: the
    report has the per-language and significance sections)."""
    where = repo_relative(out)
    lines = [
        "## Where the numbers come from",
        "",
        (
            "Paths are as the commands name them (relative to the repository root when inside it); "
            f"this run's folder is `{where}`."
        ),
        "",
        f"- Settings: the command above; {config}; each training run's own `{TRAIN_CONFIG}`.",
        (
            "- Scores (first table, `controlled_scores.png`): mteb's main score of each task file "
            f"(`<Task>.json`) the evaluation commands wrote, copied into `{RECORD_FILE}` "
            "(`rows[].before` / `rows[].after`):"
        ),
    ]
    for row in record["rows"]:
        for stage in ("before", "after"):
            stage_dir = Path("results") / f"{row['model']}_{stage}"
            folders = _result_folders(out / stage_dir)
            lines += [
                f"  - {row['model']} {stage}: `{where / stage_dir / 'results' / f}/`"
                for f in folders
            ]
            if not folders:
                lines.append(
                    f"  - {row['model']} {stage}: `{where / stage_dir}/` (not in this checkout)"
                )
    if per_subset:
        lines += [
            (
                "- Per language: mteb's main score of each subset in the same files, copied into "
                f"`{RECORD_FILE}` (`rows[].before_subsets` / `rows[].after_subsets`; read from the "
                "files when the record predates those keys)."
            ),
            (
                "- Significance: the per-query nDCG@10 files beside them "
                "(`<variant>/<revision>/harness/queries/<Task>/<split>/<subset>.ndcg_at_10.json`)."
            ),
        ]
    lines += [
        (
            "- tau and the loss: each adapter's `train_summary.json` (`temperature`, `objective`) "
            "and "
            f"`{TRAIN_CONFIG}` (`train.flops`)."
        ),
        (
            "- Training table trends and `controlled_training.png`: each adapter's "
            "`train_log.jsonl` "
            "(ranking loss `base_loss`, `query_l0`, `document_l0`, `query_flops`, "
            "`document_flops`: means "
            "of the first and the last quarter of the logging steps; held-out: `eval_base_loss` at "
            "step 0 "
            "and at the last step):"
        ),
        *[f"  - {row['model']}: `{where / row['adapter']}/`" for row in record["rows"]],
        (
            "- Seconds: wall time of each command, measured by the controlled app "
            f"(`{RECORD_FILE}`: "
            "`rows[].train_seconds`, `rows[].eval_seconds`); each command's output is in "
            "`<model>_<before|train|after>.log` beside it."
        ),
        "",
    ]
    return lines


def render(
    record: dict[str, Any],
    out: Path,
    logs: Mapping[str, list[dict[str, Any]]],
    trained: Mapping[str, Mapping[str, Any]],
    summaries: Mapping[str, Mapping[str, Any]],
    setups: Mapping[str, Mapping[str, Any]],
    figures: Sequence[Any],
    subsets: Mapping[str, Mapping[str, SubsetScores]] | None = None,
    significance: Sequence[str] = (),
) -> str:
    """Markdown report: scores before/after per task and model (with means), per (task, subset)
    when `subsets` (`subset_scores`) is given, the `significance` section's lines, training
    settings, what training spent and its trends, figures, every command as run, and where each
    number comes from."""
    rows = record["rows"]
    models = [row["model"] for row in rows]
    settings = run_settings(record)
    tasks = sorted({t for row in rows for t in (*row["before"], *row["after"])})
    header = " | ".join(f"{m} before | after | delta" for m in models)
    eval_length = settings["eval_max_length"] or "the model config's"
    lines = [
        "# Controlled run: SAE latents vs vocabulary head, same recipe",
        "",
        (
            f"Measured by this harness on {record['machine']} ({record['date']}, git "
            f"{_git(record['git'])}):"
        ),
        "",
        f"    {record['command']}",
        "",
        *([settings["note"], ""] if settings["note"] else []),
        _train_sentence(trained, summaries, setups, settings["recipe"]),
        "",
        (
            f"Evaluated by `python -m harness` on benchmark `{settings['benchmark']}` (eval max "
            f"length {eval_length}), before (zero-shot) and after training, nDCG@10 (mteb main "
            "score)."
            + (
                " A sliced task's name gives the queries and documents kept per subset; on slices "
                "this small, per-task deltas of a few points are noise-level."
                if any("(slice_" in task for task in tasks)
                else ""
            )
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
    if subsets is not None:
        lines += _subset_lines(subsets)
    lines += list(significance)
    spent = any(SPENT_KEYS & set(summary) for summary in summaries.values())
    lines += [
        "## Training",
        "",
        (
            "| model | tau | train s | "
            + ("steps (done / planned) | CPU s / budget | stopped by budget | " if spent else "")
            + "eval s (before / after) | held-out ranking loss, step 0 -> "
            "last | "
            "ranking loss, first -> last quarter | query L0 | document L0 | query FLOPS | document "
            "FLOPS |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if spent else ""),
    ]
    for row in rows:
        log = logs.get(row["model"], [])
        trends = " | ".join(
            _trend(log, key)
            for key in ("base_loss", "query_l0", "document_l0", "query_flops", "document_flops")
        )
        spent_cells = (
            _spent_cells(summaries[row["model"]], trained[row["model"]]["train"]) if spent else ""
        )
        lines.append(
            f"| {row['model']} | {setups[row['model']]['temperature']} | "
            f"{row['train_seconds']:.0f} | {spent_cells}"
            f"{row['eval_seconds'][0]:.0f} / {row['eval_seconds'][1]:.0f} | {_held_out(log)} | "
            f"{trends} |"
        )
    wall = sum(row["train_seconds"] + sum(row["eval_seconds"]) for row in rows)
    lines += [
        "",
        (
            "L0 and FLOPS are of the uncapped pooled training vectors (top-k applies at "
            "inference). "
            f"Wall time of all {3 * len(rows)} commands: {wall / 60:.1f} min."
        ),
        "",
    ]
    if spent:
        lines += [SPENT_NOTE, ""]
    for figure in figures:
        lines += [f"![{figure.caption}]({figure.png.name})", "", f"*{figure.caption}*", ""]
    lines += ["## Commands", "", *[f"    {c}" for row in rows for c in row["commands"]], ""]
    lines += _sources(out, record, settings["config"], subsets is not None)
    return "\n".join(lines)


def write_report(out: Path) -> str:
    """Figures and `controlled_run.md` in `out`, from `<out>/controlled_run.json` and the adapters'
    training files; returns the report. A folder without a record fails in one line."""
    if not (out / RECORD_FILE).is_file():
        raise FileNotFoundError(
            f"{out} holds no {RECORD_FILE} (the folder of a finished controlled run)"
        )
    record = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    adapters = {row["model"]: out / row["adapter"] for row in record["rows"]}
    logs = {model: read_train_log(folder) for model, folder in adapters.items()}
    trained = {
        model: OmegaConf.to_container(OmegaConf.load(folder / TRAIN_CONFIG), resolve=True)
        for model, folder in adapters.items()
    }
    summaries = {
        model: json.loads((folder / "train_summary.json").read_text(encoding="utf-8"))
        for model, folder in adapters.items()
    }
    setups = {model: read_training_setup(folder) for model, folder in adapters.items()}
    scores = {
        row["model"]: {"before": row["before"], "after": row["after"]} for row in record["rows"]
    }
    figures = [
        f
        for f in (plot_before_after(scores, out), plot_training_curves(logs, out))
        if f is not None
    ]
    subsets = subset_scores(record, out)
    significance = (
        []
        if subsets is None
        else significance_lines(
            {
                row["model"]: {
                    stage: read_per_query(stage_dir(out, row["model"], stage))
                    for stage in ("before", "after")
                }
                for row in record["rows"]
            },
            out,
        )
    )
    report = render(
        record, out, logs, trained, summaries, setups, figures, subsets, significance
    )
    (out / REPORT_FILE).write_text(report, encoding="utf-8")
    return report
