"""Run records, provenance and layout markers (harness.results): units, and the CLI's one-line
refusal of a results folder or encoding cache written by an incompatible harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mteb.results import TaskResult

from harness.paths import REPO_ROOT
from harness.results import (
    FORMAT_FILE,
    LAYOUT_VERSION,
    AtomicResultCache,
    IncompatibleLayoutError,
    RunLog,
    claim_encoding_cache,
    claim_results_root,
    command_line,
    provenance_problems,
    read_provenance,
    read_run_records,
)
from harness.search.encoding_cache import FORMAT_VERSION


def test_fresh_root_is_marked_and_accepted_again(tmp_path):
    claim_results_root(tmp_path)
    assert json.loads((tmp_path / FORMAT_FILE).read_text())["layout"] == LAYOUT_VERSION
    claim_results_root(tmp_path)  # ours: accepted


def test_root_of_another_layout_fails_in_one_line(tmp_path):
    (tmp_path / FORMAT_FILE).parent.mkdir(parents=True)
    (tmp_path / FORMAT_FILE).write_text(json.dumps({"layout": LAYOUT_VERSION + 1}))
    with pytest.raises(IncompatibleLayoutError, match=r"layout \d+, this harness writes layout") as e:
        claim_results_root(tmp_path, shown="my-results")
    assert "\n" not in str(e.value) and "set run.results_dir to a new folder" in str(e.value)
    assert str(e.value).startswith("results folder my-results ")


def test_unmarked_root_with_results_predates_the_marker(tmp_path):
    folder = tmp_path / "results" / "org__model" / "no_revision_available"
    folder.mkdir(parents=True)
    (folder / "Task.json").write_text("{}")
    with pytest.raises(IncompatibleLayoutError, match="holds data of layout 1 .*older harness"):
        claim_results_root(tmp_path)
    assert not (tmp_path / FORMAT_FILE).exists()  # never marked as ours


def _entry(folder, fmt: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "k.npz", header=np.array(json.dumps({"format": fmt})))


def test_encoding_cache_dated_by_its_entries(tmp_path):
    _entry(tmp_path / "same", FORMAT_VERSION)
    claim_encoding_cache(tmp_path / "same")  # entries of this format: adopted and marked
    assert json.loads((tmp_path / "same" / "format.json").read_text())["layout"] == FORMAT_VERSION
    _entry(tmp_path / "old", FORMAT_VERSION - 1)
    with pytest.raises(IncompatibleLayoutError, match="encoding cache .*delete it"):
        claim_encoding_cache(tmp_path / "old")


def test_command_line_is_quoted_and_relative():
    argv = [str(REPO_ROOT / "harness" / "__main__.py"), "model=a b", "run.tasks=[X]"]
    assert command_line(argv) == "python -m harness 'model=a b' 'run.tasks=[X]'"
    assert command_line(["/abs/path/controlled_run.py", "--x"]) == "controlled_run.py --x"


def _result(name: str, subsets: list[str]) -> TaskResult:
    return TaskResult.model_construct(
        task_name=name, dataset_revision="r", mteb_version="2.26.0", evaluation_time=1.0,
        scores={"test": [{"hf_subset": s, "main_score": 0.5, "languages": ["eng-Latn"]}
                         for s in subsets]})


def test_records_accumulate_and_provenance_follows_who_computed(tmp_path):
    folder = tmp_path / "harness"
    first = RunLog(folder, {"tasks": ["T"]}).start()
    assert read_run_records(folder)[0]["status"] == "started"
    first.computed.add(("T", "test", "a"))
    task_file, staged = tmp_path / "T.json", tmp_path / "staged.json"
    staged.write_text('{"v": 1}')
    first.attribute(task_file, staged, _result("T", ["a"]))
    os.replace(staged, task_file)
    first.finish([_result("T", ["a"])])

    second = RunLog(folder, {"tasks": ["T"]}).start()
    assert second.run_id != first.run_id
    second.computed.add(("T", "test", "b"))
    staged.write_text('{"v": 2}')
    second.attribute(task_file, staged, _result("T", ["a", "b"]))
    os.replace(staged, task_file)
    second.finish([_result("T", ["a", "b"])])

    records = read_run_records(folder)
    assert [r["run_id"] for r in records] == [first.run_id, second.run_id]  # none overwritten
    assert records[1]["computed"] == {"T": {"test": ["b"]}}
    assert records[1]["reused"] == {"T": {"test": ["a"]}}
    entry = read_provenance(folder)["T.json"]
    assert entry["run"] == second.run_id
    assert entry["subsets"] == {"test/a": first.run_id, "test/b": second.run_id}
    assert provenance_problems(tmp_path) == []
    task_file.write_text('{"v": 3}')  # changed behind the harness's back
    assert provenance_problems(tmp_path) == [f"T.json: content differs from what run {second.run_id} wrote"]
    (tmp_path / "U.json").write_text("{}")
    assert "U.json: no provenance entry" in provenance_problems(tmp_path)


def test_failed_run_is_recorded_with_its_error(tmp_path):
    log = RunLog(tmp_path, {}).start()
    log.finish([], error=RuntimeError("out of memory"))
    (record,) = read_run_records(tmp_path)
    assert record["status"] == "failed" and record["error"] == "RuntimeError: out of memory"


def test_atomic_cache_records_provenance_before_the_file_appears(tmp_path):
    import mteb

    task = mteb.get_task("NFCorpus")  # metadata only: no data is loaded
    result = TaskResult.model_construct(
        task_name=task.metadata.name, dataset_revision=task.metadata.revision,
        mteb_version="2.26.0", evaluation_time=1.0, kg_co2_emissions=None,
        scores={"test": [{"hf_subset": "default", "main_score": 0.5, "ndcg_at_10": 0.5,
                          "languages": ["eng-Latn"]}]})
    meta = mteb.get_model_meta("mteb/baseline-bm25s")
    cache = AtomicResultCache(tmp_path)
    cache.run = RunLog(tmp_path / "h", {}).start()
    cache.run.computed.add((task.metadata.name, "test", "default"))
    cache.save_to_cache(result, meta)
    path = cache.get_task_result_path(task.metadata.name, meta, meta.revision)
    entry = read_provenance(tmp_path / "h")[path.name]
    assert entry["run"] == cache.run.run_id and entry["subsets"] == {"test/default": cache.run.run_id}


def test_cli_refuses_an_old_results_folder_in_one_line(tmp_path):
    old = tmp_path / "old" / "results" / "m" / "rev"
    old.mkdir(parents=True)
    (old / "Task.json").write_text("{}")
    out = subprocess.run(
        [sys.executable, "-m", "harness", "model=bm25", f"run.results_dir={tmp_path / 'old'}",
         f"hydra.run.dir={tmp_path}/hydra"],
        cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=300, check=False)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: results folder") and "run.results_dir" in line
