"""Sparse search benchmark (`make bench-search`) on data shaped like the models' vectors.

Data: the latent / vocabulary profiles in `results/bench/search_profile_<model>.npz` (measured by
`benchmarks/search_encode_real.py` on real encodings) drive `harness.search.bench.data.generate`:
SPLARE-shaped vectors at 131,072 dimensions (`splare_tiny`), vocabulary-head vectors at 262,144
(`splade_tiny_llm`) and BERT-tiny SPLADE vectors at 30,522 (`splade_tiny`), top-k 400 / 40.

Parts, all single-threaded search, top-10:
1. the real encodings themselves: exact term-at-a-time (TAAT) vs exact MaxScore, vs brute force;
2. cost growth on SPLARE-shaped data (100k ... 1M documents): ms/query and index size per backend;
3. latent vs vocabulary vectors at equal top-k: FLOPS, postings read, ms/query;
4. mteb's stock sparse path on a slice it can finish, against both exact kernels;
5. a Seismic sweep over build and search parameters against exact search on the same documents;
6. (`--only-seismic SIZES`, a separate process) Seismic at scale with an affordable build budget.

Writes `results/bench/search.json`, `results/bench/search.md` and `results/bench/search_growth.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from harness.paths import cache_dir
from harness.search.backends import BackendConfig, defaults
from harness.search.bench.data import SparseProfile, df_curve, generate
from harness.search.bench.measure import (
    block_bound_survival,
    brute_force,
    identical,
    measured,
    mteb_stock_search,
    postings_per_query,
    recall_at,
    timed_backend,
)
from harness.search.bench.report import scale_builds, with_scale, write_report
from harness.search.stats import avg_nnz, flops

REPO = Path(__file__).resolve().parent.parent
K = 10
#: model config -> width of its generated vectors (SPLARE at the paper's 131,072 latents).
MODELS = {"splare_tiny": 131_072, "splade_tiny_llm": 262_144, "splade_tiny": 30_522}
TAAT = {"name": "exact", "pruning": "none", "num_threads": 1}
MAXSCORE = {"name": "exact", "pruning": "maxscore", "num_threads": 1}
WINDOWED = {"name": "exact", "pruning": "windowed", "num_threads": 1}
#: Block sizes (documents) whose block-max upper bounds are tested at 200k documents.
BOUND_BLOCKS = (4, 8, 16, 32, 64)
#: Seismic sweep: build settings x search settings (names are Seismic's own). Seismic keeps the
#: n_postings x (dimensions in use) largest postings overall, at most n_postings x max_fraction per
#: list: the last two settings keep about 40% and 20% of the postings of the sweep's 4,000
#: documents, as n_postings 1000 would of 1M documents, to see what recall survives that pruning.
#: The two with summary_energy 0.1 keep every posting with smaller summaries (the index's bulk).
SWEEP_BUILD = (
    {"n_postings": 1000, "centroid_fraction": 0.1, "summary_energy": 0.4},
    {"n_postings": 2000, "centroid_fraction": 0.05, "summary_energy": 0.5},
    {"n_postings": 1000, "centroid_fraction": 0.1, "summary_energy": 0.1},
    {"n_postings": 1000, "centroid_fraction": 0.02, "summary_energy": 0.1},
    {"n_postings": 10, "centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 50.0},
    {"n_postings": 5, "centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 100.0},
)
SWEEP_SEARCH = ((10, 0.9), (20, 0.9), (40, 0.9), (40, 1.0))


def same_as_brute_force(exact, reference) -> int:
    """Queries whose exact top-k equals the float64 brute force: same ids, or (float32 ties) the
    same scores within 1e-5."""
    same = 0
    for da, sa, db, sb in zip(
        exact.doc_idx, exact.scores, reference.doc_idx, reference.scores, strict=True
    ):
        if np.array_equal(da, db) or (
            np.array_equal(da >= 0, db >= 0) and np.allclose(sa, sb, rtol=1e-5)
        ):
            same += 1
    return same


def exact_pair(docs, queries, check_brute_force: bool, bounds: bool = False) -> dict[str, Any]:
    """TAAT, MaxScore and windowed TAAT on the same data: timings (speedups from CPU time),
    identity to TAAT, (optionally) brute force and the block-max bound survival."""
    taat, row_taat = timed_backend(TAAT, docs, queries, K)
    out: dict[str, Any] = {"taat": row_taat, "postings_per_query": postings_per_query(docs, queries)}
    results = {}
    for key, node in (("maxscore", MAXSCORE), ("windowed", WINDOWED)):
        results[key], out[key] = timed_backend(node, docs, queries, K)
        out[f"{key}_speedup_vs_taat"] = row_taat["cpu_ms_per_query"] / out[key]["cpu_ms_per_query"]
        out[f"{key}_identical_to_taat"] = f"{identical(taat, results[key])}/{queries.shape[0]}"
    if check_brute_force:
        reference = brute_force(docs, queries, K)
        for key, top in results.items():
            out[f"{key}_equals_brute_force"] = (
                f"{same_as_brute_force(top, reference)}/{queries.shape[0]}"
            )
        if bounds:
            kth = reference.scores[:, K - 1]
            out["block_bound_survival"] = {
                str(b): block_bound_survival(docs, queries, kth, b) for b in BOUND_BLOCKS
            }
    return out


def shape_of(docs, queries) -> dict[str, Any]:
    return {
        "docs": docs.shape[0],
        "queries": queries.shape[0],
        "dim": docs.shape[1],
        "avg_nnz_doc": avg_nnz(docs),
        "avg_nnz_query": avg_nnz(queries),
        "flops": flops(queries, docs),
    }


def real_part(profiles: dict[str, SparseProfile]) -> dict[str, Any]:
    """Part 1: the cached real encodings of `search_encode_real.py`."""
    out = {}
    for model in profiles:
        folder = cache_dir() / "search_bench"
        paths = [folder / f"real_{model}_{side}.npz" for side in ("docs", "queries")]
        if not all(p.exists() for p in paths):
            print(f"real {model}: no cached encodings in {folder}, skipped", flush=True)
            continue
        docs, queries = (sp.load_npz(p).tocsr() for p in paths)
        for m in (docs, queries):
            m.sort_indices()
        out[model] = {**shape_of(docs, queries), **exact_pair(docs, queries, True)}
        print(f"real {model}: {json.dumps(out[model])}", flush=True)
    return out


def seismic_kept_share(profile: SparseProfile, dim: int, n_docs: int) -> float:
    """Expected share of the postings of `n_docs` generated documents that Seismic's default
    pruning keeps: the n_postings x (dimensions in use) largest, at most n_postings x
    max_fraction per list (from the expected document frequencies; weights are flat, so the cap
    and the budget decide)."""
    conf = defaults("seismic")
    df = n_docs * profile.probabilities("document", dim)
    used = float((1 - np.exp(-df)).sum())
    capped = float(np.minimum(df, conf["n_postings"] * conf["max_fraction"]).sum())
    return min(capped, conf["n_postings"] * used) / float(df.sum())


def seismic_node(**overrides) -> dict[str, Any]:
    node = {"name": "seismic", **defaults("seismic"), **overrides}
    node["num_threads"] = 1
    node["recall_vs_exact"] = False
    return node


def seismic_sweep(profile: SparseProfile, dim: int, n_docs: int, n_queries: int) -> dict[str, Any]:
    """Part 5: every build setting of SWEEP_BUILD with every search setting of SWEEP_SEARCH."""
    docs = generate(profile, "document", n_docs, dim, seed=0)
    queries = generate(profile, "query", n_queries, dim, seed=1)
    exact, row = timed_backend(TAAT, docs, queries, K)
    rows = []
    for build in SWEEP_BUILD:
        config = BackendConfig.parse(seismic_node(**build))
        index, build_s, build_cpu, _ = measured(lambda c=config: c.build(docs))
        for query_cut, heap_factor in SWEEP_SEARCH:
            index.query_cut, index.heap_factor = query_cut, heap_factor
            top, seconds, cpu, _ = measured(lambda i=index: i.search(queries, K))
            rows.append(
                {
                    **build,
                    "query_cut": query_cut,
                    "heap_factor": heap_factor,
                    "ms_per_query": 1000 * seconds / n_queries,
                    "cpu_ms_per_query": 1000 * cpu / n_queries,
                    "recall_at_10": recall_at(exact, top, K),
                    "speedup_vs_exact": row["cpu_ms_per_query"] * n_queries / (1000 * cpu),
                    "build_s": build_s,
                    "build_cpu_s": build_cpu,
                    "kept_postings": index.kept_postings,
                    "build_cpu_us_per_kept_posting": 1e6 * build_cpu / max(index.kept_postings, 1),
                    "index_mb": index.nbytes / 2**20,
                }
            )
            print(f"sweep: {json.dumps(rows[-1])}", flush=True)
        del index
    return {
        "docs": n_docs,
        "queries": n_queries,
        "dim": dim,
        "postings": int(docs.nnz),
        "exact_taat": row,
        "rows": rows,
    }


#: Seismic build at scale (`--only-seismic`, overridden by `--seismic-build`): the index costs
#: ~70-500 bytes and ~20-60 CPU µs of build per posting kept, most of it summaries of flat
#: 400-entry documents (the smaller figures with summary_energy 0.1; results/bench/search.md), so
#: with the default summaries the postings kept must stay near 10-20M here (24 GB).
SCALE_BUILD = {"n_postings": 120}


def seismic_at_scale(
    profile: SparseProfile, dim: int, sizes: list[int], n_queries: int, build: dict[str, Any],
    out: Path, command: str,
) -> dict[str, Any]:
    """Seismic with `build` overrides at each size, every SWEEP_SEARCH setting, against the
    configured exact kernel and term-at-a-time on the same documents; rewrites `out` after each
    size, so a run that is stopped keeps what it measured. `out` keeps one record per (build,
    queries, exact kernel): a run with the same ones adds its sizes (and command) to it."""
    queries = generate(profile, "query", n_queries, dim, seed=1)
    exact_node = {"name": "exact", "num_threads": 1, "pruning": defaults("exact")["pruning"]}
    record: dict[str, Any] = {"commands": [], "build": build, "queries": n_queries,
                              "exact_pruning": exact_node["pruning"], "sizes": []}  # fmt: skip
    builds = []
    for earlier in scale_builds(out):
        if all(earlier.get(key) == record[key] for key in ("build", "queries", "exact_pruning")):
            record["commands"] = earlier.get("commands") or [earlier["command"]]
            record["sizes"] = [e for e in earlier["sizes"] if e["docs"] not in sizes]
        else:
            builds.append(earlier)
    record["commands"].append(command)
    builds.append(record)
    for n in sizes:
        docs = generate(profile, "document", n, dim, seed=0)
        exact, row_exact = timed_backend(exact_node, docs, queries, K)
        row_taat = timed_backend(TAAT, docs, queries, K)[1]
        config = BackendConfig.parse(seismic_node(**build))
        index, build_s, build_cpu, peak = measured(lambda c=config, d=docs: c.build(d))
        entry = {"docs": n, "postings": int(docs.nnz), "exact": row_exact, "taat": row_taat,
                 "build_s": build_s, "build_cpu_s": build_cpu, "build_peak_mb": peak,
                 "kept_postings": index.kept_postings, "index_mb": index.nbytes / 2**20,
                 "build_cpu_s_per_million_docs": build_cpu * 1e6 / n, "rows": []}  # fmt: skip
        for query_cut, heap_factor in SWEEP_SEARCH:
            index.query_cut, index.heap_factor = query_cut, heap_factor
            top, _, cpu, _ = measured(lambda i=index: i.search(queries, K))
            entry["rows"].append({
                "query_cut": query_cut, "heap_factor": heap_factor,
                "cpu_ms_per_query": 1000 * cpu / n_queries, "recall_at_10": recall_at(exact, top, K),
                "speedup_vs_exact": row_exact["cpu_ms_per_query"] * n_queries / (1000 * cpu),
            })  # fmt: skip
        del index, docs
        record["sizes"] = sorted([*record["sizes"], entry], key=lambda e: e["docs"])
        out.write_text(json.dumps({"builds": builds}, indent=2))
        print(f"seismic at scale: {json.dumps(entry)}", flush=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,200000,500000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--compare-docs", type=int, default=200_000, help="latent vs vocabulary size")
    ap.add_argument("--sweep-docs", type=int, default=4_000, help="0 skips the Seismic sweep")
    ap.add_argument("--stock-docs", type=int, default=20_000)
    ap.add_argument("--stock-queries", type=int, default=50)
    ap.add_argument(
        "--only-sweep",
        action="store_true",
        help="run only the Seismic sweep into <out>/search_seismic_sweep.json (a separate process "
        "can run it beside the rest; the report then includes it)",
    )
    ap.add_argument(
        "--only-seismic",
        default="",
        help="sizes at which to build Seismic with --seismic-build (default SCALE_BUILD) into "
        "<out>/search_seismic_scale.json, alone (a separate process can run it beside the rest)",
    )
    ap.add_argument(
        "--seismic-build",
        type=json.loads,
        default=SCALE_BUILD,
        help='build parameters over the configured defaults, as JSON: \'{"n_postings": 300}\'',
    )
    ap.add_argument(
        "--render",
        action="store_true",
        help="only rewrite search.md/search.json from <out>/search.json and the sweep file",
    )
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    args = ap.parse_args()
    splare = SparseProfile.load(REPO / "results" / "bench" / "search_profile_splare_tiny.npz")
    kept_1m = seismic_kept_share(splare, MODELS["splare_tiny"], 1_000_000)
    if args.render:
        report = json.loads((args.out / "search.json").read_text())
        for m, info in report["profiles"].items():
            info.setdefault("generated_dim", MODELS[m])
        report["seismic_kept_share_1m"] = kept_1m
        sweep = args.out / "search_seismic_sweep.json"
        if sweep.exists():
            report["seismic_sweep"] = json.loads(sweep.read_text())
        write_report(with_scale(report, args.out), args.out)
        return
    began = time.perf_counter()
    profiles = {
        m: SparseProfile.load(REPO / "results" / "bench" / f"search_profile_{m}.npz")
        for m in MODELS
    }
    command = "python benchmarks/bench_search.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    splare, width = profiles["splare_tiny"], MODELS["splare_tiny"]
    if args.only_seismic:
        args.out.mkdir(parents=True, exist_ok=True)
        build = args.seismic_build
        unknown = sorted(set(build) - set(defaults("seismic")))
        if unknown:
            raise SystemExit(f"--seismic-build: unknown Seismic parameters {unknown}")
        sizes = [int(v) for v in args.only_seismic.split(",")]
        target = args.out / "search_seismic_scale.json"
        seismic_at_scale(splare, width, sizes, args.queries, build, target, command.strip())
        return
    if args.only_sweep:
        sweep = seismic_sweep(splare, width, args.sweep_docs, args.queries)
        sweep.update(command=command.strip(), total_s=time.perf_counter() - began)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "search_seismic_sweep.json").write_text(json.dumps(sweep, indent=2))
        return
    report: dict[str, Any] = {
        "command": command.strip(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "profiles": {
            m: {
                **p.info,
                "generated_dim": MODELS[m],
                "doc_df_curve": df_curve(p.doc_df, p.n_docs).tolist(),
            }
            for m, p in profiles.items()
        },
        "seismic_kept_share_1m": kept_1m,
    }
    report["real"] = real_part(profiles)
    queries = generate(splare, "query", args.queries, width, seed=1)
    growth = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        docs = generate(splare, "document", n, width, seed=0)
        entry = {"docs": n, **shape_of(docs, queries)}
        entry.update(exact_pair(docs, queries, True, bounds=n == 200_000))
        growth.append(entry)
        print(f"growth: {json.dumps(entry)}", flush=True)
        del docs
    report["growth"] = growth
    compare = {}
    for model, dim in MODELS.items():
        docs = generate(profiles[model], "document", args.compare_docs, dim, seed=0)
        q = generate(profiles[model], "query", args.queries, dim, seed=1)
        compare[model] = {**shape_of(docs, q), **exact_pair(docs, q, check_brute_force=False)}
        print(f"compare {model}: {json.dumps(compare[model])}", flush=True)
        del docs
    report["latent_vs_vocabulary"] = compare
    docs = generate(splare, "document", args.stock_docs, width, seed=0)
    q = queries[: args.stock_queries]
    taat, row_taat = timed_backend(TAAT, docs, q, K)
    row_ms = timed_backend(MAXSCORE, docs, q, K)[1]
    row_win = timed_backend(WINDOWED, docs, q, K)[1]
    stock_began, stock_cpu = time.perf_counter(), time.process_time()
    stock = mteb_stock_search(docs, q, K)
    stock_ms = 1000 * (time.perf_counter() - stock_began) / q.shape[0]
    stock_cpu_ms = 1000 * (time.process_time() - stock_cpu) / q.shape[0]
    report["stock"] = {
        "docs": args.stock_docs,
        "queries": q.shape[0],
        "mteb_stock_ms_per_query": stock_ms,
        "mteb_stock_cpu_ms_per_query": stock_cpu_ms,
        "taat_ms_per_query": row_taat["ms_per_query"],
        "maxscore_ms_per_query": row_ms["ms_per_query"],
        "windowed_ms_per_query": row_win["ms_per_query"],
        "taat_cpu_ms_per_query": row_taat["cpu_ms_per_query"],
        "maxscore_cpu_ms_per_query": row_ms["cpu_ms_per_query"],
        "windowed_cpu_ms_per_query": row_win["cpu_ms_per_query"],
        "stock_equals_taat": f"{same_as_brute_force(taat, stock)}/{q.shape[0]}",
    }
    print(f"stock: {json.dumps(report['stock'])}", flush=True)
    if args.sweep_docs:
        report["seismic_sweep"] = seismic_sweep(splare, width, args.sweep_docs, args.queries)
    elif (args.out / "search_seismic_sweep.json").exists():
        report["seismic_sweep"] = json.loads((args.out / "search_seismic_sweep.json").read_text())
    report["total_s"] = time.perf_counter() - began
    write_report(with_scale(report, args.out), args.out)


if __name__ == "__main__":
    main()
