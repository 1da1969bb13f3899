"""TREC run files and per-query nDCG@10 (harness.runfiles) against pytrec_eval and ir_measures."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import ir_measures
import pytest

from harness.results import RunLog
from harness.runfiles import (
    RunFileWriter,
    per_query_ndcg,
    scored_ranking,
    trec_lines,
)


def rescore(text: str, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """ir_measures' nDCG@10 per query of a TREC run text."""
    judged = [ir_measures.Qrel(q, d, g) for q, docs in qrels.items() for d, g in docs.items()]
    return {m.query_id: m.value
            for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], judged,
                                           ir_measures.read_trec_run(text))}


def test_ties_across_the_cut_keep_the_top_10_pytrec_eval_scores():
    # 150 documents with one score: pytrec_eval orders ties by doc id, descending. The relevant
    # `d149` and `d148` are first in that order; a cut in insertion order would drop them.
    docs = {f"d{i:03d}": 1.0 for i in range(150)}
    qrels = {"q": {"d149": 2, "d148": 1, "d000": 1}}
    full = per_query_ndcg(qrels, {"q": docs})
    text = trec_lines({"q": docs}, "tag", depth=100)
    lines = text.splitlines()
    assert len(lines) == 100 and lines[0].split()[2] == "d149" and lines[-1].split()[2] == "d050"
    assert rescore(text, qrels)["q"] == pytest.approx(full["q"], abs=1e-12)
    assert full["q"] > 0.8  # both top ids are relevant


def test_scores_survive_the_text_file_exactly():
    docs = {"a": 0.1 + 0.2, "b": 0.30000000000000004, "c": 1 / 3}
    (score_a,) = [line.split()[4] for line in trec_lines({"q": docs}, "t").splitlines()
                  if line.split()[2] == "a"]
    assert float(score_a) == docs["a"]


def test_mteb_conventions_self_match_and_first_result():
    results = {"q1": {"q1": 9.0, "a": 5.0, "b": 5.0, "c": 1.0}, "q2": {}}
    kept = scored_ranking(results, ignore_identical_ids=True, skip_first_result=False)
    assert kept == {"q1": {"a": 5.0, "b": 5.0, "c": 1.0}, "q2": {}}
    assert "q1" in results["q1"]  # the search output handed back to mteb is left alone
    skipped = scored_ranking(results, ignore_identical_ids=False, skip_first_result=True)
    assert skipped["q1"] == {"a": 5.0, "b": 5.0, "c": 1.0}
    both = scored_ranking(results, ignore_identical_ids=True, skip_first_result=True)
    assert both["q1"] == {"b": 5.0, "c": 1.0}  # mteb's stable sort: `a` (first inserted) goes


def test_empty_ranking_counts_zero_and_has_no_line():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    ranking = {"q1": {"a": 2.0}, "q2": {}}
    assert per_query_ndcg(qrels, ranking) == {"q1": 1.0, "q2": 0.0}
    assert [line.split()[0] for line in trec_lines(ranking, "t").splitlines()] == ["q1"]


def test_whitespace_id_cannot_be_written():
    with pytest.raises(ValueError, match="'doc 1' cannot be written to a TREC run file"):
        trec_lines({"q": {"doc 1": 1.0}}, "t")


class _Inner:
    """A fixed search output, as any mteb SearchProtocol returns it."""

    mteb_model_meta = None

    def __init__(self, results):
        self.results = results
        self.indexed = None

    def index(self, corpus, **kwargs):
        self.indexed = corpus

    def search(self, queries, **kwargs):
        return self.results


def test_writer_passes_search_through_and_writes_both_files(tmp_path):
    results = {"q1": {"q1": 3.0, "a": 2.0, "b": 1.0}, "q2": {"b": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}}
    task = SimpleNamespace(
        metadata=SimpleNamespace(name="T"), ignore_identical_ids=True, skip_first_result=False,
        dataset={"default": {"test": {"relevant_docs": qrels}}},
    )
    run = RunLog(tmp_path / "h", {})
    writer = RunFileWriter(_Inner(results), tmp_path / "q", [task], run)
    writer.index(["corpus"], task_metadata=task.metadata)
    out = writer.search(["queries"], task_metadata=task.metadata, hf_split="test",
                        hf_subset="default", top_k=1000)
    assert out is results and writer.inner.indexed == ["corpus"]
    assert run.computed == {("T", "test", "default")}
    run_path, ndcg_path = writer.paths("T", "test", "default")
    text = gzip.decompress(run_path.read_bytes()).decode()
    assert text.splitlines()[0] == f"q1 Q0 a 1 2.0 {run.run_id}"  # the self-match is gone
    record = json.loads(ndcg_path.read_text())
    assert record["per_query"] == {"q1": 1.0, "q2": 0.0} and record["mean"] == 0.5
    assert rescore(text, qrels) == {"q1": 1.0, "q2": 0.0}
