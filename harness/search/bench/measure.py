"""Reusable pieces of the search benchmark (`benchmarks/bench_search.py`): timing, reference
searches (scipy, mteb's stock sparse path), result comparison and one timed backend run.

Every matrix is canonical CSR (`harness.search.csr`): documents `[n_docs, dim]`, queries
`[n_queries, dim]`; results are `TopK` (`[n_queries, k]` ids and scores).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..backends import BackendConfig
from ..exact import ExactIndex, TopK


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """Run fn(); return (result, wall seconds, CPU seconds of this process, peak MB above the
    resident set at the start). On a shared machine the CPU time of a one-thread call is the
    steadier figure: it leaves out the time other processes held the core."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (Linux >= 4.0)
    base = _status_mb("VmRSS")
    began, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    return result, seconds, cpu, max(_status_mb("VmHWM") - base, 0.0)


def postings_per_query(docs: sp.csr_matrix, queries: sp.csr_matrix) -> float:
    """Mean number of postings a term-at-a-time search reads per query (sum of its terms' df)."""
    df = np.bincount(docs.indices, minlength=docs.shape[1])
    return float(df[queries.indices].sum() / max(queries.shape[0], 1))


def recall_at(reference: TopK, approx: TopK, k: int) -> float:
    """Mean over queries with results of |approx top-k ∩ reference top-k| / |reference top-k|."""
    values = []
    for ref, got in zip(reference.doc_idx[:, :k], approx.doc_idx[:, :k], strict=True):
        ref = set(ref[ref >= 0].tolist())
        if ref:
            values.append(len(ref & set(got[got >= 0].tolist())) / len(ref))
    return float(np.mean(values)) if values else 1.0


def identical(a: TopK, b: TopK) -> int:
    """Queries whose top-k lists are identical (same documents in the same order, same scores)."""
    return int(
        sum(
            np.array_equal(da, db) and np.array_equal(sa, sb)
            for da, sa, db, sb in zip(a.doc_idx, a.scores, b.doc_idx, b.scores, strict=True)
        )
    )


def brute_force(docs: sp.csr_matrix, queries: sp.csr_matrix, k: int, chunk: int = 16) -> TopK:
    """Top-k by scipy's sparse product `queries @ docs.T` in float64, ties to the lower row.

    Memory: the float64 transpose of `docs` (12 bytes a non-zero) plus the product of `chunk`
    queries at a time (`[chunk, n_docs]`, sparse)."""
    out = TopK.allocate(queries, k, docs.shape[1], docs.shape[0])
    k = out.doc_idx.shape[1]
    doc_t = docs.T.tocsr().astype(np.float64)  # [dim, n_docs]
    for start in range(0, queries.shape[0], chunk):
        product = (queries[start : start + chunk].astype(np.float64) @ doc_t).tocsr()
        for row in range(product.shape[0]):
            cols = product.indices[product.indptr[row] : product.indptr[row + 1]]
            vals = product.data[product.indptr[row] : product.indptr[row + 1]]
            keep = vals > 0
            cols, vals = cols[keep], vals[keep]
            order = np.lexsort((cols, -vals))[:k]
            out.doc_idx[start + row, : len(order)] = cols[order]
            out.scores[start + row, : len(order)] = vals[order]
    return out


def to_torch(m: sp.csr_matrix) -> torch.Tensor:
    """Sparse COO torch tensor `[n, dim]` (what a SparseEncoder returns) from CSR."""
    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), m.shape).coalesce()


def mteb_stock_search(docs: sp.csr_matrix, queries: sp.csr_matrix, k: int) -> TopK:
    """mteb's own full-corpus search loop (`chunked_full_corpus_search`, what
    `SparseEncoderWrapper` runs on Retrieval tasks) over precomputed sparse tensors, scored with
    sentence-transformers' `dot_score` (a SparseEncoder's "dot" similarity)."""
    from datasets import Dataset
    from mteb.models.search_wrappers import chunked_full_corpus_search
    from sentence_transformers.util import dot_score

    from harness.tasks.local_data import local_metadata

    chunk = 50_000  # SearchEncoderWrapper's default corpus_chunk_size
    tensors = {s: to_torch(docs[s : s + chunk]) for s in range(0, docs.shape[0], chunk)}
    corpus = Dataset.from_dict(
        {"id": [str(i) for i in range(docs.shape[0])], "text": [""] * docs.shape[0]}
    )
    metadata = local_metadata("LocalBenchSynthetic", "local/bench", "0", "synthetic",
                              ["eng-Latn"], category="t2t")
    heaps = chunked_full_corpus_search(
        task_corpus=corpus,
        corpus_chunk_size=chunk,
        query_idx_to_id={i: str(i) for i in range(queries.shape[0])},
        query_embeddings=to_torch(queries),
        task_metadata=metadata,
        hf_subset="default",
        hf_split="test",
        top_k=k,
        encode_kwargs={"batch_size": 32, "show_progress_bar": False},
        encode_fn=lambda loader, **kwargs: tensors[int(loader.dataset[0]["id"])],
        similarity_fn=dot_score,
        search_k_offset=1,
    )
    out = TopK.allocate(queries, k, docs.shape[1], docs.shape[0])
    for qid, heap in heaps.items():
        for rank, (score, doc) in enumerate(heapq.nlargest(k, heap)):
            if score > 0:  # the stock path pads with zero-score documents; the others do not
                out.doc_idx[int(qid), rank], out.scores[int(qid), rank] = int(doc), score
    return out


def timed_backend(
    node: dict[str, Any], docs: sp.csr_matrix, queries: sp.csr_matrix, k: int
) -> tuple[TopK, dict[str, Any]]:
    """Build the `cfg.search` node's index over `docs` and search `queries` once, timed.

    Returns the results and `{ms_per_query, cpu_ms_per_query, build_s, build_cpu_s,
    build_s_per_million_docs, index_mb, peak_mb}` (ms: wall and CPU time per query). Exact
    indexes first run two queries to load their compiled kernels.
    """
    config = BackendConfig.parse(node)
    if config.name == "exact":
        ExactIndex(docs[:100], **config.index_params).search(queries[:2], k)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        index, build, build_cpu, peak_build = measured(lambda: config.build(docs))
        top, seconds, cpu, peak = measured(lambda: index.search(queries, k))
        index_mb = index.nbytes / 2**20
    finally:
        torch.set_num_threads(torch_threads)
    return top, {
        "ms_per_query": 1000 * seconds / queries.shape[0],
        "cpu_ms_per_query": 1000 * cpu / queries.shape[0],
        "build_s": build,
        "build_cpu_s": build_cpu,
        "build_s_per_million_docs": build * 1e6 / docs.shape[0],
        "index_mb": index_mb,
        "peak_mb": max(peak, peak_build),
    }


def block_bound_survival(
    docs: sp.csr_matrix, queries: sp.csr_matrix, kth: np.ndarray, block: int
) -> float:
    """Share of document blocks a block-max method (BMP, block-max WAND) would have to open.

    Documents are cut into blocks of `block` consecutive rows; a block's upper bound for a query
    is sum over the query's terms of (query weight x the block's largest weight of that term). A
    block whose bound exceeds the query's exact k-th score `kth` `[n_queries]` cannot be skipped.
    Returns the mean over queries of the share of such blocks (1.0: nothing can be skipped).
    Memory: the block-max matrix, at most nnz(docs) entries.
    """
    coo = docs.tocoo()
    dim = docs.shape[1]
    n_blocks = -(-docs.shape[0] // block)
    key = (coo.row // block).astype(np.int64) * dim + coo.col
    order = np.lexsort((-coo.data, key))
    key = key[order]
    first = np.r_[True, key[1:] != key[:-1]]
    block_max = sp.csr_matrix(
        (coo.data[order][first], (key[first] // dim, key[first] % dim)), shape=(n_blocks, dim)
    )
    del coo, key, order, first
    bounds = (queries.astype(np.float64) @ block_max.T.astype(np.float64)).toarray()
    return float((bounds > np.asarray(kth, dtype=np.float64)[:, None]).mean())
