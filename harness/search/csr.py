"""Sparse encodings as scipy CSR: conversion from torch sparse tensors, row moves, top-k pruning.

Every matrix here is a `scipy.sparse.csr_matrix` of shape `[n_texts, dim]` with int32 column
ids (scipy widens them to int64 only past 2^31 entries), float32 values, sorted column ids per
row and no explicit zeros ("canonical CSR").
Nothing is ever densified to `[n, dim]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
import torch


def empty_csr(n_rows: int, dim: int) -> sp.csr_matrix:
    """An all-empty canonical CSR matrix `[n_rows, dim]`."""
    return sp.csr_matrix(
        (
            np.zeros(0, dtype=np.float32),
            np.zeros(0, dtype=np.int32),
            np.zeros(n_rows + 1, dtype=np.int64),
        ),
        shape=(n_rows, dim),
    )


def torch_sparse_to_csr(tensor: torch.Tensor) -> sp.csr_matrix:
    """Convert a sparse COO torch tensor `[n, dim]` to canonical float32 CSR `[n, dim]`."""
    if not tensor.is_sparse or tensor.ndim != 2:
        raise ValueError(
            f"expected a 2-D sparse COO tensor [n, dim], got layout {tensor.layout} "
            f"and shape {tuple(tensor.shape)}"
        )
    n_rows, dim = (int(s) for s in tensor.shape)
    tensor = tensor.detach().coalesce().cpu()
    rows, cols = (a.numpy() for a in tensor.indices())
    values = tensor.values().float().numpy()
    keep = values != 0
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=n_rows), out=indptr[1:])
    # coalesce() orders entries by (row, col): the columns are already sorted within each row.
    return _csr(values[keep], cols[keep], indptr, (n_rows, dim))


def _csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Wrap sorted-per-row arrays as CSR with float32 values and int32 column ids."""
    matrix = sp.csr_matrix(
        (data.astype(np.float32, copy=False), indices.astype(np.int32), indptr), shape=shape
    )
    matrix.has_sorted_indices = True
    return matrix


@dataclass
class Encoded:
    """Encodings of a list of texts and what they cost.

    matrix: `[n_texts, dim]` canonical CSR; empty or whitespace-only texts are empty rows.
    n_tokens: tokens fed to the encoder (after its own truncation, prompt included).
    seconds: wall time of encoding (tokenisation for the count excluded).
    cap: entries kept per row: each row holds its `cap` largest values (`top_k_rows`), or every
        active dimension when `cap` is 0. Valid for any top-k with `0 < k <= cap` (or any k at 0).
    """

    matrix: sp.csr_matrix
    n_tokens: int
    seconds: float
    cap: int = 0

    def serves(self, k: int) -> bool:
        """Whether `top_k_rows(self.matrix, k)` equals the top-k of the uncapped encoding."""
        return self.cap == 0 or 0 < k <= self.cap


def scatter_rows(matrix: sp.csr_matrix, rows: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """Place row i of `matrix` at row `rows[i]` of a new `[n_rows, dim]` CSR; other rows are empty.

    `rows` must be strictly increasing.
    """
    counts = np.zeros(n_rows, dtype=np.int64)
    counts[rows] = np.diff(matrix.indptr)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return _csr(matrix.data, matrix.indices, indptr, (n_rows, matrix.shape[1]))


def permute_rows(matrix: sp.csr_matrix, order: np.ndarray) -> sp.csr_matrix:
    """Canonical CSR `[n, dim]` whose row `order[i]` is row i of `matrix` (a permutation)."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    moved = matrix[inverse]
    return _csr(moved.data, moved.indices, moved.indptr.astype(np.int64), matrix.shape)


@numba.njit(parallel=True, cache=True)
def _top_k_rows(indptr, indices, data, k, out_indptr, out_indices, out_data):  # pragma: no cover
    for row in numba.prange(len(indptr) - 1):
        start, end = indptr[row], indptr[row + 1]
        dst = out_indptr[row]
        if end - start <= k:
            out_indices[dst : dst + end - start] = indices[start:end]
            out_data[dst : dst + end - start] = data[start:end]
            continue
        # Stable sort on -value: among equal values the lower column id wins.
        order = np.argsort(-data[start:end], kind="mergesort")[:k]
        order.sort()  # back to ascending column order (columns were sorted within the row)
        for j in range(k):
            out_indices[dst + j] = indices[start + order[j]]
            out_data[dst + j] = data[start + order[j]]


def top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the `k` largest values of every row (`k=0`: no cap); ties go to the lower column id.

    Input and output are canonical CSR `[n, dim]`; rows with at most k entries are unchanged.
    """
    if k < 0:
        raise ValueError(f"top-k must be >= 0 (0 = no cap), got {k}")
    lengths = np.diff(matrix.indptr)
    if k == 0 or matrix.nnz == 0 or lengths.max() <= k:
        return matrix
    out_indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.minimum(lengths, k), out=out_indptr[1:])
    out_indices = np.empty(out_indptr[-1], dtype=np.int32)
    out_data = np.empty(out_indptr[-1], dtype=np.float32)
    _top_k_rows(
        matrix.indptr.astype(np.int64, copy=False),
        matrix.indices,
        matrix.data,
        k,
        out_indptr,
        out_indices,
        out_data,
    )
    return _csr(out_data, out_indices, out_indptr, matrix.shape)
