"""Search backends chosen by the `cfg.search` node (`conf/search/<name>.yaml`).

The node is flat: `name` plus that backend's parameters, e.g. `{name: exact, num_threads: 1}`.
`conf/search/<name>.yaml` is the only place a backend's default parameters are written: a node
that leaves a parameter out takes the value from that file, here and in the Hydra app alike.
Unknown names or keys fail at construction, before any encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import scipy.sparse as sp
import yaml

from .exact import PRUNING, ExactIndex, TopK
from .seismic import SeismicIndex

#: Folder of the search config group: one `<backend>.yaml` per backend.
SEARCH_CONF = Path(__file__).resolve().parents[2] / "conf" / "search"
#: Keys of a search node that are not parameters of the index itself.
MODEL_KEYS = {"seismic": ("recall_vs_exact",)}


@cache
def defaults(name: str) -> dict[str, Any]:
    """Default parameters of backend `name`, read from `conf/search/<name>.yaml` (without `name`)."""
    known = sorted(p.stem for p in SEARCH_CONF.glob("*.yaml"))
    if name not in known:
        raise ValueError(f"search.name must be one of {known}, got {name!r}")
    node = yaml.safe_load((SEARCH_CONF / f"{name}.yaml").read_text())
    if not isinstance(node, dict) or node.get("name") != name:
        raise ValueError(f"{SEARCH_CONF / f'{name}.yaml'} must be a mapping with name: {name}")
    return {k: v for k, v in node.items() if k != "name"}


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
        known = defaults(str(name))
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"unknown search.{unknown[0]} for backend {name!r}; known: {sorted(known)}"
            )
        params = {**known, **values}
        if int(params["num_threads"]) < 0:
            raise ValueError(f"search.num_threads must be >= 0, got {params['num_threads']}")
        if name == "exact" and params["pruning"] not in PRUNING:
            raise ValueError(f"search.pruning must be one of {PRUNING}, got {params['pruning']!r}")
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
            return ExactIndex(docs, **self.index_params)
        return SeismicIndex(docs, **self.index_params)

    @property
    def index_params(self) -> dict[str, Any]:
        """The parameters the index class takes (the search node less the model-level keys)."""
        skip = MODEL_KEYS.get(self.name, ())
        return {k: v for k, v in self.params.items() if k not in skip}
