"""Model wrappers: every model of the harness is a sentence-transformers SparseEncoder.

`ModelSpec` (models.spec) is the parsed model config that everything reads; `build_encoder`,
`load_encoder` (models.build), `model_meta`, `encoding_key`, `revision`, `variant_name`
(models.meta) are imported on first use so that light submodules (e.g. `models.embedded`,
`models.spec`) do not pull in sentence-transformers, sae-lens and mteb.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "build_encoder": "build",
    "load_encoder": "build",
    "resolve": "build",
    "model_meta": "meta",
    "encoding_key": "meta",
    "revision": "meta",
    "variant_name": "meta",
    "ModelSpec": "spec",
    "KINDS": "spec",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'models' has no attribute '{name}'")
