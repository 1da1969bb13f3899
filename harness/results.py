"""Results on disk: mteb's ResultCache layout, written atomically, plus the run record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from mteb.cache import ResultCache
from mteb.models.model_meta import ModelMeta
from mteb.results import TaskResult

from harness.paths import REPO_ROOT

RECORDED_PACKAGES = (
    "torch", "transformers", "mteb", "sentence-transformers", "sae-lens", "peft",
    "hydra-core", "numba", "scipy", "pyseismic-lsr", "splare-harness",
)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same folder and os.replace (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AtomicResultCache(ResultCache):
    """mteb's ResultCache whose task files appear whole or not at all.

    mteb writes `<Task>.json`, `model_meta.json` and merges `run_settings.jsonl` in place; a kill
    in the middle leaves a truncated JSON that later runs trip on. Here mteb writes into a staging
    folder (seeded with the existing run settings) and each file is moved into place with os.replace.
    """

    def save_to_cache(
        self,
        task_result: TaskResult,
        model_name: str | ModelMeta,
        model_revision: str | None = None,
        *,
        encode_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        final = self.get_task_result_path(task_result.task_name, model_name, model_revision)
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_path, prefix=".staging-") as tmp:
            staging = ResultCache(tmp)
            staged = staging.get_task_result_path(task_result.task_name, model_name, model_revision)
            staged.parent.mkdir(parents=True, exist_ok=True)
            if (final.parent / "run_settings.jsonl").exists():
                shutil.copy2(final.parent / "run_settings.jsonl", staged.parent / "run_settings.jsonl")
            staging.save_to_cache(task_result, model_name, model_revision, encode_kwargs=encode_kwargs)
            for path in staged.parent.iterdir():
                os.replace(path, final.parent / path.name)


def model_results_dir(cache: ResultCache, meta: ModelMeta) -> Path:
    """`<root>/results/<model name>/<revision>/`: where mteb puts this model's task results."""
    return cache.get_task_result_path("_", meta, meta.revision).parent


def git_revision() -> str | None:
    """The repository's HEAD commit (with `+dirty` when the tree has changes), None outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty.strip() else "")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide a run's numbers."""
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_run_record(folder: Path, config_yaml: str, extra: Mapping[str, Any]) -> None:
    """Keep the composed config (`config.yaml`) and `run.json` (command, versions, git) in `folder`."""
    atomic_write_text(folder / "config.yaml", config_yaml)
    record = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_revision": git_revision(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        **extra,
    }
    atomic_write_text(folder / "run.json", json.dumps(record, indent=2, default=str))
