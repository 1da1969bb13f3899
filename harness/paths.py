"""Where the harness keeps caches, results and local data."""

from __future__ import annotations

import os
from pathlib import Path

from models.paths import REPO_ROOT, cache_dir

__all__ = ["REPO_ROOT", "cache_dir", "shared_data_root"]


def shared_data_root() -> Path | None:
    """Folder of the local real retrieval data (`$HARNESS_DATA_ROOT`, else `<repo>/../shared/datasets`).

    Returns None when neither exists, so callers can skip local tasks.
    """
    env = os.environ.get("HARNESS_DATA_ROOT")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "datasets"]
    for path in candidates:
        if path.is_dir():
            return path
    return None
