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
#: Documents per window of `pruning="windowed"`: a 1 MiB float32 accumulator, half a core's L2
#: cache here (2 MiB); the fastest of 4k-512k tried at 200k and 1M SPLARE-shaped documents. Its
#: speed against term-at-a-time is in results/bench/search.md.
WINDOW = 262144
#: Accumulator slots per block of the windowed kernel's top-k scan (`_scan_block_max`); 16
#: float32 (one 64-byte line) was the fastest of 16-256 on 200k SPLARE-shaped documents.
SELECT_BLOCK = 16


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


@numba.njit(inline="always")
def _offer(heap_s, heap_d, size, k, score, doc):  # pragma: no cover
    """Offer (score, doc) to the size-`size` min-heap of capacity k (worst at the root, tie rule
    of `_worse`); returns the new size."""
    if size < k:
        pos = size
        heap_s[pos] = score
        heap_d[pos] = doc
        size += 1
        while pos > 0:  # sift up
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
    return size


@numba.njit(inline="always")
def _drain(heap_s, heap_d, size, out_d, out_s):  # pragma: no cover
    """Pop the size-`size` min-heap worst first into the back of out_d/out_s [k]: the result is
    best first; slots past `size` are untouched."""
    while size > 0:
        size -= 1
        out_s[size] = heap_s[0]
        out_d[size] = heap_d[0]
        heap_s[0] = heap_s[size]
        heap_d[0] = heap_d[size]
        _sift_down(heap_s, heap_d, size, 0)


@numba.njit(fastmath={"nnan", "ninf", "nsz"}, inline="always")
def _block_maxima(values, n, out):  # pragma: no cover
    """out[b] = max(values[b * SELECT_BLOCK : (b + 1) * SELECT_BLOCK] within values[:n]);
    returns the number of blocks. A maximum is exact in any order of comparison (the fastmath
    flags only let LLVM vectorise it); scores are finite."""
    n_blocks = (n + SELECT_BLOCK - 1) // SELECT_BLOCK
    for b in range(n_blocks):
        base = b * SELECT_BLOCK
        top = values[base]
        if base + SELECT_BLOCK <= n:
            for t in range(base + 1, base + SELECT_BLOCK):  # fixed trip count: unrolled
                v = values[t]
                top = v if v > top else top  # noqa: FURB136 (the measured, vectorised form)
        else:
            for t in range(base + 1, n):
                v = values[t]
                top = v if v > top else top  # noqa: FURB136 (the measured, vectorised form)
        out[b] = top
    return n_blocks


@numba.njit(inline="always")
def _scan_block_max(acc, start, n, k, heap_s, heap_d, size, maxima):  # pragma: no cover
    """Offer the non-zero scores of acc[:n] (documents start..start+n-1) to the k-min-heap of
    `size` entries, in increasing row order; returns the new size. `maxima` is scratch of at
    least n / SELECT_BLOCK + n / SELECT_BLOCK**2 + 2 slots.

    The result equals offering every slot. Block maxima are taken at two levels (blocks of
    SELECT_BLOCK slots, then of SELECT_BLOCK blocks). If the k-th largest top-level maximum
    `floor` is positive, at least k documents score >= floor > 0, so a score below it cannot be
    in the top k. Once the heap is full, a block whose maximum does not exceed the heap's worst
    cannot enter either: every document offered later has a higher row and loses a tie
    (`_worse`). Cost: one vectorised pass over acc[:n] and one over its n / SELECT_BLOCK block
    maxima, a partition of n / SELECT_BLOCK**2 maxima, then heap offers for the few blocks that
    pass.
    """
    n_low = _block_maxima(acc, n, maxima)
    n_top = _block_maxima(maxima, n_low, maxima[n_low:])
    floor = -np.inf
    if n_top > k:
        kth = np.partition(maxima[n_low : n_low + n_top], n_top - k)[n_top - k]
        if kth > 0:
            floor = kth
    for b in range(n_low):
        top = maxima[b]
        if top < floor or (size == k and top <= heap_s[0]):
            continue
        for t in range(b * SELECT_BLOCK, min(b * SELECT_BLOCK + SELECT_BLOCK, n)):
            score = acc[t]
            if score != 0 and score >= floor:
                size = _offer(heap_s, heap_d, size, k, score, start + t)
    return size

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
        size = _offer(heap_s, heap_d, size, k, score, doc)
    _drain(heap_s, heap_d, size, out_d, out_s)


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


@numba.njit(cache=True)
def _kth_score(acc, docs, n, k, heap):  # pragma: no cover
    """The k-th largest of acc[docs[:n]] (n >= k), using `heap` [k] as scratch."""
    size = 0
    for t in range(n):
        score = acc[docs[t]]
        if size < k:
            pos = size
            heap[pos] = score
            size += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if heap[pos] < heap[parent]:
                    heap[pos], heap[parent] = heap[parent], heap[pos]
                    pos = parent
                else:
                    break
        elif score > heap[0]:
            heap[0] = score
            pos = 0
            while True:
                child = 2 * pos + 1
                if child >= size:
                    break
                if child + 1 < size and heap[child + 1] < heap[child]:
                    child += 1
                if heap[child] < heap[pos]:
                    heap[pos], heap[child] = heap[child], heap[pos]
                    pos = child
                else:
                    break
    return heap[0]


@numba.njit(inline="always")
def _forward_score(q_dense, d_indptr, d_indices, d_data, doc):  # pragma: no cover
    """<query, doc> summed in increasing term order (the order of `_search_kernel`)."""
    total = np.float32(0.0)
    for e in range(d_indptr[doc], d_indptr[doc + 1]):
        w = q_dense[d_indices[e]]
        if w != 0:
            total += w * d_data[e]
    return total


@numba.njit(inline="always")
def _heap_down(heap_s, heap_d, hpos, size, pos):  # pragma: no cover
    """Restore the score min-heap below `pos`, keeping `hpos[doc]` = position of doc."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and heap_s[child + 1] < heap_s[child]:
            child += 1
        if heap_s[child] < heap_s[pos]:
            heap_s[pos], heap_s[child] = heap_s[child], heap_s[pos]
            heap_d[pos], heap_d[child] = heap_d[child], heap_d[pos]
            hpos[heap_d[pos]] = pos
            hpos[heap_d[child]] = child
            pos = child
        else:
            break


@numba.njit(inline="always")
def _heap_offer(heap_s, heap_d, hpos, size, k, doc, score):  # pragma: no cover
    """Keep the k documents with the largest (growing) partial scores; returns the heap size."""
    p = hpos[doc]
    if p >= 0:
        heap_s[p] = score
        _heap_down(heap_s, heap_d, hpos, size, p)
        return size
    if size < k:
        pos = size
        heap_s[pos] = score
        heap_d[pos] = doc
        hpos[doc] = pos
        while pos > 0:
            parent = (pos - 1) // 2
            if heap_s[pos] < heap_s[parent]:
                heap_s[pos], heap_s[parent] = heap_s[parent], heap_s[pos]
                heap_d[pos], heap_d[parent] = heap_d[parent], heap_d[pos]
                hpos[heap_d[pos]] = pos
                hpos[heap_d[parent]] = parent
                pos = parent
            else:
                break
        return size + 1
    hpos[heap_d[0]] = -1
    heap_s[0] = score
    heap_d[0] = doc
    hpos[doc] = 0
    _heap_down(heap_s, heap_d, hpos, size, 0)
    return size


@numba.njit(parallel=True, cache=True)
def _maxscore_kernel(
    q_indptr,
    q_indices,
    q_data,
    offsets,
    doc_ids,
    weights,
    max_weight,
    d_indptr,
    d_indices,
    d_data,
    n_docs,
    dim,
    k,
    n_blocks,
    out_d,
    out_s,
):  # pragma: no cover
    """Exact top-k by term-at-a-time MaxScore; fills out_d/out_s [n_queries, k].

    Per query, terms are taken in decreasing order of their bound w_t * max_weight[t], and a
    min-heap keeps the k best partial scores as they grow (its root: the threshold). Once the
    bounds of the terms left add up to less than the threshold, no document that none of the
    terms so far contains can reach the top k: the rest is scored only for the candidates (seen
    documents whose partial score plus that bound can still reach the threshold), by their
    forward rows or, when that costs more, by the remaining posting lists restricted to them.
    The final top k is chosen on scores summed in increasing term order, as `_search_kernel` sums
    them, so scores and ties are bit-identical to it. Non-negative weights only.
    """
    n_queries = len(q_indptr) - 1
    avg_len = max(1.0, len(d_indices) / max(n_docs, 1))
    for block in numba.prange(n_blocks):
        acc = np.zeros(n_docs, dtype=np.float32)
        seen = np.zeros(n_docs, dtype=np.uint8)
        is_cand = np.zeros(n_docs, dtype=np.uint8)
        hpos = np.full(n_docs, -1, dtype=np.int32)
        touched = np.empty(n_docs, dtype=np.int32)
        cand = np.empty(n_docs, dtype=np.int32)
        q_dense = np.zeros(dim, dtype=np.float32)
        heap_s = np.empty(k, dtype=np.float32)
        heap_d = np.empty(k, dtype=np.int32)
        scratch = np.empty(k, dtype=np.float32)
        for q in range(block, n_queries, n_blocks):
            lo, hi = q_indptr[q], q_indptr[q + 1]
            m = hi - lo
            if m == 0:
                continue
            bound = np.empty(m, dtype=np.float64)
            n_postings = 0
            for i in range(m):
                term = q_indices[lo + i]
                bound[i] = q_data[lo + i] * max_weight[term]
                q_dense[term] = q_data[lo + i]
                n_postings += offsets[term + 1] - offsets[term]
            # many postings: no per-document bookkeeping, scan the accumulator instead
            dense = n_postings * DENSE_FRACTION >= n_docs
            order = np.argsort(-bound)
            rest = np.zeros(m + 1, dtype=np.float64)  # rest[j]: bound of terms order[j:]
            for j in range(m - 1, -1, -1):
                rest[j] = rest[j + 1] + bound[order[j]]
            slack = 1.0 + (m + 2) * 5e-7  # > ((1 + mu) / (1 - mu))^2, mu = m * 2^-24
            n_touched = 0
            size = 0
            left = rest[0] * slack
            j = 0
            while j < m:
                i = lo + order[j]
                term, w = q_indices[i], q_data[i]
                for e in range(offsets[term], offsets[term + 1]):
                    doc = doc_ids[e]
                    if not dense and seen[doc] == 0:
                        seen[doc] = 1
                        touched[n_touched] = doc
                        n_touched += 1
                    score = acc[doc] + w * weights[e]
                    acc[doc] = score
                    if size < k or score > heap_s[0]:
                        size = _heap_offer(heap_s, heap_d, hpos, size, k, doc, score)
                j += 1
                left = rest[j] * slack
                if size == k and left < heap_s[0] / slack:
                    break
            theta = heap_s[0] / slack if size == k else 0.0
            pool = n_docs if dense else n_touched
            n_cand = 0
            for t in range(pool):
                doc = t if dense else touched[t]
                if acc[doc] > 0 and (acc[doc] + left) * slack >= theta:
                    cand[n_cand] = doc
                    n_cand += 1
            if j < m:
                remaining = 0
                for jj in range(j, m):
                    term = q_indices[lo + order[jj]]
                    remaining += offsets[term + 1] - offsets[term]
                if n_cand * avg_len > remaining:
                    # the remaining posting lists, restricted to the candidates
                    for t in range(n_cand):
                        is_cand[cand[t]] = 1
                    for jj in range(j, m):
                        i = lo + order[jj]
                        term, w = q_indices[i], q_data[i]
                        for e in range(offsets[term], offsets[term + 1]):
                            doc = doc_ids[e]
                            if is_cand[doc] != 0:
                                acc[doc] += w * weights[e]
                    for t in range(n_cand):
                        is_cand[cand[t]] = 0
                    theta = _kth_score(acc, cand, n_cand, k, scratch) if n_cand >= k else 0.0
                else:
                    theta = -1.0  # candidates are rescored from their forward rows below
            else:
                theta = heap_s[0] if size == k else 0.0
            # rescore in term order the candidates within rounding of the k-th, then select
            n_final = 0
            for t in range(n_cand):
                doc = cand[t]
                if acc[doc] * slack >= theta:
                    cand[n_final] = doc
                    n_final += 1
            for t in range(n_final):
                acc[cand[t]] = _forward_score(q_dense, d_indptr, d_indices, d_data, cand[t])
            _select_top_k(acc, cand, n_final, k, out_d[q], out_s[q])
            if dense:
                acc[:] = 0.0
            else:
                for t in range(n_touched):
                    acc[touched[t]] = 0.0
                    seen[touched[t]] = 0
            for t in range(size):
                hpos[heap_d[t]] = -1
            for i in range(lo, hi):
                q_dense[q_indices[i]] = 0.0


@numba.njit(inline="always")
def _first_at_least(doc_ids, lo, hi, bound):  # pragma: no cover
    """The first position in the sorted doc_ids[lo:hi] holding a doc id >= bound (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if doc_ids[mid] < bound:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(parallel=True, cache=True)
def _window_kernel(
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
    window,
    n_blocks,
    out_d,
    out_s,
):  # pragma: no cover
    """Exact top-k, term-at-a-time within windows of `window` consecutive documents; fills
    out_d/out_s [n_queries, k].

    For each window, every query term adds its postings that fall in the window (its posting list
    is sorted by document, so they form one contiguous run, found by binary search), or the
    window's slice of its dense row, into a `[window]` float32 accumulator that stays in the CPU
    cache, instead of scattering over an `[n_docs]` one. Scores are summed in increasing term
    order, as `_search_kernel` sums them, so scores and ties are bit-identical to it; the window's
    documents with a non-zero score then enter a k-min-heap in increasing row order (ties: the
    lower row wins), skipping blocks that cannot enter it (`_scan_block_max`). A window that
    receives fewer than window / DENSE_FRACTION postings keeps a list of the documents it touched
    instead of scanning its accumulator. Memory per worker: O(window + k + terms of the query).
    Any sign of weights.
    """
    n_queries = len(q_indptr) - 1
    max_terms = 1
    for q in range(n_queries):
        max_terms = max(max_terms, q_indptr[q + 1] - q_indptr[q])
    for block in numba.prange(n_blocks):
        acc = np.zeros(window, dtype=np.float32)
        seen = np.zeros(window, dtype=np.uint8)
        touched = np.empty(window, dtype=np.int32)
        cursor = np.empty(max_terms, dtype=np.int64)
        ends = np.empty(max_terms, dtype=np.int64)
        heap_s = np.empty(k, dtype=np.float32)
        heap_d = np.empty(k, dtype=np.int32)
        maxima = np.empty(window // SELECT_BLOCK + window // SELECT_BLOCK**2 + 2, dtype=np.float32)
        for q in range(block, n_queries, n_blocks):
            lo, hi = q_indptr[q], q_indptr[q + 1]
            m = hi - lo
            if m == 0:
                continue
            for i in range(m):
                cursor[i] = offsets[q_indices[lo + i]]
            size = 0
            for start in range(0, n_docs, window):
                stop = min(start + window, n_docs)
                n_in = 0
                for i in range(m):
                    term = q_indices[lo + i]
                    ends[i] = _first_at_least(doc_ids, cursor[i], offsets[term + 1], stop)
                    n_in += ends[i] - cursor[i]
                    if dense_row[term] >= 0:
                        n_in += stop - start
                if n_in == 0:
                    continue
                sparse = n_in * DENSE_FRACTION < stop - start
                n_touched = 0
                for i in range(m):
                    w = q_data[lo + i]
                    row = dense_row[q_indices[lo + i]]
                    if row >= 0:  # only in a dense window (it counts every document)
                        values = dense[row, start:stop]
                        for d in range(stop - start):
                            acc[d] += w * values[d]
                    elif sparse:
                        for e in range(cursor[i], ends[i]):
                            slot = doc_ids[e] - start
                            if seen[slot] == 0:
                                seen[slot] = 1
                                touched[n_touched] = slot
                                n_touched += 1
                            acc[slot] += w * weights[e]
                    else:
                        for e in range(cursor[i], ends[i]):
                            acc[doc_ids[e] - start] += w * weights[e]
                    cursor[i] = ends[i]
                if not sparse:
                    size = _scan_block_max(
                        acc, start, stop - start, k, heap_s, heap_d, size, maxima
                    )
                    acc[: stop - start] = 0.0
                    continue
                touched[:n_touched].sort()  # increasing row order, as the dense scan visits them
                for t in range(n_touched):
                    slot = touched[t]
                    score = acc[slot]
                    acc[slot] = 0.0
                    seen[slot] = 0
                    if score != 0:
                        size = _offer(heap_s, heap_d, size, k, score, start + slot)
            _drain(heap_s, heap_d, size, out_d[q], out_s[q])


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


#: Values of `search.pruning` for the exact backend.
PRUNING = ("maxscore", "none", "windowed")


class ExactIndex:
    """Exact top-k inner-product search over a canonical CSR document matrix `[n_docs, dim]`.

    Only documents with a non-zero score are returned (with non-negative weights: those sharing a
    term with the query), so a query with no matching term gets no results. Ties are broken by
    the lower document row.

    `pruning="none"`: term-at-a-time over every posting of the query's terms (`_search_kernel`,
    frequent terms as dense rows). `pruning="maxscore"`: the same results, bit for bit, with
    MaxScore dynamic pruning (`_maxscore_kernel`: posting lists `[nnz]`, per-term maximum weights
    `[dim]`, and the document rows themselves as a forward index); it needs non-negative
    document weights and uses the plain kernel for a query batch with a negative weight.
    `pruning="windowed"`: the same results, bit for bit, term-at-a-time over windows of WINDOW
    documents (`_window_kernel`, same posting lists and dense rows as the plain kernel), so the
    score accumulator stays in the CPU cache, and its top k taken from block maxima of the
    accumulator (`_scan_block_max`); every posting is read, any sign of weights.
    `pruning=None` takes the configured default (`conf/search/exact.yaml`).
    """

    name = "exact"

    def __init__(self, docs: sp.csr_matrix, num_threads: int, pruning: str | None = None):
        if num_threads < 0:
            raise ValueError(f"search.num_threads must be >= 0 (0 = all cores), got {num_threads}")
        if pruning is None:
            from .backends import defaults

            pruning = defaults("exact")["pruning"]
        if pruning not in PRUNING:
            raise ValueError(f"search.pruning must be one of {PRUNING}, got {pruning!r}")
        self.num_threads = num_threads
        self.n_docs, self.dim = (int(s) for s in docs.shape)
        began = time.perf_counter()
        if pruning == "maxscore" and docs.nnz and docs.data.min() < 0:
            pruning = "none"  # upper bounds need non-negative weights
        self.pruning = pruning
        csc = docs.tocsc()
        csc.sort_indices()
        df = np.diff(csc.indptr)
        dense_fraction = 0 if pruning == "maxscore" else DENSE_TERM_FRACTION
        frequent = np.flatnonzero(df * dense_fraction > self.n_docs)
        #: `[dim]` row of each term in `dense`, -1 for terms kept as posting lists.
        self.dense_row = np.full(self.dim, -1, dtype=np.int32)
        self.dense_row[frequent] = np.arange(len(frequent), dtype=np.int32)
        #: `[n_frequent_terms, n_docs]` weights of the frequent terms (plain and windowed kernels).
        self.dense = np.zeros((len(frequent), self.n_docs), dtype=np.float32)
        for row, term in enumerate(frequent):
            span = slice(csc.indptr[term], csc.indptr[term + 1])
            self.dense[row, csc.indices[span]] = csc.data[span]
        kept_df = np.where(self.dense_row >= 0, 0, df)
        self.offsets = np.zeros(self.dim + 1, dtype=np.int64)
        np.cumsum(kept_df, out=self.offsets[1:])
        if len(frequent):
            keep = np.repeat(self.dense_row < 0, df)
            self.doc_ids = csc.indices[keep].astype(np.int32)
            self.weights = csc.data[keep].astype(np.float32)
        else:  # no copy: every term is a posting list
            self.doc_ids = csc.indices.astype(np.int32, copy=False)
            self.weights = csc.data.astype(np.float32, copy=False)
        del csc
        #: `[dim]` largest weight of each term (MaxScore bounds); the forward index is `docs`.
        self.max_weight = np.zeros(self.dim, dtype=np.float32)
        self.forward = None
        if pruning == "maxscore":
            if self.weights.size:
                nonempty = np.flatnonzero(df)
                self.max_weight[nonempty] = np.maximum.reduceat(self.weights, self.offsets[nonempty])
            self.forward = docs
        self.build_seconds = time.perf_counter() - began

    @property
    def nbytes(self) -> int:
        """Bytes held by the posting lists, the dense rows, the per-term maps and (MaxScore) the
        forward rows."""
        arrays = [self.offsets, self.doc_ids, self.weights, self.dense_row, self.dense]
        if self.forward is not None:
            arrays += [self.max_weight, self.forward.indptr, self.forward.indices, self.forward.data]
        return sum(a.nbytes for a in arrays)

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
                blocks = max(1, min(threads, batch.shape[0]))
                out = (doc_idx[start : start + QUERY_BATCH], scores[start : start + QUERY_BATCH])
                if self.forward is not None and (batch.nnz == 0 or batch.data.min() >= 0):
                    f = self.forward
                    _maxscore_kernel(
                        batch.indptr, batch.indices, batch.data,
                        self.offsets, self.doc_ids, self.weights, self.max_weight,
                        f.indptr, f.indices, f.data,
                        self.n_docs, self.dim, k, blocks, *out,
                    )  # fmt: skip
                    continue
                if self.pruning == "windowed":
                    _window_kernel(
                        batch.indptr, batch.indices, batch.data,
                        self.offsets, self.doc_ids, self.weights, self.dense_row, self.dense,
                        self.n_docs, k, min(WINDOW, max(self.n_docs, 1)), blocks, *out,
                    )  # fmt: skip
                    continue
                _search_kernel(
                    batch.indptr, batch.indices, batch.data,
                    self.offsets, self.doc_ids, self.weights, self.dense_row, self.dense,
                    self.n_docs, k, blocks, *out,
                )  # fmt: skip
        finally:
            numba.set_num_threads(previous)
        return result
