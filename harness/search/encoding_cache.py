"""On-disk cache of uncapped sparse encodings ("encode once, prune later").

One `.npz` file per (encoder identity, task, subset, split, side, content): the canonical CSR
arrays `[n_texts, dim]` plus a JSON header with a checksum, the token count and the encoding time.
Writes are atomic (temporary file in the same folder + `os.replace`); reads check the shape and
the checksum, and a damaged entry is reported with a warning, removed and rebuilt by the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .csr import Encoded

logger = logging.getLogger(__name__)

#: Bump when the file layout or the encoding procedure changes: old entries are then ignored.
FORMAT_VERSION = 1


def _digest(*chunks: bytes) -> str:
    h = hashlib.blake2b(digest_size=20)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def content_hash(ids: Sequence[str], texts: Sequence[str]) -> str:
    """Hash of the (id, text) pairs in order: any change of the data gives a new cache key."""
    h = hashlib.blake2b(digest_size=20)
    for doc_id, text in zip(ids, texts, strict=True):
        h.update(str(doc_id).encode())
        h.update(b"\x00")
        h.update(text.encode())
        h.update(b"\x01")
    return h.hexdigest()


def name_without_top_k(name: str, top_k_query: int, top_k_document: int) -> str:
    """Mask the top-k pair in a model name: `x-q40-d400` and `x-q10-d100` become one identity.

    The pair is recognised as `<query k>`, one to three non-digits, `<document k>` (e.g.
    `q40-d400`, `topk40_400`, `40/400`); a cap of 0 may also be written `all`, `nocap` or `none`
    (`qall-dall`). A name without the pair is returned unchanged.
    """

    def spelled(k: int) -> str:
        return "|".join([str(k), *(("all", "nocap", "none") if k == 0 else ())])

    pattern = rf"(?<!\d)(?:{spelled(top_k_query)})(\D{{1,3}}?)(?:{spelled(top_k_document)})(?!\d)"
    return re.sub(pattern, lambda m: f"{{q}}{m.group(1)}{{d}}", name)


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """Cheap fingerprint of an encoder: its module tree and a strided sample of every parameter.

    Two checkpoints of the same architecture under one name still get different fingerprints,
    at the cost of reading 64 values per parameter tensor.
    """
    parts = [repr(encoder).encode()]
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            flat = param.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)][:64].double().sum().item()
            parts.append(f"{name}:{tuple(param.shape)}:{sample!r}".encode())
    return _digest(*parts)


def _checksum(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> str:
    return _digest(
        np.ascontiguousarray(data, dtype=np.float32).tobytes(),
        np.ascontiguousarray(indices, dtype=np.int64).tobytes(),
        np.ascontiguousarray(indptr, dtype=np.int64).tobytes(),
        repr(tuple(int(s) for s in shape)).encode(),
    )


class CorruptEntryError(ValueError):
    """A cache file exists but cannot be trusted."""


class EncodingCache:
    """Uncapped CSR encodings under `root`, keyed by `EncodingCache.key(...)`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(**parts: object) -> str:
        """Stable key of the JSON-serialisable `parts` (identity, task, subset, split, side, content)."""
        payload = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
        return _digest(payload.encode())

    def path(self, key: str) -> Path:
        """File of an entry."""
        return self.root / f"{key}.npz"

    def load(self, key: str, n_rows: int, dim: int) -> Encoded | None:
        """The cached encoding `[n_rows, dim]`, or None when absent or corrupt (then removed)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return self._read(path, n_rows, dim)
        except (CorruptEntryError, OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            warnings.warn(
                f"encoding cache entry {path} is corrupt ({err}); re-encoding", stacklevel=2
            )
            path.unlink(missing_ok=True)
            return None

    @staticmethod
    def _read(path: Path, n_rows: int, dim: int) -> Encoded:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            data, indices, indptr = z["data"], z["indices"], z["indptr"]
        shape = (int(header["shape"][0]), int(header["shape"][1]))
        if shape != (n_rows, dim):
            raise CorruptEntryError(f"shape {shape} != expected {(n_rows, dim)}")
        if (
            len(indptr) != n_rows + 1
            or indptr[0] != 0
            or indptr[-1] != len(data)
            or len(indices) != len(data)
        ):
            raise CorruptEntryError("CSR arrays do not fit together")
        if _checksum(data, indices, indptr, shape) != header["checksum"]:
            raise CorruptEntryError("checksum mismatch")
        matrix = sp.csr_matrix((data, indices, indptr), shape=shape)
        matrix.has_sorted_indices = True
        return Encoded(matrix, int(header["n_tokens"]), float(header["seconds"]))

    def save(self, key: str, encoded: Encoded, description: dict[str, object]) -> Path:
        """Write an entry atomically; `description` (JSON-serialisable) is kept in the header."""
        m = encoded.matrix
        header = {
            "format": FORMAT_VERSION,
            "shape": [int(s) for s in m.shape],
            "checksum": _checksum(m.data, m.indices, m.indptr, m.shape),
            "n_tokens": encoded.n_tokens,
            "seconds": encoded.seconds,
            "description": description,
        }
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    header=np.array(json.dumps(header, default=str)),
                    data=m.data.astype(np.float32, copy=False),
                    indices=m.indices,
                    indptr=m.indptr,
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        logger.info("cached encodings %s (%d x %d, nnz %d)", path, *m.shape, m.nnz)
        return path
