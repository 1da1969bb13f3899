"""Results on disk: mteb's ResultCache layout written atomically, the layout version of a results
root, one record per run that is never overwritten, and which run wrote each task file.

Inside `<root>/results/<model>/<revision>/` (mteb's layout; mteb reads `*.json` there) the harness
keeps its own files in `harness/`:

- `runs/<run id>.json`: one file per run, written `started` before `mteb.evaluate` and completed
  (`finished` or `failed`) after it; a killed run's record stays `started`. It holds the composed
  config, the command line, package versions, the git commit and dirty flag, start and end time,
  and which (task, split, subset) results the run computed and which it reused from disk.
- `provenance.json`: `<Task>.json` -> the run that last wrote it, the sha256 of what it wrote, and
  per `split/subset` the run that computed that score. Updated (atomically) by
  `AtomicResultCache.save_to_cache` just before it moves the task file into place, so a task file
  on disk always has an entry naming a run record that exists.

`<root>/harness/format.json` holds the layout version of the whole root: a root written by an
incompatible harness (or by one that predates the marker) is refused in one line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mteb.cache import ResultCache
from mteb.models.model_meta import ModelMeta
from mteb.results import TaskResult

from harness.paths import REPO_ROOT
from models import identity

RECORDED_PACKAGES = (
    "torch", "transformers", "mteb", "sentence-transformers", "sae-lens", "peft",
    "hydra-core", "numba", "scipy", "pyseismic-lsr", "splare-harness",
)

#: Layout of a results root this harness writes; bump when files move or change meaning
#: (1: last-run-wins `config.yaml` / `run.json`; 2: per-run records, provenance, run files).
LAYOUT_VERSION = 2
#: The layout marker, relative to a results root (beside mteb's `results/`).
FORMAT_FILE = Path("harness") / "format.json"
RUNS_DIR = "runs"
PROVENANCE_FILE = "provenance.json"


class IncompatibleLayoutError(ValueError):
    """A results root or cache was written by an incompatible harness version (one-line message)."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder and os.replace (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def claim_layout(marker: Path, what: str, version: int, found_version: int | None, fix: str) -> None:
    """Check (or write) the layout marker of a folder the harness writes into.

    Args:
        marker: the marker file (`{"layout": <int>}`).
        what: the folder in words, for the message ("results folder results/").
        version: the layout this harness writes.
        found_version: the layout of the data already there when it has no marker (None: no data).
        fix: what the user should do, appended to the error.

    Raises:
        IncompatibleLayoutError: the marker or the data names another layout, or the marker is unreadable.
    """
    if marker.is_file():
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))["layout"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise IncompatibleLayoutError(f"{what}: unreadable layout marker {marker}; {fix}") from None
        if found != version:
            raise IncompatibleLayoutError(
                f"{what} was written by a harness with layout {found}, this harness writes layout "
                f"{version}; {fix}"
            )
        return
    if found_version is not None and found_version != version:
        raise IncompatibleLayoutError(
            f"{what} holds data of layout {found_version} (no {marker.name}: written by an older "
            f"harness), this harness writes layout {version}; {fix}"
        )
    atomic_write_text(marker, json.dumps({"layout": version, "writer": "splare-harness"}) + "\n")


def claim_results_root(root: Path, shown: str | Path | None = None) -> None:
    """Refuse a results root written by another harness layout; mark a new one as ours.

    `shown` is the root as the user gave it (for the message; default `root`). A root with mteb
    results but no marker predates the marker (layout 1) and is refused too: never mix layouts.
    """
    holds_results = any((root / "results").glob("*/*/*.json"))
    claim_layout(
        root / FORMAT_FILE,
        f"results folder {shown or root}",
        LAYOUT_VERSION,
        1 if holds_results else None,
        f"set run.results_dir to a new folder (or move {shown or root} away)",
    )


def claim_encoding_cache(root: Path) -> None:
    """Refuse an encoding cache written with another entry format; mark a new one as ours.

    A cache without a marker is dated by the `format` its entries' headers carry.
    """
    import numpy as np

    from harness.search.encoding_cache import FORMAT_VERSION

    found = None
    entry = next(Path(root).glob("*.npz"), None)
    if entry is not None:
        try:
            with np.load(entry, allow_pickle=False) as z:
                found = json.loads(str(z["header"])).get("format")
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            found = None  # a damaged entry is the cache's own business (removed and rebuilt)
    claim_layout(
        Path(root) / "format.json",
        f"encoding cache {root}",
        FORMAT_VERSION,
        found,
        "delete it (it holds only cached encodings) or set run.cache_dir to a new folder",
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_state() -> dict[str, Any] | None:
    """`{"commit": HEAD, "dirty": tracked files changed}` of the harness checkout, None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(dirty.strip())}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide a run's numbers."""
    return identity.package_versions(RECORDED_PACKAGES)


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, shell-quoted: `python -m harness …` for a module entry point, else the
    script's name (never the absolute path of the checkout)."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0])
    head = (["python", "-m", program.parent.name] if program.name == "__main__.py"
            else [program.name])
    return shlex.join([*head, *argv[1:]])


def _now() -> datetime:
    return datetime.now(UTC)


Triple = tuple[str, str, str]
"""(task name, split, subset)."""


def _nest(triples: Iterable[Triple]) -> dict[str, dict[str, list[str]]]:
    """{task: {split: [subsets]}} of (task, split, subset) triples, sorted."""
    out: dict[str, dict[str, list[str]]] = {}
    for task, split, subset in sorted(set(triples)):
        out.setdefault(task, {}).setdefault(split, []).append(subset)
    return out


class RunLog:
    """This run's record (`<folder>/runs/<run id>.json`) and the provenance of what it writes.

    `computed` collects the (task, split, subset) triples this run evaluated itself (the search
    layer adds them as it searches); every other score in a task file it writes was reused.
    """

    def __init__(self, folder: Path, fields: Mapping[str, Any]):
        self.folder = Path(folder)
        self.started = _now()
        self.run_id = f"{self.started:%Y%m%dT%H%M%S%fZ}_{os.getpid()}"
        self.computed: set[Triple] = set()
        self.record: dict[str, Any] = {
            "run_id": self.run_id,
            "status": "started",
            "started_at": self.started.isoformat(),
            "ended_at": None,
            "command": command_line(),
            "git": git_state(),
            "packages": package_versions(),
            "python": sys.version.split()[0],
            **fields,
        }

    @property
    def path(self) -> Path:
        """The record file."""
        return self.folder / RUNS_DIR / f"{self.run_id}.json"

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.record, indent=2, default=str) + "\n")

    def start(self) -> RunLog:
        """Write the `started` record (before anything is evaluated); returns self."""
        self._write()
        return self

    def finish(self, results: Iterable[TaskResult], error: BaseException | None = None) -> None:
        """Complete the record: end time, `finished` (or `failed` with the error), and for every
        score in `results` whether this run computed it or reused it from disk."""
        present = {
            (r.task_name, split, s["hf_subset"]) for r in results for split, scores in r.scores.items()
            for s in scores
        }
        ended = _now()
        self.record.update(
            status="failed" if error is not None else "finished",
            ended_at=ended.isoformat(),
            seconds=round((ended - self.started).total_seconds(), 1),
            computed=_nest(self.computed),
            reused=_nest(present - self.computed),
        )
        if error is not None:
            self.record["error"] = f"{type(error).__name__}: {error}"
        self._write()

    def attribute(self, task_file: Path, staged: Path, result: TaskResult) -> None:
        """Record in `provenance.json` that this run writes `staged` as `task_file`; per
        split/subset, the run that computed the score (this one, or whoever the entry named)."""
        index_path = self.folder / PROVENANCE_FILE
        index_path.parent.mkdir(parents=True, exist_ok=True)
        # jobs of one sweep (e.g. task shards) share a revision folder: update under a lock
        with (self.folder / f".{PROVENANCE_FILE}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = read_provenance(self.folder)
            before = index.get(task_file.name, {}).get("subsets", {})
            subsets = {}
            for split, scores in sorted(result.scores.items()):
                for score in scores:
                    key = f"{split}/{score['hf_subset']}"
                    mine = (result.task_name, split, score["hf_subset"]) in self.computed
                    subsets[key] = self.run_id if mine else before.get(key, self.run_id)
            index[task_file.name] = {"run": self.run_id, "sha256": file_sha256(staged),
                                     "subsets": subsets}
            atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")


def read_provenance(folder: Path) -> dict[str, Any]:
    """`provenance.json` of a `<revision>/harness/` folder ({} when absent)."""
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_run_records(folder: Path) -> list[dict[str, Any]]:
    """Every run record of a `<revision>/harness/` folder, oldest first."""
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((Path(folder) / RUNS_DIR).glob("*.json"))]


def provenance_problems(revision_folder: Path) -> list[str]:
    """What makes a `<model>/<revision>/` folder inconsistent ([] when consistent): a task file
    with no provenance entry, an entry whose run has no record, or content that differs from what
    the named run wrote."""
    harness_dir = Path(revision_folder) / "harness"
    index = read_provenance(harness_dir)
    runs = {p.stem for p in (harness_dir / RUNS_DIR).glob("*.json")}
    problems = []
    for path in sorted(Path(revision_folder).glob("*.json")):
        if path.name == "model_meta.json":
            continue
        entry = index.get(path.name)
        if entry is None:
            problems.append(f"{path.name}: no provenance entry")
            continue
        named = {entry["run"], *entry["subsets"].values()}
        problems += [f"{path.name}: run {r} has no record" for r in sorted(named - runs)]
        if entry["sha256"] != file_sha256(path):
            problems.append(f"{path.name}: content differs from what run {entry['run']} wrote")
    return problems


class AtomicResultCache(ResultCache):
    """mteb's ResultCache whose task files appear whole or not at all, each with its provenance.

    mteb writes `<Task>.json`, `model_meta.json` and merges `run_settings.jsonl` in place; a kill
    in the middle leaves a truncated JSON that later runs trip on. Here mteb writes into a staging
    folder (seeded with the existing run settings) and each file is moved into place with os.replace.
    With `run` set, the task file's provenance entry is written first (see `RunLog.attribute`).
    """

    run: RunLog | None = None

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
            if self.run is not None:
                self.run.attribute(final, staged, task_result)
            for path in staged.parent.iterdir():
                os.replace(path, final.parent / path.name)


def model_results_dir(cache: ResultCache, meta: ModelMeta) -> Path:
    """`<root>/results/<model name>/<revision>/`: where mteb puts this model's task results."""
    return cache.get_task_result_path("_", meta, meta.revision).parent
