"""bfloat16 measured, not assumed: the embedded SPLARE (Gemma-3-270M layer 9 + its SAE) in bf16
and in fp32 rank a real local task (XQuAD slices, two languages) nearly the same way.

The figure is printed: mean top-10 overlap over queries of the exact search with the paper's
top-k (40 per query, 400 per document). The tolerance, stated: at least 0.9.
"""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from harness.config import compose_config
from harness.paths import shared_data_root
from harness.search import SparseSearchModel
from harness.search.exact import ExactIndex
from harness.tasks import load_tasks
from models import build_encoder, model_meta
from models.spec import ModelSpec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets"),
]

MIN_OVERLAP = 0.9
DEPTH = 10


def _model(dtype: str) -> SparseSearchModel:
    cfg = compose_config(["model=splare_tiny", f"model.backbone.dtype={dtype}",
                          "model.backbone.max_length=160"])
    spec = ModelSpec.from_config(cfg.model)
    return SparseSearchModel(
        build_encoder(spec), model_meta(spec, None), top_k_query=spec.top_k_query,
        top_k_document=spec.top_k_document, backend=OmegaConf.to_container(cfg.search),
        cache_dir=None, stats_dir=None, batch_size=8, show_progress=False,
    )


def test_bf16_ranks_like_fp32_on_a_real_task():
    bench = compose_config([
        "benchmark=local_real", "benchmark.data_tasks=[{name:LocalXQuADRetrieval,subsets:[en,de]}]",
        "benchmark.slice_queries=10", "benchmark.slice_docs=30",
    ]).benchmark
    (task,) = load_tasks(bench)
    task.load_data()
    models = {dtype: _model(dtype) for dtype in ("float32", "bfloat16")}
    overlaps = []
    for subset, splits in task.dataset.items():
        split = splits["validation"]
        top = {}
        for dtype, model in models.items():
            where = {"task_name": task.metadata.name, "subset": subset, "split": "validation"}
            docs = model.encodings(split["corpus"], "document", **where)
            queries = model.encodings(split["queries"], "query", **where)
            top[dtype] = ExactIndex(docs, num_threads=1).search(queries, DEPTH).doc_idx
        for a, b in zip(top["float32"], top["bfloat16"], strict=True):
            overlaps.append(len(set(a[a >= 0]) & set(b[b >= 0])) / DEPTH)
    mean = float(np.mean(overlaps))
    print(f"\nbf16 vs fp32 top-{DEPTH} overlap on {task.metadata.name} [en, de]: {mean:.3f} "
          f"over {len(overlaps)} queries (tolerance: >= {MIN_OVERLAP})")
    assert mean >= MIN_OVERLAP
