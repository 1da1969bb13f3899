"""Results the real CLI writes work with mteb's own tools: its loader, `to_dataframe`, and the
results-repository submission path (which files it selects, where it puts them, what it reads).

One multirun on the embedded task: BERT-tiny SPLADE with exact and Seismic search, and mteb's
BM25 twice (it ignores `search`, so its second job finds everything done and reuses it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mteb.cache import ResultCache
from mteb.cache.result_cache import CopyResultsAction, _remote_model_dir
from mteb.models.model_meta import ModelMeta
from mteb.results import TaskResult

from harness.paths import REPO_ROOT
from harness.results import provenance_problems, read_provenance, read_run_records

TASK = "EmbeddedMultilingualRetrieval"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compat")
    command = [
        sys.executable, "-m", "harness", "-m", "model=splade_tiny,bm25", "search=exact,seismic",
        "benchmark=embedded", f"benchmark.local_tasks=[{{name:{TASK},docs_per_language:10}}]",
        "benchmark.data_tasks=[]", f"run.results_dir={root / 'results'}",
        f"run.cache_dir={root / 'cache'}", "run.show_progress=false",
        f"hydra.sweep.dir={root / 'sweep'}",
    ]
    out = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "results"


def variant_folders(root: Path) -> dict[tuple[str, str], Path]:
    """(name, revision) from each `model_meta.json` -> its folder."""
    found = {}
    for meta_path in (root / "results").glob("*/*/model_meta.json"):
        meta = json.loads(meta_path.read_text())
        found[meta["name"], meta["revision"]] = meta_path.parent
    return found


def test_mteb_loads_every_variant(results):
    folders = variant_folders(results)
    names = {name for name, _ in folders}
    assert len(folders) == len(names) == 3  # SPLADE exact, SPLADE Seismic, BM25
    loaded = ResultCache(results).load_results(require_model_meta=True, include_remote=False)
    got = {(m.model_name, m.model_revision): m for m in loaded.model_results}
    assert set(got) == set(folders)
    for key, model in got.items():
        (result,) = model.task_results
        assert result.task_name == TASK
        assert result.get_score() == TaskResult.from_disk(folders[key] / f"{TASK}.json").get_score()


def test_to_dataframe_has_one_row_per_variant(results):
    loaded = ResultCache(results).load_results(require_model_meta=True, include_remote=False)
    long = loaded.to_dataframe(format="long")
    assert len(long) == 3 and long["model_name"].is_unique  # nothing averaged together
    wide = loaded.to_dataframe().set_index("task_name")
    expected = {name: TaskResult.from_disk(folder / f"{TASK}.json").get_score()
                for (name, _), folder in variant_folders(results).items()}
    assert {name: wide.loc[TASK, name] for name in expected} == pytest.approx(expected)


def test_layout_is_what_the_results_repository_takes(results, tmp_path):
    cache = ResultCache(results)
    metas = [ModelMeta.model_construct(**json.loads((folder / "model_meta.json").read_text()))
             for folder in variant_folders(results).values()]
    for meta in metas:  # mteb's own path of a submitted model: <name as path>/<revision>/
        assert _remote_model_dir(results / "results", meta) / f"{TASK}.json" in [
            p for p in (results / "results").glob("*/*/*.json")]
    # the submission path: mteb picks the files to submit, copies them, the copy loads back
    unsubmitted = cache._get_unsubmitted_results(metas)
    assert {p.name for files in unsubmitted.values() for p in files} == {f"{TASK}.json"}
    remote = tmp_path / "remote"
    CopyResultsAction(unsubmitted, remote / "results").do()
    copied = {p.relative_to(remote / "results").parts[2:] for p in remote.rglob("*") if p.is_file()}
    assert copied == {(f"{TASK}.json",), ("model_meta.json",), ("run_settings.jsonl",)}
    back = ResultCache(remote).load_results(require_model_meta=True, include_remote=False)
    local = cache.load_results(require_model_meta=True, include_remote=False)
    scores = {(m.model_name, m.model_revision): m.task_results[0].get_score()
              for m in back.model_results}
    assert scores == {(m.model_name, m.model_revision): m.task_results[0].get_score()
                      for m in local.model_results}


def test_second_bm25_job_reuses_and_says_so(results):
    (folder,) = [f for (name, _), f in variant_folders(results).items() if "bm25" in name]
    first, second = read_run_records(folder / "harness")
    assert first["status"] == second["status"] == "finished"
    assert first["computed"] == {TASK: {"test": sorted(first["computed"][TASK]["test"])}}
    assert first["reused"] == {} and second["computed"] == {}
    assert second["reused"] == first["computed"]
    entry = read_provenance(folder / "harness")[f"{TASK}.json"]
    assert entry["run"] == first["run_id"] and set(entry["subsets"].values()) == {first["run_id"]}
    assert provenance_problems(folder) == []
    # mteb's own BM25 model gets per-query files too (written by the first job only)
    written = sorted((folder / "harness" / "queries" / TASK / "test").glob("*.ndcg_at_10.json"))
    assert [p.name.split(".")[0] for p in written] == first["computed"][TASK]["test"]
    assert {json.loads(p.read_text())["run_id"] for p in written} == {first["run_id"]}
    assert all(p.with_name(p.name.split(".")[0] + ".trec.gz").is_file() for p in written)
