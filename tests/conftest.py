"""Test-wide settings: the hub is never contacted from tests; numba's compiled code is cached.

ranx (the paired tests and per-query nDCG of `harness.compare`) and the exact search index are
numba code with `cache=True`. `NUMBA_CACHE_DIR` puts that cache under the harness cache
(`$HARNESS_CACHE`, else `<repo>/.cache`), so it survives a rebuilt or read-only virtualenv and
only the first test run on a checkout compiles (set before anything imports numba).
"""

import os

from models.paths import cache_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
