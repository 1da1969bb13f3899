"""Measured results on disk (mteb ResultCache layout) with the records the runner keeps beside them.

A results root holds `results/<model name>/<revision>/<Task>.json` (mteb's TaskResult) and
`model_meta.json`; the harness keeps its own files in `<revision>/harness/`: `variant.json` (what
the model is, see `variants`), `runs/<run id>.json` (one record per run: composed config, command
line, git state, tasks) and `<Task>.efficiency.json`. Hydra run folders (`.hydra/config.yaml`,
`.hydra/overrides.yaml`) given with `--runs` select which results are reported: a revision folder
belongs to a run when the run's composed `model` section equals one of its run records'.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mteb.cache import ResultCache
from mteb.results import TaskResult

from harness.reports.efficiency import read_efficiency
from harness.reports.variants import Variant, parse_variant, short_labels
from models.meta import META_ORG

#: The harness's folder inside `<model>/<revision>/` (outside mteb's `*/*/*.json` glob).
HARNESS_DIR = "harness"
VARIANT_FILE = "variant.json"
RUNS_DIR = "runs"


@dataclass
class RunRecord:
    """One harness invocation: its folder, command line and composed config."""

    folder: Path
    command: str | None
    config: dict[str, Any] | None
    config_path: Path | None = None
    git: str | None = None


@dataclass
class ModelRun:
    """Everything measured for one (model name, revision): task results, efficiency, provenance.

    `records`: the run records of the result folder, oldest first; `runs`: the Hydra run folders
    (`--runs`) matched to it. `label`: the model name (tables, captions); `short`: the figure label
    from `record` (`variant.json`, None when absent) by `harness.reports.variants.short_labels`.
    """

    name: str
    revision: str
    folder: Path
    results: dict[str, TaskResult]
    efficiency: dict[str, dict[str, Any]]
    variant: Variant
    meta: dict[str, Any]
    records: list[RunRecord] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    label: str = ""
    short: str = ""
    record: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any] | None:
        """The composed config of the latest run record (None when there is none)."""
        return self.records[-1].config if self.records else None


def _load_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def load_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when there is no such file, a one-line error when it is not
    a JSON object."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_hydra_run(folder: Path) -> RunRecord:
    """A Hydra run folder as a RunRecord; the command is rebuilt from `.hydra/overrides.yaml`."""
    config_path = folder / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"run folder {folder}: no .hydra/config.yaml")
    overrides_path = folder / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_path.read_text(encoding="utf-8")) if overrides_path.is_file() else None
    hydra_cfg = _load_yaml(folder / ".hydra" / "hydra.yaml") or {}
    multirun = str(hydra_cfg.get("hydra", {}).get("mode", "")).upper().endswith("MULTIRUN")
    command = None
    if overrides is not None:
        command = " ".join(["python -m harness", *(["-m"] if multirun else []), *map(str, overrides)])
    return RunRecord(folder=folder, command=command, config=_load_yaml(config_path), config_path=config_path)


def run_records(folder: Path) -> list[RunRecord]:
    """The run records (`harness/runs/*.json`) of a result folder, oldest first."""
    records = []
    for path in sorted((folder / HARNESS_DIR / RUNS_DIR).glob("*.json")):
        data = load_json(path) or {}
        git = data.get("git") or {}
        commit = (git.get("commit", "") + ("+dirty" if git.get("dirty") else "")) or None
        records.append(RunRecord(folder=path, command=data.get("command"), config=data.get("config"),
                                 git=commit))
    return records


def task_result_paths(results_root: Path) -> list[Path]:
    """Task result files of a ResultCache root (model_meta.json left out)."""
    cache = ResultCache(results_root)
    paths = cache.get_cache_paths(require_model_meta=False, include_remote=False)
    return sorted(p for p in paths if p.name != "model_meta.json")


def load_model_runs(results_root: Path) -> list[ModelRun]:
    """Every (model, revision) under `results_root` with its TaskResults (read by mteb)."""
    results_root = Path(results_root)
    if not (results_root / "results").is_dir():
        raise FileNotFoundError(f"no mteb results under {results_root} (expected {results_root / 'results'}/)")
    by_folder: dict[Path, dict[str, TaskResult]] = {}
    for path in task_result_paths(results_root):
        result = TaskResult.from_disk(path)
        by_folder.setdefault(path.parent, {})[result.task_name] = result
    runs = []
    for folder, results in sorted(by_folder.items()):
        meta = load_json(folder / "model_meta.json") or {}
        name = meta.get("name") or folder.parent.name.replace("__", "/")
        revision = meta.get("revision") or folder.name
        records = run_records(folder)
        record = load_json(folder / HARNESS_DIR / VARIANT_FILE)
        efficiency = {task: stats for task in results
                      if (stats := read_efficiency(folder / HARNESS_DIR / f"{task}.efficiency.json"))}
        variant = parse_variant(name, record, meta, records[-1].config if records else None)
        runs.append(ModelRun(name=name, revision=str(revision), folder=folder, results=results,
                             efficiency=efficiency, meta=meta, records=records, variant=variant,
                             record=record))
    _label(runs)
    return runs


def _label(runs: Sequence[ModelRun]) -> None:
    """Display labels: `label`, the model name (revision appended only where names collide), and
    `short`, the figure label derived from each run's `variant.json` (unique among `runs`)."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        short = run.name.removeprefix(f"{META_ORG}/")
        run.label = f"{short}@{run.revision}" if counts[run.name] > 1 else short
    records = [r.record or {"name": r.name, "revision": r.revision} for r in runs]
    for run, short in zip(runs, short_labels(records), strict=True):
        run.short = short


def expand_run_globs(patterns: Iterable[str]) -> list[Path]:
    """Run folders matched by shell globs; a pattern matching nothing is an error."""
    folders: list[Path] = []
    for pattern in patterns:
        matches = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_dir())
        if not matches:
            raise FileNotFoundError(f"--runs '{pattern}' matches no folder")
        folders.extend(matches)
    return folders


def _model_section(config: Mapping[str, Any] | None) -> Any:
    return None if config is None else config.get("model")


def matches_model(model_run: ModelRun, section: Any) -> bool:
    """Whether a run record of `model_run` used the composed `model` config section `section`."""
    return section is not None and any(_model_section(r.config) == section for r in model_run.records)


def select_runs(model_runs: Sequence[ModelRun], run_folders: Sequence[Path]) -> list[ModelRun]:
    """The model runs produced by `run_folders`, each with its matching RunRecords attached.

    A run folder that is itself a results revision folder selects that folder; otherwise it is a
    Hydra run folder matched by its composed `model` section. Raises when a run matches nothing.
    """
    chosen: dict[Path, ModelRun] = {}
    for folder in run_folders:
        direct = [m for m in model_runs if m.folder.resolve() == folder.resolve()]
        if direct:
            chosen[direct[0].folder] = direct[0]
            continue
        record = read_hydra_run(folder)
        section = _model_section(record.config)
        matched = [m for m in model_runs if matches_model(m, section)]
        if not matched:
            raise ValueError(f"run folder {folder}: no results on disk were produced with its model config")
        for model_run in matched:
            model_run.runs.append(record)
            chosen[model_run.folder] = model_run
    return [chosen[k] for k in sorted(chosen)]


def load_measured(results_root: Path, run_globs: Sequence[str] = ()) -> list[ModelRun]:
    """All model runs under `results_root`, or only those produced by the runs in `run_globs`."""
    model_runs = load_model_runs(results_root)
    if run_globs:
        model_runs = select_runs(model_runs, expand_run_globs(run_globs))
        _label(model_runs)
    return model_runs


def task_score(result: TaskResult, metric: str, splits: Sequence[str] | None = None) -> float | None:
    """mteb's task aggregate of `metric` (mean over the splits and subsets present), on 0-100.

    None when a requested split or the metric is absent.
    """
    splits = list(splits) if splits else list(result.scores)
    if any(s not in result.scores for s in splits):
        return None
    try:
        return 100.0 * float(result.get_score(splits=splits, getter=lambda s: s[metric]))
    except KeyError:
        return None


def subset_scores(result: TaskResult, metric: str, splits: Sequence[str] | None = None) -> dict[str, float]:
    """Per-subset (e.g. per-language) score of `metric` on 0-100, averaged over the splits."""
    values: dict[str, list[float]] = {}
    for split, entries in result.scores.items():
        if splits and split not in splits:
            continue
        for entry in entries:
            if metric in entry:
                values.setdefault(entry["hf_subset"], []).append(float(entry[metric]))
    return {subset: 100.0 * sum(v) / len(v) for subset, v in values.items()}
