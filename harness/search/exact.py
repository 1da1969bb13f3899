"""Exact sparse dot-product search: a numba inverted index with term-at-a-time accumulation.

The index is the document matrix transposed to posting lists (CSC): for term j,
`doc_ids[offsets[j]:offsets[j+1]]` (int32) and `weights[...]` (float32). A term found in more
than n_docs / DENSE_TERM_FRACTION documents is instead kept as a dense weight row `[n_docs]`
(4 bytes a document instead of 8 a posting: at most DENSE_TERM_FRACTION / 2 times its postings,
so memory stays O(nnz)) and added to the accumulator with one contiguous, vectorised loop. Such
frequent terms carry most of the work in learned sparse retrieval (SPLADE's stop-word-like
terms). Memory: O(nnz) + O(dim); the per-thread score accumulators are O(n_docs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

#: Queries scored per kernel call; bounds the `[batch, k]` result buffers.
QUERY_BATCH = 4096
#: A query touching more than n_docs / DENSE_FRACTION postings scans the whole accumulator.
DENSE_FRACTION = 4
#: A term in more than n_docs / DENSE_TERM_FRACTION documents is stored as a dense row.
DENSE_TERM_FRACTION = 4


@dataclass
class TopK:
    """Per-query results, best first.

    doc_idx: `[n_queries, k]` int32 corpus row ids, padded with -1 after the last hit.
    scores: `[n_queries, k]` float32 dot products, padded with 0.
    """

    doc_idx: np.ndarray
    scores: np.ndarray

    @classmethod
    def allocate(cls, queries: sp.csr_matrix, k: int, dim: int, n_docs: int) -> TopK:
        """Empty results for `queries` `[n_queries, dim]` against `n_docs` documents, k capped at
        `n_docs`; rejects a query width other than `dim` and k < 1 before any search work."""
        if queries.shape[1] != dim:
            raise ValueError(f"query dim {queries.shape[1]} != index dim {dim}")
        if k < 1:
            raise ValueError(f"top_k must be >= 1, got {k}")
        k = min(k, max(n_docs, 1))
        n_queries = queries.shape[0]
        return cls(np.full((n_queries, k), -1, dtype=np.int32), np.zeros((n_queries, k), dtype=np.float32))


@numba.njit(inline="always")
def _worse(score_a, doc_a, score_b, doc_b):  # pragma: no cover
    """Ranking order: higher score first, lower doc id first among equal scores."""
    return score_a < score_b or (score_a == score_b and doc_a > doc_b)


@numba.njit(inline="always")
def _sift_down(heap_s, heap_d, size, pos):  # pragma: no cover
    """Restore the min-heap (worst result at the root) below `pos`."""
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _worse(heap_s[right], heap_d[right], heap_s[left], heap_d[left]):
            child = right
        if _worse(heap_s[child], heap_d[child], heap_s[pos], heap_d[pos]):
            heap_s[pos], heap_s[child] = heap_s[child], heap_s[pos]
            heap_d[pos], heap_d[child] = heap_d[child], heap_d[pos]
            pos = child
        else:
            return


@numba.njit(cache=True)
def _select_top_k(acc, candidates, n_candidates, k, out_d, out_s):  # pragma: no cover
    """Write the k best non-zero-score candidates to out_d/out_s [k], best first; rest untouched."""
    heap_s = np.empty(k, dtype=np.float32)
    heap_d = np.empty(k, dtype=np.int32)
    size = 0
    for t in range(n_candidates):
        doc = candidates[t]
        score = acc[doc]
        if score == 0:
            continue
        if size < k:
            # Sift up into the min-heap.
            pos = size
            heap_s[pos] = score
            heap_d[pos] = doc
            size += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if _worse(heap_s[pos], heap_d[pos], heap_s[parent], heap_d[parent]):
                    heap_s[pos], heap_s[parent] = heap_s[parent], heap_s[pos]
                    heap_d[pos], heap_d[parent] = heap_d[parent], heap_d[pos]
                    pos = parent
                else:
                    break
        elif _worse(heap_s[0], heap_d[0], score, doc):
            heap_s[0] = score
            heap_d[0] = doc
            _sift_down(heap_s, heap_d, size, 0)
    # Pop the worst first into the back of the output: the result is best first.
    while size > 0:
        size -= 1
        out_s[size] = heap_s[0]
        out_d[size] = heap_d[0]
        heap_s[0] = heap_s[size]
        heap_d[0] = heap_d[size]
        _sift_down(heap_s, heap_d, size, 0)


@numba.njit(parallel=True, cache=True)
def _search_kernel(
    q_indptr,
    q_indices,
    q_data,
    offsets,
    doc_ids,
    weights,
    dense_row,
    dense,
    n_docs,
    k,
    n_blocks,
    out_d,
    out_s,
):  # pragma: no cover
    """Term-at-a-time scoring of every query row; fills out_d/out_s [n_queries, k].

    Queries are dealt round-robin to `n_blocks` workers, each with its own `[n_docs]` accumulator.
    A query that uses a dense-row term, or whose posting lists add up to more than
    n_docs / DENSE_FRACTION entries, accumulates without bookkeeping and then scans the whole
    accumulator (O(n_docs), branch-free); any other query keeps a list of the documents it
    touched, so its top-k selection and reset cost O(touched).
    """
    n_queries = len(q_indptr) - 1
    all_docs = np.arange(n_docs, dtype=np.int32)
    for block in numba.prange(n_blocks):
        acc = np.zeros(n_docs, dtype=np.float32)
        seen = np.zeros(n_docs, dtype=np.uint8)
        touched = np.empty(n_docs, dtype=np.int32)
        for q in range(block, n_queries, n_blocks):
            n_postings = 0
            uses_dense = False
            for p in range(q_indptr[q], q_indptr[q + 1]):
                term = q_indices[p]
                n_postings += offsets[term + 1] - offsets[term]
                uses_dense = uses_dense or dense_row[term] >= 0
            if uses_dense or n_postings * DENSE_FRACTION >= n_docs:
                for p in range(q_indptr[q], q_indptr[q + 1]):
                    term = q_indices[p]
                    w = q_data[p]
                    row = dense_row[term]
                    if row >= 0:
                        values = dense[row]
                        for d in range(n_docs):
                            acc[d] += w * values[d]
                    else:
                        for e in range(offsets[term], offsets[term + 1]):
                            acc[doc_ids[e]] += w * weights[e]
                _select_top_k(acc, all_docs, n_docs, k, out_d[q], out_s[q])
                acc[:] = 0.0
                continue
            n_touched = 0
            for p in range(q_indptr[q], q_indptr[q + 1]):
                term = q_indices[p]
                w = q_data[p]
                for e in range(offsets[term], offsets[term + 1]):
                    doc = doc_ids[e]
                    if seen[doc] == 0:
                        seen[doc] = 1
                        touched[n_touched] = doc
                        n_touched += 1
                    acc[doc] += w * weights[e]
            _select_top_k(acc, touched, n_touched, k, out_d[q], out_s[q])
            for t in range(n_touched):
                acc[touched[t]] = 0.0
                seen[touched[t]] = 0


@numba.njit(parallel=True, cache=True)
def _pair_kernel(
    q_indptr, q_indices, q_data, d_indptr, d_indices, d_data, pq, pd, out
):  # pragma: no cover
    """out[i] = <query row pq[i], doc row pd[i]> by merging the two sorted id lists."""
    for i in numba.prange(len(pq)):
        a, a_end = q_indptr[pq[i]], q_indptr[pq[i] + 1]
        b, b_end = d_indptr[pd[i]], d_indptr[pd[i] + 1]
        total = 0.0
        while a < a_end and b < b_end:
            ia = q_indices[a]
            ib = d_indices[b]
            if ia == ib:
                total += q_data[a] * d_data[b]
                a += 1
                b += 1
            elif ia < ib:
                a += 1
            else:
                b += 1
        out[i] = total


def pair_scores(
    queries: sp.csr_matrix, docs: sp.csr_matrix, q_rows: np.ndarray, d_rows: np.ndarray
) -> np.ndarray:
    """Dot products of the given (query row, doc row) pairs, `[n_pairs]` float32.

    Both matrices must be canonical CSR with the same dim; nothing is densified.
    """
    if queries.shape[1] != docs.shape[1]:
        raise ValueError(f"query dim {queries.shape[1]} != document dim {docs.shape[1]}")
    out = np.empty(len(q_rows), dtype=np.float32)
    _pair_kernel(
        queries.indptr,
        queries.indices,
        queries.data,
        docs.indptr,
        docs.indices,
        docs.data,
        np.asarray(q_rows, dtype=np.int64),
        np.asarray(d_rows, dtype=np.int64),
        out,
    )
    return out


class ExactIndex:
    """Exact top-k inner-product search over a canonical CSR document matrix `[n_docs, dim]`.

    Only documents with a non-zero score are returned (with non-negative weights: those sharing a
    term with the query), so a query with no matching term gets no results. Ties are broken by
    the lower document row.
    """

    name = "exact"

    def __init__(self, docs: sp.csr_matrix, num_threads: int = 1):
        if num_threads < 0:
            raise ValueError(f"search.num_threads must be >= 0 (0 = all cores), got {num_threads}")
        self.num_threads = num_threads
        self.n_docs, self.dim = (int(s) for s in docs.shape)
        began = time.perf_counter()
        csc = docs.tocsc()
        csc.sort_indices()
        df = np.diff(csc.indptr)
        frequent = np.flatnonzero(df * DENSE_TERM_FRACTION > self.n_docs)
        #: `[dim]` row of each term in `dense`, -1 for terms kept as posting lists.
        self.dense_row = np.full(self.dim, -1, dtype=np.int32)
        self.dense_row[frequent] = np.arange(len(frequent), dtype=np.int32)
        #: `[n_frequent_terms, n_docs]` weights of the frequent terms.
        self.dense = np.zeros((len(frequent), self.n_docs), dtype=np.float32)
        for row, term in enumerate(frequent):
            span = slice(csc.indptr[term], csc.indptr[term + 1])
            self.dense[row, csc.indices[span]] = csc.data[span]
        kept_df = np.where(self.dense_row >= 0, 0, df)
        self.offsets = np.zeros(self.dim + 1, dtype=np.int64)
        np.cumsum(kept_df, out=self.offsets[1:])
        keep = np.repeat(self.dense_row < 0, df)
        self.doc_ids = csc.indices[keep].astype(np.int32)
        self.weights = csc.data[keep].astype(np.float32)
        self.build_seconds = time.perf_counter() - began

    @property
    def nbytes(self) -> int:
        """Bytes held by the posting lists, the dense rows and the per-term maps."""
        return sum(
            a.nbytes for a in (self.offsets, self.doc_ids, self.weights, self.dense_row, self.dense)
        )

    def search(self, queries: sp.csr_matrix, k: int) -> TopK:
        """Top-k documents of every query row of `queries` `[n_queries, dim]` (canonical CSR)."""
        result = TopK.allocate(queries, k, self.dim, self.n_docs)
        doc_idx, scores = result.doc_idx, result.scores
        k, n_queries = scores.shape[1], scores.shape[0]
        threads = self.num_threads or numba.config.NUMBA_NUM_THREADS
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            for start in range(0, n_queries, QUERY_BATCH):
                batch = queries[start : start + QUERY_BATCH]
                _search_kernel(
                    batch.indptr,
                    batch.indices,
                    batch.data,
                    self.offsets,
                    self.doc_ids,
                    self.weights,
                    self.dense_row,
                    self.dense,
                    self.n_docs,
                    k,
                    max(1, min(threads, batch.shape[0])),
                    doc_idx[start : start + QUERY_BATCH],
                    scores[start : start + QUERY_BATCH],
                )
        finally:
            numba.set_num_threads(previous)
        return result
