"""One harness run: config → tasks → search model → mteb.evaluate → results/ (mteb layout)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness.offline import configure_offline
from harness.paths import cache_dir

logger = logging.getLogger("harness")

MODEL_KINDS = ("splare", "splade_llm", "splade_mlm", "bm25")
BM25_MODEL = "mteb/baseline-bm25s"
# Harness files (config, run record, efficiency stats) sit in `<model>/<revision>/harness/`:
# mteb's ResultCache reads every `<model>/<revision>/*.json` as a task result.
RECORD_SUBDIR = "harness"


def check_top_k(model_cfg: Mapping) -> tuple[int, int]:
    """(query k, document k) of a model config; 0 means no cap. Anything else fails in one line."""
    top_k = model_cfg.get("top_k") or {}
    values = []
    for side in ("query", "document"):
        k = top_k.get(side, 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"model.top_k.{side} must be an integer >= 0 (0 = no cap), got {k!r}")
        values.append(k)
    return values[0], values[1]


def check_config(cfg: DictConfig) -> None:
    """Validate what can be checked without loading anything heavy."""
    if cfg.model.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind '{cfg.model.kind}' unknown; valid: {', '.join(MODEL_KINDS)}")
    if cfg.model.kind != "bm25":
        check_top_k(cfg.model)


def build_model(cfg: DictConfig, results_root: Path):
    """The mteb model to evaluate, its result cache and the folder for the harness's own records.

    BM25 is mteb's own bm25s baseline; every other kind is a SparseEncoder from `models`, wrapped in
    the harness's sparse-native SearchProtocol model (encodings cached under the cache dir).
    """
    import mteb

    from harness.results import AtomicResultCache, model_results_dir

    cache = AtomicResultCache(results_root)
    if cfg.model.kind == "bm25":
        model = mteb.get_model(BM25_MODEL)
        return model, cache, model_results_dir(cache, model.mteb_model_meta) / RECORD_SUBDIR

    import models
    from harness.search import SparseSearchModel

    meta = models.model_meta(cfg.model)
    if cfg.search.name != "exact":  # approximate search gives other numbers: another variant
        meta = meta.model_copy(update={"name": f"{meta.name}-{cfg.search.name}"})
    stats_dir = model_results_dir(cache, meta) / RECORD_SUBDIR
    encoder = models.build_encoder(cfg.model)
    top_k_query, top_k_document = check_top_k(cfg.model)
    enc_cache = Path(cfg.run.cache_dir) if cfg.run.cache_dir else cache_dir()
    model = SparseSearchModel(
        encoder,
        meta,
        top_k_query=top_k_query,
        top_k_document=top_k_document,
        backend=OmegaConf.to_container(cfg.search, resolve=True),
        cache_dir=enc_cache / "encodings",
        stats_dir=stats_dir,
        batch_size=int(cfg.run.batch_size),
        show_progress=bool(cfg.run.show_progress),
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
    """Evaluate `cfg.model` on `cfg.benchmark`; results land in mteb's layout under run.results_dir."""
    if offline is None:
        offline = configure_offline(cfg.run.hub)
    import mteb

    from harness.results import write_run_record
    from harness.tasks import load_tasks

    check_config(cfg)
    tasks = load_tasks(cfg.benchmark, only=cfg.run.tasks)
    if not tasks:
        raise ValueError(f"benchmark '{cfg.benchmark.name}' selects no task")
    results_root = Path(cfg.run.results_dir).resolve()
    model, cache, out_dir = build_model(cfg, results_root)
    meta = model.mteb_model_meta
    logger.info("model %s (revision %s) on %d task(s) → %s", meta.name, meta.revision, len(tasks), out_dir)
    start = time.time()
    result = mteb.evaluate(
        model,
        tasks,
        cache=cache,
        overwrite_strategy=cfg.run.overwrite,
        encode_kwargs={"batch_size": int(cfg.run.batch_size)},
        show_progress_bar=bool(cfg.run.show_progress),
    )
    write_run_record(
        out_dir,
        OmegaConf.to_yaml(cfg, resolve=True),
        {"model_name": meta.name, "revision": meta.revision, "offline": offline,
         "tasks": [t.metadata.name for t in tasks], "seconds": round(time.time() - start, 1)},
    )
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
