"""Benchmark data shaped like a model's sparse vectors: a measured profile and a generator.

`SparseProfile.from_encodings(docs, queries)` records what search cost depends on, from real
encodings: the document frequency of every dimension (`doc_df [dim]`), the query frequency
(`query_df [dim]`), and the value distributions (quantiles per frequency band). `generate`
draws a CSR matrix `[n_rows, dim]` of any size and width from it:

- dimensions are matched by frequency rank fraction: target dimension rank r (of `dim`) takes the
  source frequency at rank fraction r / dim, and all probabilities are scaled to the source's mean
  row length. This keeps the shape of the frequency curve (what share of the postings the most
  frequent x% of dimensions hold) when 8,192 source latents become 131,072;
- each row includes dimension j independently with probability p_j (Bernoulli, drawn by geometric
  skips, O(nnz)), so the expected document frequency of j is exactly n_rows * p_j; rows longer
  than the model's top-k keep their top-k values (as the model does);
- values are drawn from the source's value quantiles of the frequency band of j;
- queries use the query frequency of the source dimensions of the same rank band, so queries hit
  frequent document dimensions as often as real ones do.

Rows are independent draws: there is no topical clustering, which is the worst case for
Seismic's clustered blocks and for dynamic pruning.
The generator is deterministic in `seed` and does not depend on the thread count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from ..csr import _csr, top_k_rows

#: Quantiles stored per value band (0, 1/QUANTILES, ..., 1).
QUANTILES = 100
#: Frequency bands (by rank) with their own value quantiles.
VALUE_BANDS = 8
#: Rank bins (geometric) over which the query frequency of a document rank is averaged.
QUERY_BINS = 64


@dataclass
class SparseProfile:
    """Measured shape of one model's encodings.

    doc_df, query_df: `[dim]` int64 rows of the documents / queries with each dimension active.
    doc_values, query_values: `[VALUE_BANDS, QUANTILES + 1]` value quantiles per band of
    dimensions by document-frequency rank (band b holds ranks b*dim/VALUE_BANDS onward).
    n_docs, n_queries: rows measured; top_k_document, top_k_query: the caps they were encoded with.
    """

    doc_df: np.ndarray
    query_df: np.ndarray
    doc_values: np.ndarray
    query_values: np.ndarray
    n_docs: int
    n_queries: int
    top_k_document: int
    top_k_query: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.doc_df)

    @property
    def mean_doc_nnz(self) -> float:
        return float(self.doc_df.sum() / self.n_docs)

    @property
    def mean_query_nnz(self) -> float:
        return float(self.query_df.sum() / self.n_queries)

    @classmethod
    def from_encodings(
        cls, docs: sp.csr_matrix, queries: sp.csr_matrix, info: dict[str, Any]
    ) -> SparseProfile:
        """Profile of canonical CSR `docs` `[n_docs, dim]` and `queries` `[n_queries, dim]`;
        `info` must give `top_k` `{document, query}`."""
        if docs.shape[1] != queries.shape[1]:
            raise ValueError(f"query dim {queries.shape[1]} != document dim {docs.shape[1]}")
        if docs.nnz == 0 or queries.nnz == 0:
            raise ValueError("cannot profile empty encodings")
        dim = docs.shape[1]
        doc_df = np.bincount(docs.indices, minlength=dim).astype(np.int64)
        rank = np.empty(dim, dtype=np.int64)
        rank[np.argsort(-doc_df, kind="stable")] = np.arange(dim)
        band = rank * VALUE_BANDS // dim

        def band_quantiles(m: sp.csr_matrix) -> np.ndarray:
            out = np.empty((VALUE_BANDS, QUANTILES + 1))
            levels = np.linspace(0, 1, QUANTILES + 1)
            everything = np.quantile(m.data, levels)
            for b in range(VALUE_BANDS):
                values = m.data[band[m.indices] == b]
                out[b] = np.quantile(values, levels) if len(values) >= 20 else everything
            return out

        return cls(
            doc_df=doc_df,
            query_df=np.bincount(queries.indices, minlength=dim).astype(np.int64),
            doc_values=band_quantiles(docs),
            query_values=band_quantiles(queries),
            n_docs=docs.shape[0],
            n_queries=queries.shape[0],
            top_k_document=int(info["top_k"]["document"]),
            top_k_query=int(info["top_k"]["query"]),
            info=dict(info),
        )

    def save(self, path: Path) -> Path:
        """Write the profile as a compressed `.npz` (arrays plus `info` as JSON); returns `path`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            doc_df=self.doc_df.astype(np.int32),
            query_df=self.query_df.astype(np.int32),
            doc_values=self.doc_values,
            query_values=self.query_values,
            counts=np.array(
                [self.n_docs, self.n_queries, self.top_k_document, self.top_k_query]
            ),
            info=np.array(json.dumps(self.info)),
        )
        return path

    @classmethod
    def load(cls, path: Path) -> SparseProfile:
        """Read a profile written by `save`."""
        with np.load(Path(path)) as z:
            n_docs, n_queries, top_d, top_q = (int(v) for v in z["counts"])
            return cls(
                doc_df=z["doc_df"].astype(np.int64),
                query_df=z["query_df"].astype(np.int64),
                doc_values=z["doc_values"],
                query_values=z["query_values"],
                n_docs=n_docs,
                n_queries=n_queries,
                top_k_document=top_d,
                top_k_query=top_q,
                info=json.loads(str(z["info"])),
            )

    def doc_df_quantiles(self, levels: np.ndarray | None = None) -> np.ndarray:
        """Document-frequency fractions (df / n_docs) at rank fractions `levels` of the dimensions
        sorted by decreasing frequency, divided by the mean row density (mean nnz / dim): a
        width-free description of the frequency curve (1 everywhere = uniform use)."""
        return df_curve(self.doc_df, self.n_docs, levels)

    def probabilities(self, side: str, dim: int) -> np.ndarray:
        """Per-dimension inclusion probabilities `[dim]` of `side` ('document' or 'query') at width
        `dim`, before the random assignment of ranks to dimension ids (index = frequency rank)."""
        if side not in ("document", "query"):
            raise ValueError(f"side must be 'document' or 'query', got {side!r}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        order = np.argsort(-self.doc_df, kind="stable")
        src = self.dim
        src_pos = (np.arange(src) + 0.5) / src
        dst_pos = (np.arange(dim) + 0.5) / dim
        if side == "document":
            curve = self.doc_df[order] / self.n_docs
            mean = self.mean_doc_nnz
        else:
            # average the query frequency over geometric bins of document rank; the query mass is
            # kept on dimensions that documents use
            edges = np.unique(np.geomspace(1, src + 1, QUERY_BINS).astype(np.int64)) - 1
            edges[-1] = src
            sums = np.add.reduceat(self.query_df[order].astype(np.float64), edges[:-1])
            widths = np.diff(edges)
            curve = np.repeat(sums / widths, widths) / self.n_queries
            curve[self.doc_df[order] == 0] = 0.0  # a term no document has costs no search work
            mean = self.mean_query_nnz
        p = np.interp(dst_pos, src_pos, curve)
        if p.sum() <= 0:
            raise ValueError(f"profile has no {side} activations")
        return np.clip(p * mean / p.sum(), 0.0, 1.0)


def df_curve(df: np.ndarray, n_rows: int, levels: np.ndarray | None = None) -> np.ndarray:
    """Frequency curve of `df` `[dim]` over `n_rows` rows: (df / n_rows) / (mean nnz / dim) at rank
    fractions `levels` (default 0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5) of decreasing df."""
    if levels is None:
        levels = np.array([0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5])
    dim = len(df)
    density = df.sum() / n_rows / dim
    curve = np.sort(df)[::-1] / n_rows / density
    return curve[np.minimum((np.asarray(levels) * dim).astype(np.int64), dim - 1)]


@numba.njit(inline="always")
def _mix(x):  # pragma: no cover
    """splitmix64 finaliser: a counter-based uint64 generator."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@numba.njit(inline="always")
def _uniform(key, counter):  # pragma: no cover
    """A float64 in (0, 1) from (key, counter)."""
    bits = _mix(key + counter * np.uint64(0x9E3779B97F4A7C15))
    return ((bits >> np.uint64(11)) + 0.5) / 9007199254740992.0


@numba.njit(parallel=True, cache=True)
def _draw_columns(p, dims, n_rows, seed, values, bands, indptr, rows, data, fill):  # pragma: no cover
    """Bernoulli(p[r]) rows of column dims[r] by geometric skips; counts only unless `fill`."""
    for r in numba.prange(len(p)):
        if p[r] <= 0.0:
            continue
        key = _mix(np.uint64(seed) * np.uint64(1_000_003) + np.uint64(dims[r]) + np.uint64(1))
        value_key = _mix(key ^ np.uint64(0x5DEECE66D))  # values: a stream apart from the skips
        log_q = np.log1p(-p[r]) if p[r] < 1.0 else -np.inf
        counter = np.uint64(0)
        row = -1
        n = 0
        start = indptr[r]
        table = values[bands[r]]
        last = len(table) - 1
        while True:
            u = _uniform(key, counter)
            counter += np.uint64(1)
            row += 1 if p[r] >= 1.0 else int(np.floor(np.log(u) / log_q)) + 1
            if row >= n_rows:
                break
            if fill:
                v = _uniform(value_key, np.uint64(n)) * last
                lo = int(v)
                hi = min(lo + 1, last)
                rows[start + n] = row
                data[start + n] = table[lo] + (v - lo) * (table[hi] - table[lo])
            n += 1
        if not fill:
            indptr[r + 1] = n


def generate(
    profile: SparseProfile, side: str, n_rows: int, dim: int, seed: int
) -> sp.csr_matrix:
    """Canonical CSR `[n_rows, dim]` drawn from `profile` (see the module docstring).

    `side` is 'document' or 'query'; the same `dim` gives documents and queries the same mapping
    of frequency ranks to dimension ids, so generated queries meet generated documents as real
    ones do. Rows are capped at the profile's top-k for that side.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    p = profile.probabilities(side, dim)
    cap = profile.top_k_document if side == "document" else profile.top_k_query
    values = profile.doc_values if side == "document" else profile.query_values
    dims = np.random.default_rng(dim).permutation(dim).astype(np.int64)  # rank -> dimension id
    bands = (np.arange(dim) * VALUE_BANDS // dim).astype(np.int64)
    salt = seed * 2 + (side == "query")
    counts = np.zeros(dim + 1, dtype=np.int64)
    empty_i, empty_f = np.zeros(0, np.int32), np.zeros(0, np.float32)
    _draw_columns(p, dims, n_rows, salt, values, bands, counts, empty_i, empty_f, False)
    indptr = np.cumsum(counts)
    rows = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    _draw_columns(p, dims, n_rows, salt, values, bands, indptr, rows, data, True)
    # columns are in rank order: transpose to CSR, then map ranks to dimension ids
    csr = sp.csc_matrix((data, rows, indptr), shape=(n_rows, dim)).tocsr()
    del rows, data
    csr.indices = dims[csr.indices].astype(np.int32)
    csr.has_sorted_indices = False
    csr.sort_indices()
    matrix = _csr(csr.data, csr.indices, csr.indptr.astype(np.int64), csr.shape)
    return top_k_rows(matrix, cap)
