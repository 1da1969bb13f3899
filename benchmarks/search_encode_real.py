"""Real encodings for the search benchmark: the embedded models over real local corpora.

Encodes Cranfield (../shared/datasets, read in place by the harness's `LocalCranfield`) and the
embedded `dataset_build` passages (`EmbeddedMultilingualRetrieval`, 8 languages) with one model
config of `conf/model/`, applies that config's top-k (400 per document, 40 per query), and saves
the CSR matrices to `<cache>/search_bench/real_<model>.npz` plus the small latent
document-frequency profile to `results/bench/search_profile_<model>.npz`
(`harness.search.bench.data.SparseProfile`).

    python benchmarks/search_encode_real.py --model splare_tiny --docs 800 --queries 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf

from harness.paths import cache_dir, shared_data_root
from harness.search.bench.data import SparseProfile
from harness.search.csr import top_k_rows, torch_sparse_to_csr

REPO = Path(__file__).resolve().parent.parent
#: Texts per encoder call: bounds the uncapped COO tensor (262k-wide rows for the LM head).
CHUNK = 16


def corpus_texts(n_docs: int, n_queries: int) -> tuple[list[str], list[str], list[str]]:
    """(documents, queries, source names): half from Cranfield, half from the dataset_build
    passages (spread evenly over its language subsets), in file order.

    Documents are title + text as mteb joins them.
    """
    from mteb._create_dataloaders import _retrieval_texts
    from mteb.types import PromptType

    from harness.tasks.local import get_local_task

    root = shared_data_root()
    if root is None:
        raise FileNotFoundError("no shared datasets folder: set HARNESS_DATA_ROOT")
    docs: list[str] = []
    queries: list[str] = []
    sources = ["LocalCranfield", "EmbeddedMultilingualRetrieval"]
    for i, name in enumerate(sources):
        task = get_local_task(name, None if name.startswith("Embedded") else root)
        task.load_data()
        parts = [(s, sp_) for s in task.hf_subsets for sp_ in task.eval_splits]
        for subset, split in parts:
            data = task.dataset[subset][split]
            share_d = -(-(n_docs - n_docs // 2 if i else n_docs // 2) // len(parts))
            share_q = -(-(n_queries - n_queries // 2 if i else n_queries // 2) // len(parts))
            docs += _retrieval_texts(data["corpus"], PromptType.document)[:share_d]
            queries += _retrieval_texts(data["queries"], PromptType.query)[:share_q]
    return docs[:n_docs], queries[:n_queries], sources


def encode(encoder, texts: list[str], side: str, dim: int, top_k: int) -> tuple[sp.csr_matrix, float]:
    """Top-k-capped CSR `[len(texts), dim]` of one side and the encoding seconds."""
    fn = encoder.encode_query if side == "query" else encoder.encode_document
    blocks, seconds = [], 0.0
    for start in range(0, len(texts), CHUNK):
        began = time.perf_counter()
        out = fn(
            texts[start : start + CHUNK],
            batch_size=8,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            save_to_cpu=True,
            show_progress_bar=False,
        )
        blocks.append(top_k_rows(torch_sparse_to_csr(out), top_k))
        seconds += time.perf_counter() - began
        print(f"  {side}: {start + CHUNK}/{len(texts)} ({seconds:.0f} s)", flush=True)
    return sp.vstack(blocks, format="csr"), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a conf/model/<name>.yaml")
    ap.add_argument("--docs", type=int, required=True)
    ap.add_argument("--queries", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import models

    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{args.model}.yaml")
    torch.set_num_threads(args.threads)
    docs, queries, sources = corpus_texts(args.docs, args.queries)
    encoder = models.build_encoder(cfg)
    probe = encoder.encode_document(["dimension probe"], convert_to_tensor=True)
    dim = int(probe.shape[-1])
    print(f"{args.model}: dim {dim}, {len(docs)} docs, {len(queries)} queries", flush=True)
    d, d_s = encode(encoder, docs, "document", dim, int(cfg.top_k.document))
    q, q_s = encode(encoder, queries, "query", dim, int(cfg.top_k.query))
    out = cache_dir() / "search_bench"
    out.mkdir(parents=True, exist_ok=True)
    sp.save_npz(out / f"real_{args.model}_docs.npz", d)
    sp.save_npz(out / f"real_{args.model}_queries.npz", q)
    info = {
        "model": args.model,
        "sources": sources,
        "dim": dim,
        "docs": d.shape[0],
        "queries": q.shape[0],
        "top_k": {"document": int(cfg.top_k.document), "query": int(cfg.top_k.query)},
        "encode_seconds": {"documents": d_s, "queries": q_s},
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/search_encode_real.py --model {args.model} "
        f"--docs {args.docs} --queries {args.queries} --threads {args.threads}",
    }
    profile = SparseProfile.from_encodings(d, q, info)
    path = profile.save(REPO / "results" / "bench" / f"search_profile_{args.model}.npz")
    print(json.dumps(info), f"avg nnz doc {d.nnz / d.shape[0]:.1f} query {q.nnz / q.shape[0]:.1f}")
    print(f"wrote {path}", np.round(profile.doc_df_quantiles(), 4))


if __name__ == "__main__":
    main()
