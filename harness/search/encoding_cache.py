"""On-disk cache of sparse encodings, bounded per vector ("encode once, prune later").

One `.npz` file per (encoder identity, task, subset, split, side, content): the canonical CSR
arrays `[n_texts, dim]` plus a JSON header with a checksum, the token count, the encoding time and
the cap N (each row keeps its N largest entries; 0 = every active dimension). An entry serves any
top-k with 0 < k <= N; a larger k (or k = 0, uncapped) is a miss and the caller re-encodes and
replaces it. Writes are atomic (temporary file in the same folder + `os.replace`); reads check
the shape and the checksum, and a damaged entry is reported with a warning, removed and rebuilt by
the caller. `lock(key)` is the lock file beside an entry that keeps concurrent jobs on a shared
filesystem from encoding the same entry twice at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .csr import Encoded
from .lock import FileLock

logger = logging.getLogger(__name__)

#: Bump when the file layout changes (code and weight changes are in the key itself).
FORMAT_VERSION = 3


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


def encoder_digest(encoder: torch.nn.Module) -> str:
    """Full content hash of an in-memory encoder, for encoders given without a `ModelSpec`:
    its module tree, every parameter's and buffer's bytes, and the encoding path's code version.

    The runner passes `models.encoding_key(spec)` instead, which hashes the files once."""
    from models.identity import encode_code_digest

    h = hashlib.blake2b(digest_size=20)
    h.update(repr(encoder).encode())
    h.update(encode_code_digest().encode())
    with torch.no_grad():
        for name, tensor in [*encoder.named_parameters(), *encoder.named_buffers()]:
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
    """CSR encodings (capped per row: `Encoded.cap`) under `root`, keyed by `EncodingCache.key`."""

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

    def lock(self, key: str) -> FileLock:
        """The lock file of an entry (`<key>.lock`), to hold while encoding it."""
        return FileLock(self.root / f"{key}.lock")

    def load(self, key: str, n_rows: int, dim: int, top_k: int = 0) -> Encoded | None:
        """The cached encoding `[n_rows, dim]` when it serves `top_k` (0 = uncapped), else None.

        A corrupt entry is removed; one capped below `top_k` is left to be replaced.
        """
        path = self.path(key)
        if not path.exists():
            return None
        try:
            encoded = self._read(path, n_rows, dim)
        except (CorruptEntryError, OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            warnings.warn(
                f"encoding cache entry {path} is corrupt ({err}); re-encoding", stacklevel=2
            )
            path.unlink(missing_ok=True)
            return None
        if not encoded.serves(top_k):
            logger.info(
                "encoding cache entry %s keeps the top %d per row; top-k %s needs a re-encoding",
                path, encoded.cap, top_k or "uncapped",
            )
            return None
        return encoded

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
        return Encoded(
            matrix, int(header["n_tokens"]), float(header["seconds"]), int(header["cap"])
        )

    def save(self, key: str, encoded: Encoded, description: dict[str, object]) -> Path:
        """Write an entry atomically; `description` (JSON-serialisable) is kept in the header."""
        m = encoded.matrix
        header = {
            "format": FORMAT_VERSION,
            "shape": [int(s) for s in m.shape],
            "checksum": _checksum(m.data, m.indices, m.indptr, m.shape),
            "n_tokens": encoded.n_tokens,
            "seconds": encoded.seconds,
            "cap": encoded.cap,
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
        logger.info(
            "cached encodings %s (%d x %d, nnz %d, cap %d)", path, *m.shape, m.nnz, encoded.cap
        )
        return path
