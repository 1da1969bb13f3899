"""Sweeps split into jobs for Hydra's launchers, and progress across a whole sweep.

A benchmark's tasks, in `load_tasks` order, are cut into shards of `run.tasks_per_job`
consecutive tasks; `run.shard=i` makes a run evaluate shard i only. `python -m harness.sweep
--launcher slurm|local|ray [overrides]` counts the shards and becomes `python -m harness -m
hydra/launcher=<conf> <overrides> run.shard=range(N)`, so Hydra's
sweeper crosses shards with every swept model variant and the launcher (hydra-submitit-launcher,
hydra-ray-launcher) runs one job per (variant, shard). Every job writes into the same mteb result
cache (`run.results_dir`), so `make report` reads one sweep.

Progress: `SweepProgress` (a Hydra callback) writes the sweep's size, `<sweep dir>/.progress/
sweep.json`, before any job starts; each job records its result folder and tasks there
(`job<N>.json`) and logs `sweep: 7/28 tasks done, ETA 3h12m` after every task it finishes, counted
from the result files on disk. `python -m harness.sweep status <sweep dir>` prints the same line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness.config import check_group_overrides
from harness.results import AtomicResultCache, atomic_write_text
from models.spec import check_int

logger = logging.getLogger("harness")

PROGRESS_DIR = ".progress"
MANIFEST = "sweep.json"


@dataclass(frozen=True)
class LauncherChoice:
    """A `--launcher` value: its config in `conf/hydra/launcher/` and the plugin it needs."""

    config: str
    module: str
    package: str


LAUNCHERS = {
    "slurm": LauncherChoice("slurm", "hydra_plugins.hydra_submitit_launcher",
                            "hydra-submitit-launcher"),
    "local": LauncherChoice("local", "hydra_plugins.hydra_submitit_launcher",
                            "hydra-submitit-launcher"),
    # The plugin itself registers `hydra/launcher=ray`: ours extends it under another name.
    "ray": LauncherChoice("ray_cluster", "hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher"),
}
# Overrides that change a job's task list: one value per sharded sweep (shards are counted once).
_TASK_KEYS = ("benchmark", "run.tasks", "run.tasks_per_job", "run.shard")


def check_launcher(name: str) -> LauncherChoice:
    """The launcher `name`, its plugin importable; otherwise a one-line ValueError."""
    choice = LAUNCHERS.get(name)
    if choice is None:
        raise ValueError(f"unknown launcher '{name}'; valid: {', '.join(LAUNCHERS)}")
    if importlib.util.find_spec(choice.module) is None:
        raise ValueError(f"launcher '{name}' needs the Python package {choice.package}, which is "
                         f"not installed (pip install {choice.package})")
    return choice


def benchmark_task_names(bench: Mapping) -> list[str]:
    """Names of the tasks `load_tasks(bench)` builds, in its order, without building local tasks.

    mteb tasks (benchmark, then by name), local tasks, data tasks (only when a data root
    resolves, as `load_tasks` skips them otherwise), BEIR folders. Names are before slicing.
    """
    from harness.tasks import resolve_data_root, select_mteb_tasks
    from harness.tasks.local_beir import beir_folders

    folders = beir_folders(bench)  # malformed entries fail in one line first
    names = [t.metadata.name for t in select_mteb_tasks(bench)]
    names += [_entry_name(e) for e in bench.get("local_tasks") or []]
    if bench.get("data_tasks") and resolve_data_root(bench.get("data_root")) is not None:
        names += [_entry_name(e) for e in bench["data_tasks"]]
    names += [f.task_name for f in folders]
    return names


def _entry_name(entry: Any) -> str:
    return entry if isinstance(entry, str) else str(entry["name"])


def selected_task_names(cfg: DictConfig) -> list[str]:
    """The benchmark's task names after `run.tasks` (unknown names fail in one line)."""
    names = benchmark_task_names(cfg.benchmark)
    only = list(cfg.run.tasks or [])
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(f"run.tasks names {unknown} not in benchmark '{cfg.benchmark.name}'; "
                         f"valid: {sorted(names)}")
    return [n for n in names if n in set(only)] if only else names


def tasks_per_job(cfg: DictConfig) -> int:
    """`run.tasks_per_job`, checked (an integer >= 1)."""
    return check_int("run.tasks_per_job", cfg.run.get("tasks_per_job", 1), 1)


def shard_count(n_tasks: int, per_job: int) -> int:
    """Number of shards of `n_tasks` tasks at `per_job` tasks per job (the last may be shorter)."""
    return math.ceil(n_tasks / per_job)


def shard_names(names: Sequence[str], shard: int, per_job: int) -> list[str]:
    """Shard `shard` of `names`: `per_job` consecutive names from `shard * per_job`."""
    return list(names[shard * per_job:(shard + 1) * per_job])


def job_benchmark(cfg: DictConfig) -> tuple[DictConfig, list[str] | None]:
    """The benchmark config and task-name filter of this run: its shard when `run.shard` is set.

    Checks `run.tasks_per_job` and `run.shard` (one line naming the bad value) before any task
    is built. A sharded run's benchmark keeps only the local entries of its shard, so the other
    shards' local data is never built.
    """
    from harness.tasks.local_beir import beir_folders

    per_job = tasks_per_job(cfg)
    shard = check_int("run.shard", cfg.run.get("shard"), 0, allow_none=True)
    if shard is None:
        return cfg.benchmark, (list(cfg.run.tasks) if cfg.run.tasks else None)
    names = selected_task_names(cfg)
    count = shard_count(len(names), per_job)
    if shard >= count:
        raise ValueError(f"run.shard={shard} out of range: benchmark '{cfg.benchmark.name}' has "
                         f"{len(names)} task(s), {count} shard(s) at run.tasks_per_job={per_job} "
                         f"(valid: 0..{count - 1})")
    chosen = shard_names(names, shard, per_job)
    bench = OmegaConf.to_container(cfg.benchmark, resolve=True)
    for key in ("local_tasks", "data_tasks"):
        bench[key] = [e for e in bench.get(key) or [] if _entry_name(e) in chosen]
    bench["beir_folders"] = [entry for entry, folder in zip(bench.get("beir_folders") or [],
                                                            beir_folders(bench), strict=True)
                             if folder.task_name in chosen]
    return OmegaConf.create(bench), chosen


# ---- progress across a sweep ---------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """`3h12m`, `4m05s`, `12s`."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def task_complete(path: Path, splits: Sequence[str], subsets: Sequence[str]) -> bool:
    """Whether the mteb result file `path` holds a score for every (split, subset) pair.

    mteb rewrites a task's file after each subset, so a file alone is no finished task.
    """
    if not path.is_file():
        return False
    scores = json.loads(path.read_text(encoding="utf-8")).get("scores") or {}
    present = {(split, entry.get("hf_subset")) for split, entries in scores.items()
               for entry in entries}
    return all((split, subset) in present for split in splits for subset in subsets)


def sweep_status(progress_dir: Path, now: float | None = None) -> dict[str, Any]:
    """Tasks done / total and an ETA of the sweep whose records are in `progress_dir`.

    Total: the manifest's count (every job of the sweep), else the registered jobs' tasks.
    Done: tasks of the registered jobs whose result file (`<result folder>/<task>.json`) has a
    score for each of their (split, subset) pairs.
    ETA: remaining tasks at the rate of tasks finished since the sweep started (result files
    written after the manifest), so jobs running in parallel shorten it; None before the first.
    Elapsed: until the last task finished once all are done, else until `now`.
    """
    now = time.time() if now is None else now
    manifest_path = progress_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    records = [json.loads(p.read_text()) for p in sorted(progress_dir.glob("job*.json"))]
    started = manifest.get("started", min((r["started"] for r in records), default=now))
    total = manifest.get("tasks", sum(len(r["tasks"]) for r in records))
    done = finished = 0
    last = started
    for record in records:
        for task in record["tasks"]:
            path = Path(record["folder"]) / f"{task['name']}.json"
            if task_complete(path, task["splits"], task["subsets"]):
                done += 1
                finished += path.stat().st_mtime >= started
                last = max(last, path.stat().st_mtime)
    eta = None
    if finished and done < total:
        eta = (total - done) * (now - started) / finished
    return {"done": done, "total": total, "jobs": manifest.get("jobs"), "registered": len(records),
            "eta_seconds": eta, "elapsed_seconds": (last if done >= total else now) - started}


def status_line(status: Mapping[str, Any]) -> str:
    """`sweep: 7/28 tasks done, ETA 3h12m` (from `sweep_status`)."""
    line = f"sweep: {status['done']}/{status['total']} tasks done"
    if status["done"] >= status["total"]:
        return line + f" in {format_duration(status['elapsed_seconds'])}"
    eta = status["eta_seconds"]
    return line + (f", ETA {format_duration(eta)}" if eta is not None else ", ETA unknown")


class JobProgress:
    """One job's part of the sweep: registers its tasks, logs the sweep's progress: once at the
    start, then once per change of the done count (one line per finished task)."""

    def __init__(self, progress_dir: Path, job: str, folder: Path,
                 tasks: Sequence[Mapping[str, Any]]) -> None:
        """`tasks`: `{name, splits, subsets}` per task of the job (its results go to `folder`)."""
        self.progress_dir = progress_dir
        self.last: tuple[int, int] | None = None
        atomic_write_text(progress_dir / f"job{job}.json", json.dumps(
            {"job": job, "folder": str(folder), "tasks": list(tasks), "started": time.time()}))
        self.log()

    def log(self) -> None:
        """Log the sweep's status when its done count changed (mteb saves after every subset)."""
        status = sweep_status(self.progress_dir)
        if (status["done"], status["total"]) != self.last:
            self.last = (status["done"], status["total"])
            logger.info("%s", status_line(status))


class ProgressCache(AtomicResultCache):
    """The result cache of a sweep job: after every saved task, one sweep progress line."""

    def __init__(self, root: Path, progress: JobProgress) -> None:
        super().__init__(root)
        self.progress = progress

    def save_to_cache(self, task_result: Any, model_name: Any, model_revision: str | None = None,
                      *, encode_kwargs: Mapping[str, Any] | None = None) -> None:
        super().save_to_cache(task_result, model_name, model_revision, encode_kwargs=encode_kwargs)
        self.progress.log()


def track(cache: AtomicResultCache, tasks: Sequence[Any], folder: Path) -> AtomicResultCache:
    """`cache` logging sweep progress: records this job's `tasks` (their results go to `folder`).

    In a multirun the records go to `<sweep dir>/.progress/` (shared by every job of the sweep);
    a single run keeps them in `<run dir>/.progress/` and reports on itself. Outside a Hydra app
    (`run()` called from Python) there is no sweep: `cache` is returned as it is.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return cache
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    base = Path(hydra.sweep.dir if multirun else hydra.run.dir)
    job = str(hydra.job.num) if multirun else "0"
    entries = [{"name": t.metadata.name, "splits": list(t.eval_splits),
                "subsets": list(t.hf_subsets)} for t in tasks]
    return ProgressCache(cache.cache_path, JobProgress(base / PROGRESS_DIR, job, folder, entries))


def sweep_jobs(config: DictConfig, config_loader: Any) -> list[list[str]]:
    """The override list of every job Hydra's basic sweeper makes of the multirun `config`."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    arguments = params + list(config.hydra.overrides.task)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    return BasicSweeper.split_arguments(parsed, None)[0]


class SweepProgress(Callback):
    """Before a multirun's jobs start, write its size (jobs, tasks) to `<sweep dir>/.progress/`.

    Each job's config is composed as the sweeper will compose it and its tasks are counted by
    name (nothing is loaded). Other sweepers than Hydra's basic one are left to the jobs' own
    records.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            return
        loader = GlobalHydra.instance().config_loader()
        counts: dict[str, int] = {}
        total = 0
        jobs = sweep_jobs(config, loader)
        for overrides in jobs:
            job_cfg = loader.load_sweep_config(config, overrides)
            key = json.dumps([OmegaConf.to_container(job_cfg.benchmark, resolve=True),
                              OmegaConf.to_container(job_cfg.run, resolve=True)], sort_keys=True)
            if key not in counts:
                try:
                    only = job_benchmark(job_cfg)[1]
                    counts[key] = len(selected_task_names(job_cfg) if only is None else only)
                except ValueError:  # a bad setting: the job itself fails on it in one line
                    return
            total += counts[key]
        folder = Path(str(config.hydra.sweep.dir)) / PROGRESS_DIR
        atomic_write_text(folder / MANIFEST, json.dumps(
            {"jobs": len(jobs), "tasks": total, "started": time.time()}))
        logger.info("sweep: %d job(s), %d task(s) in all; progress in %s", len(jobs), total, folder)


# ---- `python -m harness.sweep` --------------------------------------------------------------


def sharded_overrides(overrides: Sequence[str]) -> list[str]:
    """`overrides` plus `run.shard=range(N)`: N shards of the benchmark they select.

    The benchmark and its task selection must be single-valued (other keys, e.g. `model`, may
    be swept); `run.shard` is set here, never by the caller.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from harness.config import compose_config

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    fixed = []
    for item, override in zip(overrides, parsed):
        key = override.get_key_element().lstrip("+~")
        if key == "run.shard":
            raise ValueError("run.shard is set by the sweep (one job per shard); leave it out")
        if override.is_sweep_override():
            if key.split(".")[0] == "benchmark" or key in _TASK_KEYS:
                raise ValueError(f"a sharded sweep takes one value of {key}, got '{item}'")
            continue
        if not key.startswith("hydra"):
            fixed.append(item)
    cfg = compose_config(fixed)
    per_job = tasks_per_job(cfg)
    names = selected_task_names(cfg)
    if not names:
        raise ValueError(f"benchmark '{cfg.benchmark.name}' selects no task")
    count = shard_count(len(names), per_job)
    print(f"sweep: {len(names)} task(s) of {cfg.benchmark.name} in {count} shard(s) of up to "
          f"{per_job} per job")
    return [*overrides, f"run.shard=range({count})"]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m harness.sweep --launcher NAME [overrides]`, or `... status <sweep dir>`."""
    from harness.cli import one_line_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        parser = argparse.ArgumentParser(prog="python -m harness.sweep status")
        parser.add_argument("sweep_dir", type=Path, help="the Hydra sweep folder (hydra.sweep.dir)")
        folder = parser.parse_args(argv[1:]).sweep_dir / PROGRESS_DIR
        with one_line_errors():
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: no sweep progress records")
            print(status_line(sweep_status(folder)))
        return
    parser = argparse.ArgumentParser(prog="python -m harness.sweep",
                                     description="one job per (model variant, task shard)")
    parser.add_argument("--launcher", required=True, help=f"one of {', '.join(LAUNCHERS)}")
    args, overrides = parser.parse_known_args(argv)
    with one_line_errors():
        choice = check_launcher(args.launcher)
        check_group_overrides([o for o in overrides if not o.startswith("-")])
        overrides = sharded_overrides(overrides)
    command = [sys.executable, "-m", "harness", "-m", f"hydra/launcher={choice.config}", *overrides]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
