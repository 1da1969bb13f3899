"""Approximate search with Seismic (`pyseismic-lsr`, 32-bit `...LV` classes).

Pitfalls handled here (see docs/search_engines.md): the 16-bit classes cannot hold ids past
65,535, so only `SeismicDatasetLV` / `SeismicIndexLV` are used, with `dim` always given;
documents are added from integer ids in CSR layout; query components are strings;
`batch_search` does not keep the input order, so results are re-keyed by query id; document
values are stored as float16, so scores differ slightly from exact ones.

Component ids are renumbered to the dimensions that documents use (`[dim]` map, -1 for unused
dimensions; query components there score 0 and are dropped): Seismic builds one posting list per
dimension and pays a cost proportional to its `dim` for every list, and SAE latents leave many
dimensions unused. Python's cyclic garbage collector is paused while results are collected:
the per-query result tuples otherwise trigger full collections over the whole process heap.

Threads: in pyseismic-lsr 0.5.4 the `num_threads` argument of `batch_search` (and of
`build_from_dataset`) builds a Rayon pool and drops it at once, so the call runs on Rayon's
global pool (every core, or `RAYON_NUM_THREADS`) whatever it says. One-thread search
(`num_threads=1`) therefore calls the single-query `search` per query, which runs on the calling
thread; any other value uses `batch_search`.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from .exact import TopK


def _seismic():
    try:
        import seismic
    except ImportError as err:
        raise ImportError(
            "search.name=seismic needs pyseismic-lsr: pip install 'splare-harness[seismic]'"
        ) from err
    return seismic


def _captured_stdout(fn):
    """Run `fn()`; return (its result, what it printed on file descriptor 1, native code
    included)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            result = fn()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        return result, sink.read().decode(errors="replace")


class SeismicIndex:
    """Seismic index over a canonical CSR document matrix `[n_docs, dim]`.

    Build parameters (`n_postings`, `centroid_fraction`, `min_cluster_size`, `summary_energy`,
    `max_fraction`, `doc_cut`) and search parameters (`query_cut`, `heap_factor`) are Seismic's own;
    `num_threads=0` lets Seismic use every core.
    """

    name = "seismic"

    def __init__(
        self,
        docs: sp.csr_matrix,
        *,
        n_postings: int,
        centroid_fraction: float,
        min_cluster_size: int,
        summary_energy: float,
        max_fraction: float,
        doc_cut: int,
        query_cut: int,
        heap_factor: float,
        num_threads: int,
    ):
        seismic = _seismic()
        self._string = seismic.get_seismic_string()
        self.query_cut = query_cut
        self.heap_factor = heap_factor
        self.num_threads = num_threads
        self.n_docs, self.dim = (int(s) for s in docs.shape)
        began = time.perf_counter()
        self._index = None
        #: Postings Seismic kept after its pruning (from its build report; 0 without documents).
        self.kept_postings = 0
        used = np.flatnonzero(np.bincount(docs.indices, minlength=self.dim))
        #: `[dim]` Seismic's component id of each dimension, -1 where no document has it.
        self.component = np.full(self.dim, -1, dtype=np.int64)
        self.component[used] = np.arange(len(used))
        if docs.nnz:
            dataset = seismic.SeismicDatasetLV(dim=len(used))
            dataset.add_documents_by_id(
                [str(i) for i in range(self.n_docs)],
                self.component[docs.indices],
                docs.data.astype(np.float32, copy=False),
                docs.indptr.astype(np.int64),
            )
            self._index, report = _captured_stdout(
                lambda: seismic.SeismicIndexLV.build_from_dataset(
                    dataset,
                    n_postings=n_postings,
                    centroid_fraction=centroid_fraction,
                    min_cluster_size=min_cluster_size,
                    summary_energy=summary_energy,
                    max_fraction=max_fraction,
                    doc_cut=doc_cut,
                    num_threads=num_threads,
                )
            )
            lists = re.search(r"Number of posting lists:\s*(\d+)", report)
            mean = re.search(r"Avg posting list length:\s*([\d.]+)", report)
            if lists and mean:
                self.kept_postings = round(int(lists.group(1)) * float(mean.group(1)))
        self.build_seconds = time.perf_counter() - began

    @property
    def nbytes(self) -> int:
        """Seismic's own estimate of the index memory (forward index, postings, summaries), plus the
        component map."""
        if self._index is None:
            return 0
        _, report = _captured_stdout(self._index.print_space_usage_byte)
        match = re.search(r"Total:\s*(\d+)\s*Bytes", report)
        if match is None:
            raise RuntimeError(f"unexpected Seismic space report: {report!r}")
        return int(match.group(1)) + self.component.nbytes

    def search(self, queries: sp.csr_matrix, k: int) -> TopK:
        """Approximate top-k of every query row of `queries` `[n_queries, dim]` (empty rows: none)."""
        result = TopK.allocate(queries, k, self.dim, self.n_docs)
        doc_idx, scores = result.doc_idx, result.scores
        k = scores.shape[1]
        if self._index is None or queries.nnz == 0:
            return result
        # keep the components documents have; one vectorised conversion to Seismic's strings
        mapped = self.component[queries.indices]
        keep = mapped >= 0
        indptr = np.concatenate([[0], np.cumsum(keep)])[queries.indptr]
        rows = np.flatnonzero(np.diff(indptr))
        components = np.split(mapped[keep].astype(self._string), indptr[1:-1])
        values = np.split(queries.data[keep].astype(np.float32, copy=False), indptr[1:-1])
        ids = rows.astype(self._string)
        collecting = gc.isenabled()
        gc.disable()
        try:
            if self.num_threads == 1:
                results = [
                    self._index.search(
                        ids[i],
                        components[r],
                        values[r],
                        k,
                        query_cut=self.query_cut,
                        heap_factor=self.heap_factor,
                    )
                    for i, r in enumerate(rows)
                ]
            else:
                results = self._index.batch_search(
                    ids,
                    [components[r] for r in rows],
                    [values[r] for r in rows],
                    k,
                    query_cut=self.query_cut,
                    heap_factor=self.heap_factor,
                    num_threads=self.num_threads,
                )
        finally:
            if collecting:
                gc.enable()
        for hits in results:
            if not hits:
                continue
            row = int(hits[0][0])
            ranked = sorted((-score, int(doc)) for _, score, doc in hits)[:k]
            for rank, (neg_score, doc) in enumerate(ranked):
                doc_idx[row, rank] = doc
                scores[row, rank] = -neg_score
        return result
