"""The whole path through the CLI on a real slice: results, resume after a kill, determinism.

Uses the bundled BERT-tiny SPLADE (fast on CPU) on a slice of the real Cranfield and XQuAD data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mteb.cache import ResultCache
from mteb.results import TaskResult

from harness.paths import REPO_ROOT, shared_data_root

pytestmark = pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets")

TASKS = ["LocalCranfield", "LocalXQuADRetrieval"]
SLICED = {name: f"{name} (slice_25q_seed0_120d)" for name in TASKS}  # result names of the slices


def harness_cmd(results: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "harness", "model=splade_tiny", "benchmark=local_real",
        "benchmark.data_tasks=[LocalCranfield,{name:LocalXQuADRetrieval,subsets:[en,de-en]}]",
        "benchmark.slice_queries=25", "benchmark.slice_docs=120",
        f"run.results_dir={results}", f"run.cache_dir={cache}", "run.show_progress=false",
        f"hydra.run.dir={results}/hydra", *extra,
    ]


def run_harness(results: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(harness_cmd(results, cache, *extra), cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def task_files(results: Path) -> dict[str, Path]:
    """Base task name → its result file (in mteb's `results/<model>/<revision>/` layout)."""
    by_stem = {p.stem: p for p in (results / "results").glob("*/*/*.json")}
    return {name: by_stem[sliced] for name, sliced in SLICED.items() if sliced in by_stem}


def main_scores(results: Path) -> dict[str, float]:
    return {name: TaskResult.from_disk(path).get_score() for name, path in task_files(results).items()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    cache = tmp_path_factory.mktemp("cache")
    out = run_harness(results, cache)
    return results, cache, out


def test_results_land_in_mteb_layout_with_run_record(first_run):
    results, _, out = first_run
    files = task_files(results)
    assert sorted(files) == sorted(TASKS)
    folder = files["LocalCranfield"].parent / "harness"
    assert (folder.parent / "model_meta.json").exists()
    loaded = ResultCache(results).load_results(require_model_meta=True)  # mteb's own loader
    assert {r.task_name for m in loaded.model_results for r in m.task_results} == set(SLICED.values())
    assert "splade_tiny" in (folder / "config.yaml").read_text()
    record = json.loads((folder / "run.json").read_text())
    assert record["packages"]["mteb"] and record["tasks"] == list(SLICED.values())
    scores = main_scores(results)
    assert set(scores) == set(TASKS)
    assert all(0.05 < s <= 1.0 for s in scores.values()), scores  # a trained SPLADE beats random
    assert "LocalCranfield" in out.stdout  # the printed table
    stats = json.loads((folder / f"{SLICED['LocalCranfield']}.efficiency.json").read_text())
    assert stats  # efficiency statistics beside the task result


def test_same_config_twice_gives_identical_scores(first_run, tmp_path):
    results, cache, _ = first_run
    run_harness(tmp_path / "again", cache)  # cached encodings
    assert main_scores(tmp_path / "again") == main_scores(results)
    run_harness(tmp_path / "fresh", tmp_path / "fresh-cache")  # recomputed encodings
    assert main_scores(tmp_path / "fresh") == main_scores(results)


def test_killed_run_resumes_without_recomputing_finished_work(first_run, tmp_path):
    reference = main_scores(first_run[0])
    results, cache = tmp_path / "results", tmp_path / "cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(harness_cmd(results, cache), cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and "LocalCranfield" not in task_files(results):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: the first task is written, the second is not
    proc.wait()
    finished = task_files(results)
    assert "LocalCranfield" in finished, "first task never finished before the deadline"
    first_mtime = finished["LocalCranfield"].stat().st_mtime_ns
    run_harness(results, cache)
    after = task_files(results)
    assert after["LocalCranfield"].stat().st_mtime_ns == first_mtime  # not recomputed
    assert main_scores(results) == reference
    leftovers = [p for p in results.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]
    assert not leftovers
