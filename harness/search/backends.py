"""Search backends chosen by the `cfg.search` node (`conf/search/<name>.yaml`).

The node is flat: `name` plus that backend's parameters, e.g.
`{name: exact, num_threads: 1}` or `{name: seismic, query_cut: 10, heap_factor: 0.9, ...}`.
Unknown names or keys fail at construction, before any encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import scipy.sparse as sp

from .exact import ExactIndex, TopK
from .seismic import SeismicIndex

EXACT_DEFAULTS: dict[str, Any] = {"num_threads": 1}
SEISMIC_BUILD_DEFAULTS: dict[str, Any] = {
    "n_postings": 3500,
    "centroid_fraction": 0.1,
    "min_cluster_size": 2,
    "summary_energy": 0.4,
    "max_fraction": 1.5,
    "doc_cut": 15,
}
SEISMIC_DEFAULTS: dict[str, Any] = {
    **SEISMIC_BUILD_DEFAULTS,
    "query_cut": 10,
    "heap_factor": 0.9,
    "num_threads": 1,
    "recall_vs_exact": True,
}
DEFAULTS = {"exact": EXACT_DEFAULTS, "seismic": SEISMIC_DEFAULTS}


class SearchIndex(Protocol):
    """What the search model needs from a backend index."""

    name: str
    build_seconds: float

    @property
    def nbytes(self) -> int: ...

    def search(self, queries: sp.csr_matrix, k: int) -> TopK: ...


@dataclass(frozen=True)
class BackendConfig:
    """A validated `cfg.search` node: backend name and its complete parameter set."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> BackendConfig:
        """Validate a `cfg.search` mapping; missing parameters take the backend's defaults."""
        values = dict(node)
        name = values.pop("name", None)
        if name not in DEFAULTS:
            raise ValueError(f"search.name must be one of {sorted(DEFAULTS)}, got {name!r}")
        unknown = sorted(set(values) - set(DEFAULTS[name]))
        if unknown:
            raise ValueError(
                f"unknown search.{unknown[0]} for backend {name!r}; known: {sorted(DEFAULTS[name])}"
            )
        params = {**DEFAULTS[name], **values}
        if int(params["num_threads"]) < 0:
            raise ValueError(f"search.num_threads must be >= 0, got {params['num_threads']}")
        if name == "seismic":
            for key in ("n_postings", "query_cut", "doc_cut", "min_cluster_size"):
                if int(params[key]) < 1:
                    raise ValueError(f"search.{key} must be >= 1, got {params[key]}")
            for key in ("heap_factor", "summary_energy", "centroid_fraction"):
                if not 0 < float(params[key]) <= 1:
                    raise ValueError(f"search.{key} must be in (0, 1], got {params[key]}")
        return cls(name, params)

    def build(self, docs: sp.csr_matrix) -> SearchIndex:
        """Build this backend's index over canonical CSR documents `[n_docs, dim]`."""
        if self.name == "exact":
            return ExactIndex(docs, num_threads=int(self.params["num_threads"]))
        seismic_params = {k: v for k, v in self.params.items() if k != "recall_vs_exact"}
        return SeismicIndex(docs, **seismic_params)
