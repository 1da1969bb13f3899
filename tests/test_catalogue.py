"""The task catalogue matches mteb's own benchmark metadata (read offline)."""

import subprocess
import sys

import mteb
import pytest

from harness.config import compose_config
from harness.paths import REPO_ROOT
from harness.tasks import select_mteb_tasks, task_row


def _types(benchmark: str, types: tuple[str, ...]) -> list[str]:
    return [t.metadata.name for t in mteb.get_benchmark(benchmark).tasks if t.metadata.type in types]


@pytest.mark.parametrize(
    "config,benchmark,n_retrieval,n_rerank",
    [("mmteb_multilingual", "MTEB(Multilingual, v2)", 18, 9), ("mteb_eng", "MTEB(eng, v2)", 10, 2)],
)
def test_benchmark_selection_matches_mteb(config, benchmark, n_retrieval, n_rerank):
    cfg = compose_config([f"benchmark={config}"])
    names = [t.metadata.name for t in select_mteb_tasks(cfg.benchmark)]
    assert names == _types(benchmark, ("Retrieval",))
    assert len(names) == n_retrieval
    cfg = compose_config([f"benchmark={config}", "benchmark.reranking=true"])
    with_rerank = [t.metadata.name for t in select_mteb_tasks(cfg.benchmark)]
    assert len(with_rerank) == n_retrieval + n_rerank
    assert set(with_rerank) - set(names) == set(
        _types(benchmark, ("Reranking", "InstructionReranking"))
    )


def test_explicit_task_names_are_added_once_and_unknown_ones_fail():
    cfg = compose_config(["benchmark=mteb_eng", "benchmark.tasks=[ArguAna,NFCorpus]"])
    names = [t.metadata.name for t in select_mteb_tasks(cfg.benchmark)]
    assert names.count("ArguAna") == 1 and "NFCorpus" in names
    cfg = compose_config(["benchmark=mteb_eng", "benchmark.tasks=[NoSuchTask]"])
    with pytest.raises(ValueError, match="NoSuchTask"):
        select_mteb_tasks(cfg.benchmark)


def test_task_rows_use_descriptive_statistics():
    (arguana,) = mteb.get_tasks(tasks=["ArguAna"])
    row = task_row(arguana)
    stats = arguana.metadata.descriptive_stats["test"]
    assert (row.documents, row.queries) == (stats["num_documents"], stats["num_queries"])
    assert row.main_score == "ndcg_at_10" and row.splits == "test"
    (belebele,) = mteb.get_tasks(tasks=["BelebeleRetrieval"])
    row = task_row(belebele)  # totals are summed over the per-subset statistics
    per_subset = belebele.metadata.descriptive_stats["test"]["hf_subset_descriptive_stats"]
    queries = [s["queries_text_statistics"] for s in per_subset.values()]
    expected = sum(round(q["total_text_length"] / q["average_text_length"]) for q in queries)
    assert row.queries == expected > 100_000
    assert row.subsets == len(belebele.metadata.hf_subsets) > 300


def test_make_tasks_cli_prints_the_catalogue():
    out = subprocess.run(
        [sys.executable, "-m", "harness.tasks", "benchmark=mmteb_multilingual", "benchmark.reranking=true"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "27 tasks" in out.stdout
    for name in ("MIRACLRetrievalHardNegatives", "WikipediaRerankingMultilingual", "Core17InstructionRetrieval"):
        assert name in out.stdout
