"""One harness run: config → tasks → search model → mteb.evaluate → results/ (mteb layout)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness.offline import configure_offline
from harness.paths import cache_dir
from harness.results import atomic_write_text
from models.spec import ModelSpec, check_int

logger = logging.getLogger("harness")

BM25_MODEL = "mteb/baseline-bm25s"
# Harness files (config, run record, efficiency stats) sit in `<model>/<revision>/harness/`:
# mteb's ResultCache reads every `<model>/<revision>/*.json` as a task result.
RECORD_SUBDIR = "harness"
#: The variant's fields (`ModelSpec.record()` + search), beside its results; reports read it.
VARIANT_FILE = "variant.json"


def check_config(cfg: DictConfig) -> ModelSpec:
    """Validate what can be checked without loading anything heavy; returns the model spec."""
    from harness.search import BackendConfig
    from harness.search.encode import parse_devices

    spec = ModelSpec.from_config(cfg.model)
    BackendConfig.parse(OmegaConf.to_container(cfg.search, resolve=True))
    parse_devices(cfg.run.get("devices"))
    budget = cfg.run.get("max_tokens_per_batch")
    if budget is not None and spec.backbone is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget < spec.backbone.max_length
    ):
        raise ValueError(f"run.max_tokens_per_batch={budget!r} must be an integer >= the model's "
                         f"max length ({spec.backbone.max_length})")
    check_int("run.cache_max_k", cfg.run.get("cache_max_k", 0))
    return spec


def variant_record(spec: ModelSpec, meta: Any, search: Mapping[str, Any]) -> dict[str, Any]:
    """What `variant.json` holds: the spec's fields, the search backend, name and revision."""
    return {**spec.record(), "search": dict(search), "name": meta.name,
            "revision": meta.revision, "n_parameters": meta.n_parameters,
            "embed_dim": meta.embed_dim}


def build_model(cfg: DictConfig, results_root: Path, spec: ModelSpec | None = None):
    """The mteb model to evaluate, its result cache and the folder for the harness's own records.

    BM25 is mteb's own bm25s baseline; every other kind is a SparseEncoder from `models`, wrapped in
    the harness's sparse-native SearchProtocol model (encodings cached under the cache dir). The
    variant's revision is a content hash (`models.meta`): a changed input is a new result folder.
    """
    import mteb

    from harness.results import AtomicResultCache, model_results_dir

    spec = spec or check_config(cfg)
    cache = AtomicResultCache(results_root)
    if not spec.kind.encoder:
        model = mteb.get_model(BM25_MODEL)
        stats_dir = model_results_dir(cache, model.mteb_model_meta) / RECORD_SUBDIR
        # mteb's bm25s searches itself: `cfg.search` is not used, the record says so.
        record = variant_record(spec, model.mteb_model_meta, {"name": "bm25s"})
        atomic_write_text(stats_dir / VARIANT_FILE, json.dumps(record, indent=2, sort_keys=True))
        return model, cache, stats_dir

    import models
    from harness.search import SparseSearchModel, search_code_digest

    search = OmegaConf.to_container(cfg.search, resolve=True)
    parts = models.resolve(spec)
    key = models.encoding_key(spec, parts)
    revision = models.revision(spec, key, search, search_code_digest())
    meta = models.model_meta(spec, revision, parts, search_name=cfg.search.name)
    stats_dir = model_results_dir(cache, meta) / RECORD_SUBDIR
    encoder = models.build_encoder(spec)
    enc_cache = Path(cfg.run.cache_dir) if cfg.run.cache_dir else cache_dir()
    model = SparseSearchModel(
        encoder,
        meta,
        top_k_query=spec.top_k_query,
        top_k_document=spec.top_k_document,
        backend=search,
        cache_dir=enc_cache / "encodings",
        stats_dir=stats_dir,
        batch_size=int(cfg.run.batch_size),
        show_progress=bool(cfg.run.show_progress),
        encoding_key=key,
        devices=cfg.run.devices,
        max_tokens_per_batch=cfg.run.max_tokens_per_batch,
        cache_max_k=cfg.run.cache_max_k,
    )
    atomic_write_text(
        stats_dir / VARIANT_FILE,
        json.dumps(variant_record(spec, meta, search), indent=2, sort_keys=True),
    )
    return model, cache, stats_dir


def scores_table(model_result: Any, model_label: str) -> pd.DataFrame:
    """Main score per task (mteb's subset-averaged main score) of one evaluated model."""
    rows = [
        {"task": r.task_name, "model": model_label, "main_score": r.get_score()}
        for r in model_result.task_results
    ]
    return pd.DataFrame(rows, columns=["task", "model", "main_score"])


def run(cfg: DictConfig, offline: bool | None = None) -> pd.DataFrame:
    """Evaluate `cfg.model` on `cfg.benchmark`; results land in mteb's layout under run.results_dir.

    The run writes its own record (`harness/runs/<run id>.json`, `started` before evaluating,
    completed after), the provenance of every task file it writes, and per searched
    (task, split, subset) a TREC run file and per-query nDCG@10 (`harness.runfiles`).
    """
    if offline is None:
        offline = configure_offline(cfg.run.hub)
    import mteb

    from harness.results import RunLog, claim_encoding_cache, claim_results_root
    from harness.runfiles import QUERIES_DIR, RunFileWriter
    from harness.sweep import job_benchmark, track
    from harness.tasks import check_datasets_cached, load_tasks

    spec = check_config(cfg)
    tasks = load_tasks(*job_benchmark(cfg))  # only this job's shard when run.shard is set
    if not tasks:
        raise ValueError(f"benchmark '{cfg.benchmark.name}' selects no task")
    if offline:
        check_datasets_cached(tasks)
    results_root = Path(cfg.run.results_dir).resolve()
    claim_results_root(results_root, shown=cfg.run.results_dir)
    model, cache, out_dir = build_model(cfg, results_root, spec)
    cache = track(cache, tasks, out_dir.parent)  # logs sweep progress after every task
    encodings = getattr(model, "cache", None)
    if encodings is not None:
        claim_encoding_cache(encodings.root)
    meta = model.mteb_model_meta
    logger.info("model %s (revision %s) on %d task(s) → %s", meta.name, meta.revision, len(tasks), out_dir)
    cache.run = RunLog(out_dir, {
        "model_name": meta.name, "revision": meta.revision, "offline": offline,
        "overwrite": cfg.run.overwrite, "tasks": [t.metadata.name for t in tasks],
        "config": OmegaConf.to_container(cfg, resolve=True),
    }).start()
    try:
        result = mteb.evaluate(
            RunFileWriter(model, out_dir / QUERIES_DIR, tasks, cache.run),
            tasks,
            cache=cache,
            overwrite_strategy=cfg.run.overwrite,
            encode_kwargs={"batch_size": int(cfg.run.batch_size)},
            show_progress_bar=bool(cfg.run.show_progress),
        )
    except BaseException as err:  # Ctrl-C too: the record says `failed`, not `started`
        cache.run.finish([], error=err)
        raise
    cache.run.finish(result.task_results)
    table = scores_table(result, cfg.model.name)
    print(f"\n{meta.name} on {cfg.benchmark.name} (results: {out_dir})")
    print(table.drop(columns="model").to_string(index=False, float_format="%.4f"))
    return table


class SummaryCallback(Callback):
    """After a multirun (e.g. the default `make mmteb` sweep), print one task × model table."""

    def __init__(self) -> None:
        self.tables: list[pd.DataFrame] = []

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        value = getattr(job_return, "_return_value", None)
        if isinstance(value, pd.DataFrame):
            self.tables.append(value)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.tables:
            return
        wide = pd.concat(self.tables).pivot_table(index="task", columns="model", values="main_score")
        print("\nmain score (nDCG@10 unless the task says otherwise), measured by this run:")
        print(wide.to_string(float_format="%.4f"))
