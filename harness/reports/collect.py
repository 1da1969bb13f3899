"""Measured results on disk (mteb ResultCache layout) with their efficiency stats and provenance.

A results root holds `results/<model name>/<revision>/<Task>.json` (mteb's TaskResult), beside
which the harness keeps `model_meta.json`, `<Task>.efficiency.json`, the composed `config.yaml`
and `run.json` (command, git revision, tasks of the last run). Hydra run folders
(`.hydra/config.yaml`, `.hydra/overrides.yaml`) given with `--runs` select which results are
reported: a revision folder belongs to a run when the run's composed `model` section equals the
one kept beside the results.
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
from harness.reports.variants import Variant, parse_variant

NON_TASK_FILES = ("model_meta.json", "run.json")
SIDECAR_DIR = "harness"  # also accepted: run record and efficiency files in `<revision>/harness/`


def sidecar(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/harness/name` when only that exists (outside mteb's `*/*/*.json` glob)."""
    direct = folder / name
    nested = folder / SIDECAR_DIR / name
    return nested if not direct.exists() and nested.exists() else direct


@dataclass
class RunRecord:
    """One harness invocation: its folder, command line and composed config."""

    folder: Path
    command: str | None
    config: dict[str, Any] | None
    config_path: Path | None


@dataclass
class ModelRun:
    """Everything measured for one (model name, revision): task results, efficiency, provenance."""

    name: str
    revision: str
    folder: Path
    results: dict[str, TaskResult]
    efficiency: dict[str, dict[str, Any]]
    variant: Variant
    meta: dict[str, Any]
    record: RunRecord
    runs: list[RunRecord] = field(default_factory=list)
    label: str = ""

    def tasks_of_last_run(self) -> list[str]:
        """Task names the recorded `run.json` says its run evaluated ([] when unknown)."""
        path = sidecar(self.folder, "run.json")
        if not path.is_file():
            return []
        return list(json.loads(path.read_text(encoding="utf-8")).get("tasks") or [])


def _load_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def read_hydra_run(folder: Path) -> RunRecord:
    """A Hydra run folder as a RunRecord; the command is rebuilt from `.hydra/overrides.yaml`."""
    config_path = next((p for p in (folder / ".hydra" / "config.yaml", folder / "config.yaml")
                        if p.is_file()), None)
    if config_path is None:
        raise FileNotFoundError(f"run folder {folder}: no .hydra/config.yaml or config.yaml")
    overrides_path = folder / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_path.read_text(encoding="utf-8")) if overrides_path.is_file() else None
    hydra_cfg = _load_yaml(folder / ".hydra" / "hydra.yaml") or {}
    multirun = str(hydra_cfg.get("hydra", {}).get("mode", "")).upper().endswith("MULTIRUN")
    command = None
    if overrides is not None:
        command = " ".join(["python -m harness", *(["-m"] if multirun else []), *map(str, overrides)])
    run_json = folder / "run.json"
    if run_json.is_file():
        command = json.loads(run_json.read_text(encoding="utf-8")).get("command") or command
    return RunRecord(folder=folder, command=command, config=_load_yaml(config_path), config_path=config_path)


def _revision_record(folder: Path) -> RunRecord:
    run_json = sidecar(folder, "run.json")
    command = None
    if run_json.is_file():
        command = json.loads(run_json.read_text(encoding="utf-8")).get("command")
    config_path = sidecar(folder, "config.yaml")
    return RunRecord(folder=folder, command=command, config=_load_yaml(config_path),
                     config_path=config_path if config_path.is_file() else None)


def task_result_paths(results_root: Path) -> list[Path]:
    """Task result files of a ResultCache root (efficiency, run and meta files left out)."""
    cache = ResultCache(results_root)
    paths = cache.get_cache_paths(require_model_meta=False, include_remote=False)
    return sorted(p for p in paths
                  if p.name not in NON_TASK_FILES and not p.name.endswith(".efficiency.json"))


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
        meta_path = folder / "model_meta.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        name = meta.get("name") or folder.parent.name.replace("__", "/")
        revision = meta.get("revision") or folder.name
        record = _revision_record(folder)
        efficiency = {task: stats for task in results
                      if (stats := read_efficiency(sidecar(folder, f"{task}.efficiency.json")))}
        runs.append(ModelRun(name=name, revision=str(revision), folder=folder, results=results,
                             efficiency=efficiency, meta=meta, record=record,
                             variant=parse_variant(name, record.config, meta)))
    _label(runs)
    return runs


def _label(runs: Sequence[ModelRun]) -> None:
    """Short display labels; the revision is appended only where names collide."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        short = run.name.removeprefix("harness/")
        run.label = f"{short}@{run.revision}" if counts[run.name] > 1 else short


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
        matched = [m for m in model_runs
                   if section is not None and _model_section(m.record.config) == section]
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
