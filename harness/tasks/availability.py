"""Offline runs: every hub task's dataset must already be in a local cache, checked up front.

mteb loads a task's data with `datasets.load_dataset(path, revision=...)` inside `mteb.evaluate`,
after the model has loaded; offline, a missing dataset would fail there, minutes in. This check
runs before any model loads and names the task, the dataset id and revision, and how to provide it.
A dataset counts as cached when the hub cache holds a snapshot of it (`datasets--org--name`,
read by `datasets` in offline mode) or the datasets cache holds its prepared form (`org___name`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.offline import DatasetNotCachedError

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask


def _cache_roots() -> tuple[Path, Path]:
    from datasets import config as datasets_config
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE), Path(datasets_config.HF_DATASETS_CACHE)


def dataset_cached(path: str, revision: str | None) -> bool:
    """True when dataset `path` (at `revision`, when given) is in the hub or datasets cache."""
    if os.path.isdir(path):
        return True
    hub, prepared = _cache_roots()
    snapshots = hub / f"datasets--{path.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir() and (
        (snapshots / revision).is_dir() if revision else any(snapshots.iterdir())
    ):
        return True
    return (prepared / path.replace("/", "___")).is_dir()


def check_datasets_cached(tasks: Sequence[AbsTask]) -> None:
    """Fail in one line on the first hub task whose dataset is not cached (local tasks pass)."""
    for task in tasks:
        if getattr(task, "data_loaded", False):
            continue
        dataset = task.metadata.dataset or {}
        path, revision = dataset.get("path"), dataset.get("revision")
        if not path or dataset_cached(path, revision):
            continue
        hub, _ = _cache_roots()
        raise DatasetNotCachedError(
            f"task {task.metadata.name} needs dataset '{path}' (revision {revision}), which is not "
            f"in the local cache ({hub}) and the hub is offline: on a machine with the hub run "
            f"`hf download {path} --repo-type dataset --revision {revision}` and copy the cache "
            "(or set HF_HUB_CACHE to it), or pick local tasks (benchmark=local_real)"
        )
