"""Content identities: what a number depends on, as short hashes.

- `file_digest` / `folder_digest`: a full blake2b hash of every byte of local weights, tokenizer
  and config files. A file is hashed once and its digest reused while its size and mtime are
  unchanged (`<cache>/hashes/digests.json`), so a 16 GB checkpoint costs one read, not one a run.
- `hub_identity`: a hub id pinned to the commit its revision resolves to (online: the hub's
  answer; offline: the local HF cache's ref), or marked unpinned.
- `code_digest`: the source of the modules a result depends on, plus library versions, so a code
  change is a new identity without anyone bumping a version number.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from models.embedded import MANIFEST
from models.paths import cache_dir

#: Files that never change a number (lock files, HF download metadata, OS litter, and the
#: manifest of a prepared embedded asset: its build time and date differ from machine to machine).
IGNORED_PARTS = (".cache", ".git", "__pycache__", ".DS_Store", ".locks", MANIFEST)
#: Packages whose version changes what an encoder computes.
ENCODE_PACKAGES = ("torch", "transformers", "sentence-transformers", "sae-lens", "peft")
#: The modules of the encoding path (models/ only): their source is part of every encoding key.
ENCODE_MODULES = (
    "attention.py", "backbone.py", "build.py", "pooling.py", "sae_pooling.py", "spec.py",
    "vocab_head.py",
)


def short(payload: Any, size: int = 12) -> str:
    """`size` hex digits of blake2b over the canonical JSON of `payload`."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:size]


def _digest_store() -> Path:
    return cache_dir() / "hashes" / "digests.json"


def _load_store() -> dict[str, dict[str, Any]]:
    path = _digest_store()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_store(store: Mapping[str, Any]) -> None:
    path = _digest_store()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".digests.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(store, f)
    os.replace(tmp, path)


def file_digest(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """blake2b of the whole file, reused from the digest store while (size, mtime) hold."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    store = _load_store()
    known = store.get(str(path))
    if known and known.get("size") == stamp["size"] and known.get("mtime_ns") == stamp["mtime_ns"]:
        return known["digest"]
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    store = _load_store()  # another process may have written meanwhile
    store[str(path)] = {**stamp, "digest": h.hexdigest()}
    _save_store(store)
    return h.hexdigest()


def _files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_PARTS)
        for name in sorted(filenames):
            if name not in IGNORED_PARTS and not name.endswith((".lock", ".tmp")):
                yield Path(dirpath) / name


def folder_digest(path: str | os.PathLike) -> str:
    """Hash of a local file or folder: every file's relative path and full-content digest."""
    root = Path(path)
    if root.is_file():
        return file_digest(root)
    entries = [(str(f.relative_to(root)), file_digest(f)) for f in _files(root)]
    if not entries:
        raise FileNotFoundError(f"{path}: an empty folder has no content to identify")
    return short(entries, 40)


def hub_identity(repo_id: str, revision: str | None, online: bool) -> dict[str, Any]:
    """`{"hub": id, "revision": asked, "commit": sha or None}` for a hub model id.

    Online, the hub resolves the revision (a branch moves; a commit does not). Offline, the
    local HF cache's ref for the revision is read. `commit` None means the identity is unpinned
    (the record says so).
    """
    asked = revision or "main"
    commit = None
    if online:
        from huggingface_hub import HfApi

        commit = HfApi().model_info(repo_id, revision=asked).sha
    else:
        from huggingface_hub import constants

        ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / asked
        if ref.is_file():
            commit = ref.read_text().strip()
        elif len(asked) == 40:
            commit = asked
    return {"hub": repo_id, "revision": asked, "commit": commit}


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution, None when absent."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_digest(files: Iterable[str | os.PathLike], packages: Iterable[str] = ()) -> str:
    """Hash of the given source files' bytes (missing ones count as absent) and package versions."""
    parts = []
    for file in files:
        path = Path(file)
        digest = hashlib.blake2b(path.read_bytes()).hexdigest() if path.is_file() else None
        parts.append((path.name, digest))
    return short({"files": parts, "packages": package_versions(packages)}, 16)


def encode_code_digest() -> str:
    """Version of the encoding path: the source of `ENCODE_MODULES` and `ENCODE_PACKAGES`."""
    here = Path(__file__).resolve().parent
    return code_digest((here / name for name in ENCODE_MODULES), ENCODE_PACKAGES)
