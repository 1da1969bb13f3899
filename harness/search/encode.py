"""Encoding texts into CSR: token-budget batches, out-of-memory halving, several devices.

- `plan_batches`: texts sorted by token length (longest first) and cut into batches whose padded
  size (batch size x longest text) stays within a token budget, so 40-token queries go hundreds to
  a batch and 1024-token documents a few. Batch sizes come from a ladder (1, 2, 3, 4, 6, 8, 12,
  16, 24, ...): consecutive batches share a size, which sentence-transformers' multi-process pool
  needs (one `batch_size` per call), at >= 2/3 of the budget.
- `encode_texts`: encodes one side (queries or documents) batch by batch with the encoder's own
  `encode_query` / `encode_document`, either in this process or through a pool from
  `SparseEncoder.start_multi_process_pool` (one chunk = one batch, so both paths run the very
  same batches). An out-of-memory error halves the batch and retries, with a one-line notice.
  Each batch's rows are cut to their `cap` largest entries at once, so memory is O(n x cap).
- `parse_devices`: `run.devices` as a list of existing torch devices, checked in one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .csr import Encoded, empty_csr, permute_rows, scatter_rows, top_k_rows, torch_sparse_to_csr

if TYPE_CHECKING:
    from sentence_transformers import SparseEncoder

logger = logging.getLogger(__name__)

#: Texts tokenised at once to measure lengths (bounds the padded `[n, tokens]` id tensor).
LENGTH_SLICE = 1024
#: Batches handed to the pool per call and worker: bounds the COO tensor a call returns, the work
#: redone after an out-of-memory error, and the idle tail at the end of a call.
BATCHES_PER_WORKER = 16
#: Keyword arguments of every `encode_*` call: a sparse COO tensor on the host, no inner bar.
ENCODE_KWARGS: dict[str, Any] = {
    "convert_to_tensor": True,
    "convert_to_sparse_tensor": True,
    "save_to_cpu": True,
    "show_progress_bar": False,
}
SIDES = ("query", "document")


def parse_devices(value: Any) -> list[str] | None:
    """`run.devices` as a list of torch device strings, or None for the model's own device.

    `auto` is every visible CUDA device. A device that does not exist (or an empty list, or
    `auto` without a GPU) fails in one line naming it.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"run.devices must be null, auto or a list of devices, got {value!r}")
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError("run.devices=auto: no visible CUDA device on this machine")
        return [f"cuda:{i}" for i in range(count)]
    devices = [str(d) for d in value]
    if not devices:
        raise ValueError("run.devices is an empty list; use null for the model's own device")
    for name in devices:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"run.devices: '{name}' is not a torch device") from None
        if device.type == "cpu":
            continue
        backend = getattr(torch, device.type, None)
        available = backend is not None and backend.is_available()
        count = backend.device_count() if available else 0
        if not available or (device.index or 0) >= count:
            raise ValueError(
                f"run.devices: '{name}' does not exist on this machine "
                f"({count} {device.type} device(s))"
            )
    return devices


def side_prompt(encoder: SparseEncoder, side: str) -> str | None:
    """The prompt `encode_query` / `encode_document` prepend by default (None without prompts)."""
    names = ("query",) if side == "query" else ("document", "passage", "corpus")
    for name in names:
        if name in encoder.prompts:
            return encoder.prompts[name] or None
    return None


def token_lengths(encoder: SparseEncoder, side: str, texts: Sequence[str]) -> np.ndarray:
    """Tokens the encoder reads for each text (after truncation, prompt included), `[n]` int64."""
    prompt = side_prompt(encoder, side)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), LENGTH_SLICE):
        features = encoder.preprocess(
            list(texts[start : start + LENGTH_SLICE]), prompt=prompt, task=side
        )
        if "attention_mask" in features:
            counts = features["attention_mask"].sum(dim=1)
        else:
            counts = torch.full((features["input_ids"].shape[0],), features["input_ids"].shape[1])
        lengths[start : start + len(counts)] = counts.numpy()
    return lengths


def ladder_floor(n: np.ndarray) -> np.ndarray:
    """Largest value of the ladder 1, 2, 3, 4, 6, 8, 12, 16, 24, ... that is <= n (`n >= 1`)."""
    n = np.asarray(n, dtype=np.int64)
    power = np.left_shift(1, np.floor(np.log2(n)).astype(np.int64))  # 2^k <= n < 2^(k+1)
    three_halves = np.where(power >= 2, power + power // 2, 0)
    return np.where(three_halves <= n, np.maximum(three_halves, power), power)


def plan_batches(lengths: np.ndarray, max_tokens: int) -> list[tuple[int, np.ndarray]]:
    """Groups `(batch_size, rows)` covering every row of `lengths` `[n]` once, longest first.

    Within a group, rows `[m]` are in order of decreasing length and are encoded `batch_size`
    at a time; every such batch pads to at most `max_tokens` tokens (batch size x longest).
    Rows of equal length keep their input order.
    """
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    if len(lengths) == 0:
        return []
    if lengths.max() > max_tokens:
        raise ValueError(f"a text of {lengths.max()} tokens exceeds the batch budget {max_tokens}")
    order = np.argsort(-lengths, kind="stable")
    sizes = ladder_floor(max_tokens // lengths[order])  # non-decreasing along `order`
    cuts = np.flatnonzero(np.diff(sizes)) + 1
    return [
        (int(sizes[rows[0]]), order[rows])
        for rows in np.split(np.arange(len(order)), cuts)
    ]


def _encode_batch(encode_fn, texts: list[str], cap: int) -> list[sp.csr_matrix]:
    """One batch in this process, halved on out-of-memory; CSR blocks `[m, dim]`, in order."""
    try:
        out = encode_fn(texts, batch_size=len(texts), **ENCODE_KWARGS)
    except torch.OutOfMemoryError:
        if len(texts) == 1:
            raise
        half = len(texts) // 2
        logger.warning(
            "out of memory on a batch of %d texts: retrying as batches of %d and %d",
            len(texts), half, len(texts) - half,
        )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return _encode_batch(encode_fn, texts[:half], cap) + _encode_batch(
            encode_fn, texts[half:], cap
        )
    return [top_k_rows(torch_sparse_to_csr(out), cap)]


def _encode_pooled(encode_fn, texts: list[str], batch_size: int, cap: int, pool) -> sp.csr_matrix:
    """Texts of one group through the pool, one chunk per batch; on out-of-memory in a worker the
    batch size halves for the whole call, which is redone. CSR `[len(texts), dim]` in order."""
    while True:
        try:
            out = encode_fn(texts, batch_size=batch_size, chunk_size=batch_size, pool=pool,
                            **ENCODE_KWARGS)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            logger.warning(
                "out of memory in a pool worker at batch size %d: retrying %d texts at %d",
                batch_size, len(texts), batch_size // 2,
            )
            batch_size //= 2
            continue
        return top_k_rows(torch_sparse_to_csr(out), cap)


def encode_texts(
    encoder: SparseEncoder,
    side: str,
    texts: Sequence[str],
    dim: int,
    *,
    max_tokens: int,
    cap: int = 0,
    pool: dict[str, Any] | None = None,
    show_progress: bool = False,
    desc: str = "Encoding",
) -> Encoded:
    """Encodings `[len(texts), dim]` (canonical CSR, input order) of one side's texts.

    Args:
        encoder: the SparseEncoder; `encode_query` or `encode_document` is used per `side`.
        side: "query" or "document".
        texts: the texts; empty or whitespace-only ones become empty rows without encoding.
        dim: width of the vectors (checked against the encoder's output).
        max_tokens: batch budget in padded tokens (>= the longest text).
        cap: keep each row's `cap` largest entries (`top_k_rows`); 0 keeps every active one.
        pool: a pool from `encoder.start_multi_process_pool(devices)`, or None for this process.
        show_progress: a bar over texts.
        desc: the bar's label.
    """
    if side not in SIDES:
        raise ValueError(f"side must be 'query' or 'document', got {side!r}")
    encode_fn = encoder.encode_query if side == "query" else encoder.encode_document
    kept = np.flatnonzero([bool(t and t.strip()) for t in texts])
    kept_texts = [texts[i] for i in kept]
    lengths = token_lengths(encoder, side, kept_texts)
    groups = plan_batches(lengths, max_tokens)
    per_call = BATCHES_PER_WORKER * len(pool["processes"]) if pool is not None else 1
    blocks: list[sp.csr_matrix] = []
    began = time.perf_counter()
    with tqdm(total=len(kept), desc=desc, disable=not show_progress, unit="text") as bar:
        for batch_size, rows in groups:
            step = batch_size * per_call
            for start in range(0, len(rows), step):
                chunk = [kept_texts[i] for i in rows[start : start + step]]
                if pool is None:
                    blocks += _encode_batch(encode_fn, chunk, cap)
                else:
                    blocks.append(_encode_pooled(encode_fn, chunk, batch_size, cap, pool))
                bar.update(len(chunk))
    seconds = time.perf_counter() - began
    stacked = sp.vstack(blocks, format="csr") if blocks else empty_csr(0, dim)
    if stacked.shape != (len(kept), dim):
        raise ValueError(
            f"encoder returned shape {stacked.shape} for {len(kept)} texts, expected dim {dim}"
        )
    order = np.concatenate([rows for _, rows in groups]) if groups else np.zeros(0, np.int64)
    matrix = scatter_rows(permute_rows(stacked, order), kept, len(texts))
    return Encoded(matrix, int(lengths.sum()), seconds, cap)
