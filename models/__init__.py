"""Model wrappers: every model of the harness is a sentence-transformers SparseEncoder.

`build_encoder(cfg.model)`, `model_meta(cfg.model)`, `load_encoder(path)` and `variant_name(cfg.model)`
live in `models.build`; they are imported on first use so that light submodules (e.g.
`models.embedded`) do not pull in sentence-transformers, sae-lens and mteb.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_encoder", "load_encoder", "model_meta", "variant_name"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from models import build

        return getattr(build, name)
    raise AttributeError(f"module 'models' has no attribute '{name}'")
