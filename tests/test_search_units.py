"""Unit tests of harness.search on synthetic sparse data, against independent computations."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from harness.search.backends import BackendConfig
from harness.search.csr import Encoded, top_k_rows, torch_sparse_to_csr
from harness.search.encoding_cache import EncodingCache, content_hash
from harness.search.exact import ExactIndex, pair_scores
from harness.search.seismic import SeismicIndex
from harness.search.stats import flops, write_entry


def random_csr(
    n: int, dim: int, nnz_per_row: int, seed: int, vocab: np.ndarray | None = None
) -> sp.csr_matrix:
    """Canonical CSR `[n, dim]` with about `nnz_per_row` entries per row drawn from `vocab` (or all)."""
    rng = np.random.default_rng(seed)
    vocab = np.arange(dim) if vocab is None else vocab
    rows, cols = [], []
    for r in range(n):
        c = np.unique(rng.choice(vocab, size=rng.integers(1, 2 * nnz_per_row), replace=True))
        rows.append(np.full(len(c), r))
        cols.append(c)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    vals = rng.lognormal(size=len(rows)).astype(np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n, dim), dtype=np.float32)
    m.sort_indices()
    m.indices = m.indices.astype(np.int32)
    return m


def reference_top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """Best-first positive-score documents per query row, ties to the lower row (plain numpy)."""
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        out.append([int(d) for d in order[:k] if row[d] > 0])
    return out


def test_torch_sparse_to_csr_round_trip():
    dense = torch.tensor([[0.0, 1.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.5, 0.0]])
    csr = torch_sparse_to_csr(dense.to_sparse())
    assert csr.indices.dtype == np.int32 and csr.data.dtype == np.float32
    np.testing.assert_array_equal(csr.toarray(), dense.numpy())
    with pytest.raises(ValueError, match="sparse COO"):
        torch_sparse_to_csr(dense)


def test_top_k_rows_keeps_exactly_the_k_largest():
    rng = np.random.default_rng(3)
    m = random_csr(300, 500, 40, seed=1)
    m.data = rng.integers(1, 6, size=m.nnz).astype(np.float32)  # many ties
    for k in (1, 7, 25, 1000):
        pruned = top_k_rows(m, k)
        assert pruned.has_sorted_indices
        for r in range(m.shape[0]):
            cols, vals = (
                m.indices[m.indptr[r] : m.indptr[r + 1]],
                m.data[m.indptr[r] : m.indptr[r + 1]],
            )
            # independent: order by (-value, column), take k, compare as sets of (column, value)
            order = np.lexsort((cols, -vals))[:k]
            expected = dict(zip(cols[order].tolist(), vals[order].tolist(), strict=True))
            got_cols = pruned.indices[pruned.indptr[r] : pruned.indptr[r + 1]]
            got = dict(
                zip(
                    got_cols.tolist(),
                    pruned.data[pruned.indptr[r] : pruned.indptr[r + 1]].tolist(),
                    strict=True,
                )
            )
            assert got == expected
            assert np.all(np.diff(got_cols) > 0)
    assert top_k_rows(m, 0) is m
    with pytest.raises(ValueError, match="top-k must be >= 0"):
        top_k_rows(m, -1)


@pytest.mark.parametrize(
    ("threads", "pruning"), [(1, "none"), (2, "none"), (2, "maxscore"), (2, "windowed")]
)
def test_exact_index_equals_dense_dot_product(threads, pruning):
    rng = np.random.default_rng(4)
    docs = random_csr(3000, 800, 25, seed=5)
    # four stop-word-like terms in ~60% of the documents: stored as dense rows by the index
    frequent = sp.csr_matrix(
        (rng.random((3000, 800)) < 0.6) * (np.arange(800) < 4), dtype=np.float32
    )
    docs = (docs + frequent).tocsr()
    docs.sort_indices()
    queries = random_csr(120, 800, 6, seed=6)
    uses_frequent = sp.csr_matrix(
        (np.arange(120)[:, None] % 2 == 0) * (np.arange(800) == 1), dtype=np.float32
    )
    queries = (queries + uses_frequent).tocsr()  # half the queries take the dense-row path
    queries.sort_indices()
    queries = sp.vstack(
        [queries, sp.csr_matrix((1, 800), dtype=np.float32)], format="csr"
    )  # empty query
    docs.data[:] = np.ceil(docs.data)  # integer weights: exact float sums, real ties
    queries.data[:] = np.round(queries.data) + 1
    scores = (queries @ docs.T).toarray()
    index = ExactIndex(docs, num_threads=threads, pruning=pruning)
    for k in (1, 10, 5000):
        top = index.search(queries, k)
        expected = reference_top_k(scores, k)
        for q, ref in enumerate(expected):
            got = top.doc_idx[q][top.doc_idx[q] >= 0].tolist()
            assert got == ref
            np.testing.assert_allclose(top.scores[q, : len(got)], scores[q, got], rtol=1e-6)
    assert index.search(queries, 10).doc_idx[-1].tolist() == [-1] * 10
    if pruning in ("none", "windowed"):
        assert index.dense.shape == (4, 3000)  # both code paths ran
    # O(nnz) (postings, plus the forward rows for MaxScore), never O(n_docs x dim)
    assert index.nbytes <= 2 * docs.nnz * 8 + (3000 + 1) * 8 + (800 + 1) * 16


def test_pair_scores_equal_dense_pairs():
    docs, queries = random_csr(200, 300, 20, seed=7), random_csr(30, 300, 10, seed=8)
    rng = np.random.default_rng(0)
    q_rows, d_rows = rng.integers(0, 30, 500), rng.integers(0, 200, 500)
    expected = np.einsum("ij,ij->i", queries.toarray()[q_rows], docs.toarray()[d_rows])
    np.testing.assert_allclose(pair_scores(queries, docs, q_rows, d_rows), expected, rtol=1e-5)


def test_seismic_high_budget_matches_exact_top10_past_16_bit_ids():
    vocab = np.arange(60_000, 70_000, 20)  # 500 terms, half of them above 65,535
    docs = random_csr(1500, 70_000, 30, seed=11, vocab=vocab)
    queries = random_csr(60, 70_000, 8, seed=12, vocab=vocab)
    index = SeismicIndex(
        docs,
        n_postings=5000,
        centroid_fraction=0.1,
        min_cluster_size=2,
        summary_energy=1.0,
        max_fraction=1.5,
        doc_cut=15,
        query_cut=1000,
        heap_factor=1.0,
        num_threads=1,
    )
    approx = index.search(queries, 10)
    scores = (queries @ docs.T).toarray()
    for q in range(queries.shape[0]):
        got = approx.doc_idx[q][approx.doc_idx[q] >= 0]
        tenth = np.sort(scores[q])[::-1][9]
        assert len(got) == 10
        # same top-10 up to Seismic's float16 document weights: nothing it returns is worse than
        # the exact 10th score beyond that rounding
        assert np.all(scores[q, got] >= tenth * (1 - 2e-3))
        np.testing.assert_allclose(approx.scores[q, : len(got)], scores[q, got], rtol=2e-3)
    assert index.nbytes > 0


def test_backend_defaults_come_from_the_hydra_config():
    import yaml

    from harness.search.backends import SEARCH_CONF

    for name in ("exact", "seismic"):
        node = yaml.safe_load((SEARCH_CONF / f"{name}.yaml").read_text())
        assert BackendConfig.parse({"name": name}).params == {
            k: v for k, v in node.items() if k != "name"
        }
    cfg = BackendConfig.parse({"name": "seismic", "query_cut": 5})
    assert cfg.params["query_cut"] == 5
    for node, message in (
        ({"name": "pisa"}, "search.name must be one of"),
        ({"name": "exact", "query_cut": 3}, "unknown search.query_cut for backend 'exact'"),
        ({"name": "seismic", "heap_factor": 1.5}, "search.heap_factor must be in"),
        ({"name": "exact", "num_threads": -1}, "search.num_threads must be >= 0"),
        ({"name": "exact", "pruning": "wand"}, "search.pruning must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            BackendConfig.parse(node).build(random_csr(5, 10, 2, seed=0))


def test_encoding_cache_detects_corruption_and_round_trips(tmp_path: Path):
    cache = EncodingCache(tmp_path)
    m = random_csr(50, 1000, 12, seed=2)
    key = cache.key(
        identity={"name": "x"}, task="T", subset="default", split="test", side="document"
    )
    path = cache.save(key, Encoded(m, 123, 4.5), {"note": "test"})
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed into place
    hit = cache.load(key, 50, 1000)
    assert (hit.matrix != m).nnz == 0 and (hit.n_tokens, hit.seconds) == (123, 4.5)
    with pytest.warns(UserWarning, match="shape"):
        assert cache.load(key, 51, 1000) is None  # wrong shape: treated as corrupt and removed
    assert not path.exists()

    cache.save(key, Encoded(m, 123, 4.5), {})
    with np.load(path) as z:
        arrays = dict(z)
    arrays["data"] = (
        arrays["data"] * 2
    )  # same shape, different content: only the checksum catches it
    with path.open("wb") as f:
        np.savez(f, **arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.load(key, 50, 1000) is None
    assert any("checksum mismatch" in str(w.message) for w in caught)

    cache.save(key, Encoded(m, 123, 4.5), {})
    path.write_bytes(path.read_bytes()[:100])  # truncated file
    with pytest.warns(UserWarning, match="corrupt"):
        assert cache.load(key, 50, 1000) is None


def test_cache_content_hash_sees_text_and_order():
    assert content_hash(["a", "b"], ["x", "y"]) != content_hash(["a", "b"], ["x", "y "])
    assert content_hash(["a", "b"], ["x", "y"]) != content_hash(["b", "a"], ["x", "y"])


def test_flops_and_stats_file(tmp_path: Path):
    q, d = random_csr(40, 300, 5, seed=3), random_csr(500, 300, 15, seed=4)
    qb, db = (q.toarray() > 0).astype(float), (d.toarray() > 0).astype(float)
    assert flops(q, d) == pytest.approx((qb @ db.T).mean())  # expected shared active dims per pair
    write_entry(tmp_path, "T", {"subset": "en", "split": "test", "v": 1})
    write_entry(tmp_path, "T", {"subset": "de", "split": "test", "v": 2})
    write_entry(tmp_path, "T", {"subset": "en", "split": "test", "v": 3})
    payload = json.loads((tmp_path / "T.efficiency.json").read_text())
    assert [(e["subset"], e["v"]) for e in payload["entries"]] == [("de", 2), ("en", 3)]
