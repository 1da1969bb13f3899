"""Sparse-native retrieval inside MTEB: exact inverted index or Seismic over cached CSR."""

from pathlib import Path

from .backends import BackendConfig
from .model import SparseSearchModel

__all__ = ["SEARCH_PACKAGES", "BackendConfig", "SparseSearchModel", "search_code_digest"]

#: Packages whose version can change a search result (scores, ties, approximate recall).
SEARCH_PACKAGES = ("numpy", "scipy", "numba", "pyseismic-lsr", "mteb")


def search_code_digest() -> str:
    """Version of the search path: the source of this package's modules and `SEARCH_PACKAGES`."""
    from models.identity import code_digest

    return code_digest(sorted(Path(__file__).resolve().parent.glob("*.py")), SEARCH_PACKAGES)
