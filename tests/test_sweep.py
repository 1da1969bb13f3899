"""Sharded sweeps through Hydra's launchers: the shard split, one-line errors, sweep progress,
and submitit's local launcher running the embedded benchmark in two shards with the scores of
one single-process run."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mteb.results import TaskResult

from harness import sweep
from harness.config import CONF_DIR, compose_config
from harness.paths import REPO_ROOT, shared_data_root
from harness.reports.collect import load_model_runs

LOCAL_REAL = yaml.safe_load((CONF_DIR / "benchmark" / "local_real.yaml").read_text())["data_tasks"]
needs_data = pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets")


# ---- the split ------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("per_job", [1, 2, 3])
def test_shards_cover_the_benchmark_once_in_order(per_job):
    names = [n if isinstance(n, str) else n["name"] for n in LOCAL_REAL]
    count = -(-len(names) // per_job)
    seen = []
    for shard in range(count):
        cfg = compose_config(["benchmark=local_real", f"run.shard={shard}",
                              f"run.tasks_per_job={per_job}"])
        bench, only = sweep.job_benchmark(cfg)
        assert only == names[shard * per_job:(shard + 1) * per_job]
        assert [e if isinstance(e, str) else e["name"] for e in bench.data_tasks] == only
        seen += only
    assert seen == names
    cfg = compose_config(["benchmark=local_real", f"run.shard={count}",
                          f"run.tasks_per_job={per_job}"])
    with pytest.raises(ValueError, match=rf"run.shard={count} out of range.*valid: 0..{count - 1}"):
        sweep.job_benchmark(cfg)


def test_unsharded_run_keeps_the_benchmark_and_run_tasks():
    cfg = compose_config(["benchmark=embedded", "run.tasks=[EmbeddedMultilingualRetrieval]"])
    bench, only = sweep.job_benchmark(cfg)
    assert bench == cfg.benchmark and only == ["EmbeddedMultilingualRetrieval"]


@pytest.mark.parametrize("override, message", [
    ("run.tasks_per_job=0", "run.tasks_per_job must be an integer >= 1, got 0"),
    ("run.tasks_per_job=two", "run.tasks_per_job must be an integer >= 1, got 'two'"),
    ("run.shard=-1", "run.shard must be an integer >= 0 or null, got -1"),
])
def test_bad_settings_fail_in_one_line(override, message):
    with pytest.raises(ValueError, match=message):
        sweep.job_benchmark(compose_config(["benchmark=embedded", override]))


@pytest.mark.parametrize("args, message", [
    (["--launcher", "pbs"], "error: unknown launcher 'pbs'; valid: slurm, local, ray"),
    (["--launcher", "local", "run.tasks_per_job=0"],
     "error: run.tasks_per_job must be an integer >= 1, got 0"),
    (["--launcher", "local", "run.shard=1"], "error: run.shard is set by the sweep"),
    (["--launcher", "local", "benchmark=embedded,local_real"],
     "error: a sharded sweep takes one value of benchmark"),
    (["--launcher", "local", "model=nope"], "error: unknown model 'nope'"),
])
def test_sweep_cli_rejects_bad_input_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_ray_launcher_names_its_missing_package():
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        assert sweep.check_launcher("ray").config == "ray_cluster"
        return
    with pytest.raises(ValueError, match="needs the Python package hydra-ray-launcher"):
        sweep.check_launcher("ray")


@pytest.mark.parametrize("name", ["slurm", "local", "ray"])
def test_every_launcher_has_its_config(name):
    path = CONF_DIR / "hydra" / "launcher" / f"{sweep.LAUNCHERS[name].config}.yaml"
    assert path.is_file()


# ---- progress -------------------------------------------------------------------------------


def _result(path: Path, pairs: list[tuple[str, str]], mtime: float) -> None:
    scores: dict[str, list] = {}
    for split, subset in pairs:
        scores.setdefault(split, []).append({"hf_subset": subset, "main_score": 0.5})
    path.write_text(json.dumps({"scores": scores}))
    os.utime(path, (mtime, mtime))


def test_sweep_status_counts_finished_tasks_and_rates_them(tmp_path):
    now = 1_000_000.0
    started = now - 600
    folder, progress = tmp_path / "results", tmp_path / ".progress"
    folder.mkdir()
    progress.mkdir()
    (progress / sweep.MANIFEST).write_text(json.dumps({"jobs": 3, "tasks": 6, "started": started}))
    two = {"splits": ["test"], "subsets": ["en", "de"]}
    (progress / "job0.json").write_text(json.dumps({"job": "0", "folder": str(folder), "started": started,
        "tasks": [{"name": "A", **two}, {"name": "B", **two}]}))
    (progress / "job1.json").write_text(json.dumps({"job": "1", "folder": str(folder), "started": started,
        "tasks": [{"name": "C", **two}, {"name": "D", **two}]}))
    _result(folder / "A.json", [("test", "en"), ("test", "de")], now - 400)   # done in this sweep
    _result(folder / "B.json", [("test", "en")], now - 10)                    # one subset: running
    _result(folder / "C.json", [("test", "de"), ("test", "en")], started - 5)  # done before (resumed)
    _result(folder / "D.json", [("test", "en"), ("test", "de")], now - 100)   # done in this sweep
    status = sweep.sweep_status(progress, now=now)
    assert (status["done"], status["total"], status["registered"]) == (3, 6, 2)
    # 2 tasks finished in the 600 s since the start: 3 remaining at 300 s each
    assert status["eta_seconds"] == pytest.approx(3 * 600 / 2)
    assert sweep.status_line(status) == "sweep: 3/6 tasks done, ETA 15m00s"


def test_status_line_formats():
    assert sweep.format_duration(3 * 3600 + 12 * 60 + 29) == "3h12m"
    assert sweep.status_line({"done": 0, "total": 4, "eta_seconds": None,
                              "elapsed_seconds": 5}) == "sweep: 0/4 tasks done, ETA unknown"
    assert sweep.status_line({"done": 4, "total": 4, "eta_seconds": None,
                              "elapsed_seconds": 65}) == "sweep: 4/4 tasks done in 1m05s"


# ---- submitit's local launcher: two shards equal one process --------------------------------

SMALL = [  # the embedded benchmark, smaller: two languages of the embedded task, a small XQuAD slice
    "model=splade_tiny", "benchmark=embedded",
    ("benchmark.local_tasks=[{name:EmbeddedMultilingualRetrieval,docs_per_language:12,"
     "languages:[eng,deu]}]"),
    "benchmark.slice_queries=8", "benchmark.slice_docs=16", "run.show_progress=false",
]


def _scores(results: Path) -> dict[str, dict]:
    """Task name → {(split, subset): main score} of every result file under `results`."""
    out = {}
    for path in (results / "results").glob("*/*/*.json"):
        if path.name == "model_meta.json":
            continue
        result = TaskResult.from_disk(path)
        out[result.task_name] = {(split, e["hf_subset"]): e["main_score"]
                                 for split, entries in result.scores.items() for e in entries}
    return out


@needs_data
def test_local_launcher_two_shards_equal_a_single_run(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sweep_dir = tmp_path / "sweep"
    sharded = subprocess.Popen(
        [sys.executable, "-m", "harness.sweep", "--launcher", "local", *SMALL,
         f"run.results_dir={tmp_path / 'sharded'}", f"run.cache_dir={tmp_path / 'cache-a'}",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    single = subprocess.run(
        [sys.executable, "-m", "harness", *SMALL, f"run.results_dir={tmp_path / 'single'}",
         f"run.cache_dir={tmp_path / 'cache-b'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    out, err = sharded.communicate(timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    assert sharded.returncode == 0, err[-3000:]
    assert "sweep: 2 task(s) of embedded in 2 shard(s)" in out

    scores = _scores(tmp_path / "sharded")
    assert scores == _scores(tmp_path / "single")
    assert len(scores) == 2 and all(len(v) >= 2 for v in scores.values())

    jobs = sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    shards = [yaml.safe_load((p / ".hydra" / "overrides.yaml").read_text())[-1] for p in jobs]
    assert shards == ["run.shard=0", "run.shard=1"]
    logs = "".join(p.read_text() for p in sweep_dir.glob("*/__main__.log"))  # the jobs' own logs
    # each job: a line at its start, then one per finished task (which job logs 1/2 is a race)
    lines = re.findall(r"sweep: (\d)/2 tasks done", logs)
    assert len(lines) >= 4 and lines.count("2") >= 1, logs
    manifest = json.loads((sweep_dir / ".progress" / sweep.MANIFEST).read_text())
    assert (manifest["jobs"], manifest["tasks"]) == (2, 2)
    status = subprocess.run([sys.executable, "-m", "harness.sweep", "status", str(sweep_dir)],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert status.stdout.startswith("sweep: 2/2 tasks done in ")
    # the report's collector sees one model variant holding both shards' tasks
    runs = load_model_runs(tmp_path / "sharded")
    assert len(runs) == 1 and set(runs[0].results) == set(scores)


def test_slurm_launcher_submits_one_array_of_models_times_shards(tmp_path):
    """Without a cluster: a stand-in `sbatch` keeps the script submitit writes from our config."""
    bin_dir, record, sweep_dir = tmp_path / "bin", tmp_path / "job.sbatch", tmp_path / "sweep"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/bash\ncp "$1" {record}\necho "Submitted batch job 42"\n')
    (bin_dir / "srun").write_text("#!/bin/bash\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.sweep", "--launcher", "slurm", "model=splade_tiny,bm25",
         "benchmark=embedded", "benchmark.data_tasks=[]", "run.tasks_per_job=1",
         "hydra.launcher.partition=a100", "hydra.launcher.timeout_min=90",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.time() + 300
        while not record.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
    finally:  # submitit waits for the (never running) array: stop it
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    assert record.exists(), err[-3000:]
    script = record.read_text()
    # 2 models x 1 task of the benchmark (data tasks off) = 2 jobs in one array
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=a100", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --job-name=harness_embedded"):
        assert line in script, script
    manifest = json.loads((sweep_dir / ".progress" / sweep.MANIFEST).read_text())
    assert (manifest["jobs"], manifest["tasks"]) == (2, 2)


def test_finished_sweep_reports_the_time_to_its_last_task(tmp_path):
    started = 1_000_000.0
    folder, progress = tmp_path / "results", tmp_path / ".progress"
    folder.mkdir()
    progress.mkdir()
    (progress / sweep.MANIFEST).write_text(json.dumps({"jobs": 1, "tasks": 2, "started": started}))
    (progress / "job0.json").write_text(json.dumps({"job": "0", "folder": str(folder),
        "started": started, "tasks": [{"name": n, "splits": ["dev"], "subsets": ["default"]}
                                      for n in ("A", "B")]}))
    _result(folder / "A.json", [("dev", "default")], started + 30)
    _result(folder / "B.json", [("dev", "default")], started + 95)
    status = sweep.sweep_status(progress, now=started + 5000)
    assert sweep.status_line(status) == "sweep: 2/2 tasks done in 1m35s"
