"""The whole path through the CLI on a real slice: results, run records and provenance, resume
after a kill, determinism, and the per-query TREC run files re-scored by ir_measures.

Uses the bundled BERT-tiny SPLADE (fast on CPU) on a slice of the real Cranfield and XQuAD data.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ir_measures
import pytest
from hydra import compose, initialize_config_dir
from mteb.cache import ResultCache
from mteb.results import TaskResult

from harness.paths import REPO_ROOT, shared_data_root
from harness.results import provenance_problems, read_provenance, read_run_records
from harness.tasks import load_tasks

pytestmark = pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets")

TASKS = ["LocalCranfield", "LocalXQuADRetrieval"]
SLICED = {name: f"{name} (slice_25q_seed0_120d)" for name in TASKS}  # result names of the slices


BENCHMARK = [
    "benchmark=local_real",
    "benchmark.data_tasks=[LocalCranfield,{name:LocalXQuADRetrieval,subsets:[en,de-en]}]",
    "benchmark.slice_queries=25", "benchmark.slice_docs=120",
]


def harness_cmd(results: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "harness", "model=splade_tiny", *BENCHMARK,
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
    assert not (folder / "config.yaml").exists() and not (folder / "run.json").exists()
    (record,) = read_run_records(folder)
    assert record["status"] == "finished" and record["config"]["model"]["name"] == "splade_tiny"
    assert record["packages"]["mteb"] and record["tasks"] == list(SLICED.values())
    assert record["command"].startswith("python -m harness model=splade_tiny benchmark=local_real")
    assert set(record["git"]) == {"commit", "dirty"} and record["ended_at"] > record["started_at"]
    assert record["computed"] == {SLICED["LocalCranfield"]: {"test": ["default"]},
                                  SLICED["LocalXQuADRetrieval"]: {"validation": ["de-en", "en"]}}
    assert record["reused"] == {}
    assert str(REPO_ROOT) not in json.dumps(record)  # no absolute path of the checkout
    assert provenance_problems(folder.parent) == []
    scores = main_scores(results)
    assert set(scores) == set(TASKS)
    assert all(0.05 < s <= 1.0 for s in scores.values()), scores  # a trained SPLADE beats random
    assert "LocalCranfield" in out.stdout  # the printed table
    stats = json.loads((folder / f"{SLICED['LocalCranfield']}.efficiency.json").read_text())
    assert stats  # efficiency statistics beside the task result


def sliced_tasks() -> dict:
    """The CLI's tasks, built again from the same overrides (name -> task, data loaded)."""
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=BENCHMARK)
    tasks = {t.metadata.name: t for t in load_tasks(cfg.benchmark)}
    for task in tasks.values():
        task.load_data()
    return tasks


def ndcg10_by_hand(ranking: dict[str, float], qrels: dict[str, int]) -> float:
    """trec_eval's nDCG@10 written out: rank by score then doc id (both descending), gain = grade,
    discount log2(rank + 1), ideal from the qrels' positive grades."""
    ranked = sorted(ranking.items(), key=lambda item: (item[1], item[0]), reverse=True)[:10]
    dcg = sum(max(qrels.get(d, 0), 0) / math.log2(r + 2) for r, (d, _) in enumerate(ranked))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def test_trec_run_files_rescore_to_mtebs_main_score(first_run):
    results, _, _ = first_run
    queries_dir = task_files(results)["LocalCranfield"].parent / "harness" / "queries"
    tasks = sliced_tasks()
    checked = 0
    for name, path in task_files(results).items():
        stored = TaskResult.from_disk(path)
        for split, scores in stored.scores.items():
            for score in scores:
                subset = score["hf_subset"]
                base = queries_dir / SLICED[name] / split
                per_query = json.loads((base / f"{subset}.ndcg_at_10.json").read_text())
                data = tasks[SLICED[name]].dataset[subset][split]
                qrels = {q: d for q, d in data["relevant_docs"].items() if d}  # mteb's filter
                run_file = base / f"{subset}.trec.gz"
                lines = gzip.decompress(run_file.read_bytes()).decode().splitlines()
                assert max(int(line.split()[3]) for line in lines) <= 100
                ranking: dict[str, dict[str, float]] = {}
                for line in lines:
                    qid, _, did, _, value, _ = line.split()
                    ranking.setdefault(qid, {})[did] = float(value)
                measured = {m.query_id: m.value for m in ir_measures.iter_calc(
                    [ir_measures.nDCG @ 10],
                    [ir_measures.Qrel(q, d, g) for q, docs in qrels.items() for d, g in docs.items()],
                    ir_measures.read_trec_run(str(run_file)))}
                # a query without any retrieved document has no line but counts 0 in mteb's mean
                rescored = {q: measured.get(q, 0.0) for q in qrels}
                assert set(per_query["per_query"]) == set(qrels)
                for qid, value in rescored.items():
                    assert value == pytest.approx(per_query["per_query"][qid], abs=1e-9)
                    assert value == pytest.approx(ndcg10_by_hand(ranking.get(qid, {}), qrels[qid]),
                                                  abs=1e-9)
                mean = sum(rescored.values()) / len(rescored)
                assert round(mean, 5) == pytest.approx(score["ndcg_at_10"], abs=1e-6)  # mteb rounds
                assert abs(mean - score["main_score"]) <= 5e-6 + 1e-12
                checked += 1
    assert checked == 3  # Cranfield default, XQuAD en and de-en


def test_same_config_twice_gives_identical_scores(first_run, tmp_path):
    results, cache, _ = first_run
    run_harness(tmp_path / "again", cache)  # cached encodings
    assert main_scores(tmp_path / "again") == main_scores(results)
    run_harness(tmp_path / "fresh", tmp_path / "fresh-cache")  # recomputed encodings
    assert main_scores(tmp_path / "fresh") == main_scores(results)


def test_killed_run_resumes_without_recomputing_finished_work(first_run, tmp_path):
    """SIGKILL mid-run leaves a consistent folder (every task file has provenance naming a run
    record); the resumed run reuses what the killed one finished and records that it did."""
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
    revision = finished["LocalCranfield"].parent
    assert provenance_problems(revision) == []
    (killed,) = read_run_records(revision / "harness")
    assert killed["status"] == "started" and killed["ended_at"] is None
    first_mtime = finished["LocalCranfield"].stat().st_mtime_ns

    run_harness(results, cache)
    assert list((results / "results").glob("*/*")) == [revision], "the revision changed"
    after = task_files(results)
    assert after["LocalCranfield"].stat().st_mtime_ns == first_mtime  # not recomputed
    assert main_scores(results) == reference
    leftovers = [p for p in results.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]
    assert not leftovers
    assert provenance_problems(revision) == []
    old, resumed = read_run_records(revision / "harness")
    assert old == killed and resumed["status"] == "finished"
    cranfield, xquad = SLICED["LocalCranfield"], SLICED["LocalXQuADRetrieval"]
    assert resumed["reused"][cranfield] == {"test": ["default"]}
    assert cranfield not in resumed["computed"]
    assert "de-en" in resumed["computed"][xquad]["validation"]
    provenance = read_provenance(revision / "harness")
    assert provenance[f"{cranfield}.json"]["run"] == killed["run_id"]
    assert provenance[f"{xquad}.json"]["run"] == resumed["run_id"]
    for key, run_id in provenance[f"{xquad}.json"]["subsets"].items():
        split, subset = key.split("/")
        by = resumed if subset in resumed["computed"][xquad].get(split, []) else killed
        assert run_id == by["run_id"]
    ndcg_file = revision / "harness" / "queries" / cranfield / "test" / "default.ndcg_at_10.json"
    assert json.loads(ndcg_file.read_text())["run_id"] == killed["run_id"]  # not searched again
