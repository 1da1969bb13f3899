"""Exact MaxScore search against brute force, and the profile-driven data generator."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from harness.search.backends import BackendConfig
from harness.search.bench.data import SparseProfile, df_curve, generate
from harness.search.bench.measure import brute_force, recall_at
from harness.search.exact import ExactIndex


def brute_force_top_k(docs: sp.csr_matrix, queries: sp.csr_matrix, k: int) -> list[list[int]]:
    """Best-first positive-score rows per query from a dense float64 product, ties to lower row."""
    scores = queries.toarray().astype(np.float64) @ docs.toarray().astype(np.float64).T
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        out.append([int(d) for d in order[:k] if row[d] > 0])
    return out


def skewed_csr(n: int, dim: int, nnz: int, seed: int, integer: bool) -> sp.csr_matrix:
    """CSR `[n, dim]`: Zipf-like term use and heavy-tailed weights, so MaxScore prunes."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, dim + 1) ** 0.7
    p /= p.sum()
    rows = np.repeat(np.arange(n), nnz)
    cols = rng.choice(dim, size=n * nnz, p=p)
    vals = rng.pareto(2.0, size=n * nnz) + 0.1
    if integer:
        vals = np.ceil(vals * 2)  # exact float sums: real ties
    m = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, dim))
    m.sum_duplicates()
    m.sort_indices()
    m.indices = m.indices.astype(np.int32)
    return m


@pytest.mark.parametrize("integer", [True, False])
def test_maxscore_equals_brute_force_and_taat(integer):
    docs = skewed_csr(2500, 600, 30, seed=1, integer=integer)
    queries = skewed_csr(80, 600, 12, seed=2, integer=integer)
    # an empty query, and one query whose only term no document has
    unused = np.setdiff1d(np.arange(600), docs.indices)[:1]
    lone = sp.csr_matrix((np.ones(len(unused), np.float32), (np.zeros(len(unused)), unused)),
                         shape=(1, 600))  # fmt: skip
    queries = sp.vstack([queries, sp.csr_matrix((1, 600), dtype=np.float32), lone], format="csr")
    queries.indices = queries.indices.astype(np.int32)
    pruned = ExactIndex(docs, num_threads=1, pruning="maxscore")
    plain = ExactIndex(docs, num_threads=1, pruning="none")
    for k in (1, 10, 3000):  # 3000 > number of documents
        got, ref = pruned.search(queries, k), plain.search(queries, k)
        expected = brute_force_top_k(docs, queries, k)
        for q, exp in enumerate(expected):
            ids = got.doc_idx[q][got.doc_idx[q] >= 0].tolist()
            if integer:
                assert ids == exp  # integer sums are exact: ties resolved by row, no rounding
            else:
                assert set(ids) == set(exp) or np.allclose(
                    np.sort(got.scores[q, : len(ids)]),
                    np.sort((queries[q] @ docs[exp].T).toarray().ravel()),
                    rtol=1e-5,
                )
        np.testing.assert_array_equal(got.doc_idx, ref.doc_idx)  # bit-identical to TAAT
        np.testing.assert_array_equal(got.scores, ref.scores)
    assert pruned.search(queries, 10).doc_idx[-2:].tolist() == [[-1] * 10, [-1] * 10]


@pytest.mark.parametrize("window", [64, 8192])
@pytest.mark.parametrize("integer", [True, False])
def test_windowed_equals_brute_force_and_taat(integer, window, monkeypatch):
    from harness.search import exact

    monkeypatch.setattr(exact, "WINDOW", window)  # 64: many windows, sparse and dense ones
    docs = skewed_csr(2500, 600, 30, seed=1, integer=integer)
    queries = skewed_csr(80, 600, 12, seed=2, integer=integer)
    empty = sp.csr_matrix((1, 600), dtype=np.float32)
    queries = sp.vstack([queries, empty], format="csr")
    queries.indices = queries.indices.astype(np.int32)
    windowed = ExactIndex(docs, num_threads=1, pruning="windowed")
    plain = ExactIndex(docs, num_threads=1, pruning="none")
    assert len(windowed.dense) > 0  # frequent terms as dense rows, as in the plain kernel
    for k in (1, 10, 3000):  # 3000 > number of documents
        got, ref = windowed.search(queries, k), plain.search(queries, k)
        np.testing.assert_array_equal(got.doc_idx, ref.doc_idx)  # bit-identical to TAAT
        np.testing.assert_array_equal(got.scores, ref.scores)
        if integer:  # integer sums are exact: ties resolved by row, no rounding
            for q, exp in enumerate(brute_force_top_k(docs, queries, k)):
                assert got.doc_idx[q][got.doc_idx[q] >= 0].tolist() == exp
    assert windowed.search(queries, 10).doc_idx[-1].tolist() == [-1] * 10
    # negative weights: no bounds are used, so no fallback
    signed = docs.copy()
    signed.data[::7] *= -1
    index = ExactIndex(signed, num_threads=1, pruning="windowed")
    assert index.pruning == "windowed"
    top = index.search(queries, 5)
    np.testing.assert_array_equal(
        top.doc_idx, ExactIndex(signed, num_threads=1, pruning="none").search(queries, 5).doc_idx
    )



@pytest.mark.parametrize("k", [1, 7, 10, 64])
def test_block_max_scan_equals_offering_every_score(k):
    """The windowed kernel's selection skips blocks; its heap must be the one offering all gives,
    with ties (equal scores straddling block edges and the floor), zeros and negative scores."""
    from harness.search import exact

    rng = np.random.default_rng(k)
    for n in (1, 15, 16, 17, 255, 4096, 5000):
        for signed in (False, True):
            acc = rng.integers(0, 6, n).astype(np.float32)  # small integers: many exact ties
            acc[rng.random(n) < 0.3] = 0.0
            if signed:
                acc[rng.random(n) < 0.3] *= -1
            maxima = np.empty(n // exact.SELECT_BLOCK + n // exact.SELECT_BLOCK**2 + 2, np.float32)
            heaps = []
            for scan in (True, False):
                heap_s, heap_d = np.empty(k, np.float32), np.empty(k, np.int32)
                size = 0
                # a heap already holding results of an earlier window (rows below `start`)
                for doc, score in ((0, 3.0), (1, 5.0)):
                    size = exact._offer(heap_s, heap_d, size, k, np.float32(score), doc)
                if scan:
                    size = exact._scan_block_max(acc, 100, n, k, heap_s, heap_d, size, maxima)
                else:
                    for t in range(n):
                        if acc[t] != 0:
                            size = exact._offer(heap_s, heap_d, size, k, acc[t], 100 + t)
                order = np.lexsort((heap_d[:size], -heap_s[:size]))
                heaps.append((heap_d[:size][order].tolist(), heap_s[:size][order].tolist()))
            assert heaps[0] == heaps[1], (n, signed)


def test_windowed_ties_across_many_dense_windows(monkeypatch):
    """Integer weights over few terms: thousands of equal scores, resolved by row across windows
    whose top-level block maxima set a floor."""
    from harness.search import exact

    monkeypatch.setattr(exact, "WINDOW", 4096)  # 256 blocks, 16 top-level blocks a window
    rng = np.random.default_rng(11)
    n, dim = 30_000, 40
    rows = np.repeat(np.arange(n), 3)
    docs = sp.csr_matrix((rng.integers(1, 3, 3 * n).astype(np.float32),
                          (rows, rng.integers(0, dim, 3 * n))), shape=(n, dim))  # fmt: skip
    docs.sum_duplicates()
    docs.indices = docs.indices.astype(np.int32)
    queries = sp.csr_matrix(rng.integers(0, 2, (25, dim)).astype(np.float32))
    queries.indices = queries.indices.astype(np.int32)
    index = ExactIndex(docs, num_threads=1, pruning="windowed")
    for k in (1, 10, 200):
        got = index.search(queries, k)
        for q, exp in enumerate(brute_force_top_k(docs, queries, k)):
            assert got.doc_idx[q][got.doc_idx[q] >= 0].tolist() == exp


def test_benchmark_brute_force_in_query_chunks_equals_a_dense_product():
    """The benchmark's reference (sparse float64 product, a few queries at a time) against the
    dense one, with integer ties and an empty query."""
    docs = skewed_csr(700, 200, 12, seed=8, integer=True)
    queries = sp.vstack([skewed_csr(9, 200, 6, seed=9, integer=True),
                         sp.csr_matrix((1, 200), dtype=np.float32)], format="csr")  # fmt: skip
    for k, chunk in ((10, 3), (1000, 4)):
        top = brute_force(docs, queries, k, chunk=chunk)
        for q, exp in enumerate(brute_force_top_k(docs, queries, k)):
            assert top.doc_idx[q][top.doc_idx[q] >= 0].tolist() == exp

def test_maxscore_falls_back_on_negative_weights():
    docs = skewed_csr(300, 100, 10, seed=3, integer=True)
    docs.data[::7] *= -1
    queries = skewed_csr(20, 100, 5, seed=4, integer=True)
    index = ExactIndex(docs, num_threads=1, pruning="maxscore")
    assert index.pruning == "none"
    top = index.search(queries, 5)
    for q, exp in enumerate(brute_force_top_k(docs, queries, 5)):
        assert top.doc_idx[q][top.doc_idx[q] >= 0].tolist() == exp


def profile_of(docs: sp.csr_matrix, queries: sp.csr_matrix) -> SparseProfile:
    return SparseProfile.from_encodings(docs, queries, {"top_k": {"document": 60, "query": 12}})


def test_generator_reproduces_the_document_frequency_curve(tmp_path):
    # a source with a steep, non-Zipf frequency curve: 20 "always-on" latents, a long flat tail
    rng = np.random.default_rng(5)
    dim, n = 2000, 1500
    p = np.concatenate([np.full(20, 0.6), rng.uniform(0.0, 0.03, dim - 20)])
    dense = (rng.random((n, dim)) < p) * rng.lognormal(0, 0.5, (n, dim))
    docs = sp.csr_matrix(dense.astype(np.float32))
    queries = sp.csr_matrix(((rng.random((300, dim)) < p / 4) * 1.0).astype(np.float32))
    profile = profile_of(docs, queries)
    loaded = SparseProfile.load(profile.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(loaded.doc_df, profile.doc_df)
    levels = np.array([0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75])  # off the step at 1%
    target = df_curve(profile.doc_df, n, levels)
    for width in (dim, 4 * dim):  # same width, and scaled up by rank fraction
        generated = generate(loaded, "document", 20_000, width, seed=0)
        curve = df_curve(np.bincount(generated.indices, minlength=width), 20_000, levels)
        np.testing.assert_allclose(curve, target, rtol=0.1, atol=0.05)
        assert generated.shape == (20_000, width) and generated.has_sorted_indices
        assert np.diff(generated.indptr).max() <= 60  # the profile's document top-k
        assert abs(generated.nnz / 20_000 - profile.mean_doc_nnz) < 0.05 * profile.mean_doc_nnz
    again = generate(loaded, "document", 500, dim, seed=0)
    assert (again != generate(loaded, "document", 500, dim, seed=0)).nnz == 0  # deterministic
    q = generate(loaded, "query", 2000, dim, seed=1)
    assert abs(q.nnz / 2000 - profile.mean_query_nnz) < 0.1 * profile.mean_query_nnz
    with pytest.raises(ValueError, match="side must be"):
        generate(loaded, "passage", 10, dim, seed=0)


def test_seismic_defaults_reach_the_recall_target():
    rng = np.random.default_rng(7)
    dim = 4096
    p = np.concatenate([np.full(30, 0.3), rng.uniform(0.0, 0.08, dim - 30)])
    dense = (rng.random((600, dim)) < p) * rng.lognormal(1.5, 0.2, (600, dim))
    docs = sp.csr_matrix(dense.astype(np.float32))
    q_dense = (rng.random((200, dim)) < p / 8) * rng.lognormal(1.6, 0.1, (200, dim))
    profile = SparseProfile.from_encodings(
        docs, sp.csr_matrix(q_dense.astype(np.float32)), {"top_k": {"document": 400, "query": 40}}
    )
    corpus = generate(profile, "document", 3000, dim, seed=0)
    queries = generate(profile, "query", 100, dim, seed=1)
    exact = ExactIndex(corpus, num_threads=1, pruning="none").search(queries, 10)
    seismic = BackendConfig.parse({"name": "seismic"}).build(corpus)
    assert recall_at(exact, seismic.search(queries, 10), 10) >= 0.99
