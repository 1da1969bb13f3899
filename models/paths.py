"""Where prepared models, SAEs, hashes and encodings are cached: `$HARNESS_CACHE` or `<repo>/.cache`."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of every cache (prepared models, SAEs, weight hashes, encodings)."""
    path = Path(os.environ.get("HARNESS_CACHE", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path
