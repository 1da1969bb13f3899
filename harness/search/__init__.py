"""Sparse-native retrieval inside MTEB: exact inverted index or Seismic over cached CSR."""

from .backends import BackendConfig
from .model import SparseSearchModel

__all__ = ["BackendConfig", "SparseSearchModel"]
