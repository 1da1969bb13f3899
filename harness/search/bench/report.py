"""The search benchmark's report: `results/bench/search.md`, the headline keys of
`search.json` and the cost-growth figure, from the record `benchmarks/bench_search.py` measures
(and `--render` re-reads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.search.backends import defaults
from harness.search.exact import SELECT_BLOCK

#: Targets of issue 16: exact search at 200k documents, Seismic's recall and speed-up at 1M.
EXACT_TARGET_MS = 0.5
RECALL_TARGET = 0.99
SPEEDUP_TARGET = 3.0


def scale_builds(path: Path) -> list[dict[str, Any]]:
    """The records of `--only-seismic` runs in `path`, one per (build, queries, exact kernel)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data.get("builds", [data])


def with_scale(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """`report` with the Seismic-at-scale records of `--only-seismic` (if any were written), the
    best (build, search) setting per size beside the cost-growth row of the same size."""
    builds = scale_builds(out / "search_seismic_scale.json")
    if not builds:
        return report
    best = best_seismic(builds)
    growth = [{**g, "seismic": best[g["docs"]]} if g["docs"] in best else g for g in report["growth"]]
    return {**report, "growth": growth, "seismic_scale": builds}


def best_seismic(builds: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per size: the fastest (build, search) setting with recall@10 >= RECALL_TARGET, else the
    most accurate one; the size's entry, the row and its `build_setting`."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for record in builds:
        for e in record["sizes"]:
            rows.setdefault(e["docs"], []).extend(
                {**e, **r, "build_setting": record["build"]} for r in e["rows"]
            )
    best = {}
    for n, candidates in rows.items():
        good = [r for r in candidates if r["recall_at_10"] >= RECALL_TARGET]
        best[n] = (
            max(good, key=lambda r: r["speedup_vs_exact"])
            if good
            else max(candidates, key=lambda r: (r["recall_at_10"], r["speedup_vs_exact"]))
        )
    return best


#: Exact variants besides term-at-a-time, as (report key, label).
VARIANTS = (("maxscore", "MaxScore"), ("windowed", "windowed (block-max top-k)"))


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable headline figures (SPLARE-shaped data; CPU ms of one thread)."""
    at = {g["docs"]: g for g in report["growth"]}
    g200, g1m = at.get(200_000), at.get(1_000_000)
    best = (
        min((key for key, _ in VARIANTS), key=lambda key: g200[key]["cpu_ms_per_query"])
        if g200
        else None
    )
    seismic = (g1m or {}).get("seismic")
    return {
        "exact_method": f"exact pruning={best}, fastest of {[k for k, _ in VARIANTS]} at 200k"
        if best
        else None,
        "exact_ms_per_query_200k": g200[best]["cpu_ms_per_query"] if g200 else None,
        "exact_speedup_vs_taat": g200[f"{best}_speedup_vs_taat"] if g200 else None,
        "seismic_speedup_vs_exact_1m": seismic["speedup_vs_exact"] if seismic else None,
        "seismic_recall_at_10_1m": seismic["recall_at_10"] if seismic else None,
        "seismic_setting_1m": (
            {
                **seismic["build_setting"],
                "query_cut": seismic["query_cut"],
                "heap_factor": seismic["heap_factor"],
            }
            if seismic
            else None
        ),
    }

def findings(report: dict[str, Any]) -> list[str]:
    """Conclusions computed from the tables above."""
    growth = report["growth"]
    lines = []
    for key, label in VARIANTS:
        ratios = [g[f"{key}_speedup_vs_taat"] for g in growth]
        same = all(
            g[f"{key}_identical_to_taat"].split("/")[0] == g[f"{key}_identical_to_taat"].split("/")[1]
            for g in growth
        )
        lines.append(
            f"- Exact {label}: {'the same' if same else 'NOT always the same'} top-10 as "
            f"term-at-a-time, bit for bit, on every query of the cost-growth data; CPU-time speed "
            f"relative to term-at-a-time {min(ratios):.2f}x to {max(ratios):.2f}x over "
            f"{growth[0]['docs']:,}-{growth[-1]['docs']:,} documents."
        )
    at = {g["docs"]: g for g in growth}
    g200 = at.get(200_000)
    if g200 and "block_bound_survival" in g200:
        surv = g200["block_bound_survival"]
        lines.append(
            "- Block-max upper bounds (BMP, block-max WAND) cannot skip on this data: at 200,000 "
            "documents the share of blocks whose bound exceeds the exact 10th score is "
            + ", ".join(f"{100 * v:.1f}% (blocks of {b})" for b, v in surv.items())
            + ". Weights are flat (log1p values of the top-400 within a factor ~1.5) and rows "
            "independent, so the 10th score is reached by counting shared terms, and a block of "
            "even 4 documents holds enough of the query's terms to pass. MaxScore fails for the "
            "same reason: the bounds of the terms left exceed the 10th score until the last few."
        )
    best = headline(report)
    if best["exact_ms_per_query_200k"] is not None:
        ms = best["exact_ms_per_query_200k"]
        lines.append(
            f"- Target of issue 16 (<= {EXACT_TARGET_MS} ms/query exact at 200k documents, one "
            f"thread): {'met' if ms <= EXACT_TARGET_MS else 'NOT met'}, {ms:.3f} CPU ms/query "
            f"({best['exact_method']}), {best['exact_speedup_vs_taat']:.1f}x term-at-a-time, "
            f"which reads {g200['postings_per_query']:,.0f} postings per query there. The "
            "windowed kernel reads the same postings, so the difference, "
            f"{g200['taat']['cpu_ms_per_query'] - ms:.2f} ms/query, is the top-k selection: the "
            "plain kernel offers each of the 200,000 accumulator slots to a heap, the windowed "
            f"one compares {SELECT_BLOCK}-slot block maxima, in two vectorised levels, and offers "
            "only the blocks that can enter. The configured default is "
            f"`pruning: {defaults('exact')['pruning']}`."
        )
    builds = report.get("seismic_scale")
    if builds:
        for n, row in sorted(best_seismic(builds).items()):
            verdict = (
                "meets"
                if row["recall_at_10"] >= RECALL_TARGET and row["speedup_vs_exact"] >= SPEEDUP_TARGET
                else "misses"
            )
            lines.append(
                f"- Seismic at {n:,} documents, best of the settings built: "
                f"{build_text(row['build_setting'])} ({row['kept_postings'] / row['postings']:.0%} "
                f"of the postings kept), query_cut {row['query_cut']} / heap_factor "
                f"{row['heap_factor']}: recall@10 {row['recall_at_10']:.3f} at "
                f"{row['speedup_vs_exact']:.2f}x the speed of exact search "
                f"({builds[0]['exact_pruning']}); it {verdict} the target (recall@10 >= "
                f"{RECALL_TARGET}, >= {SPEEDUP_TARGET:g}x). Its build: "
                f"{row['build_cpu_s'] / 60:.0f} CPU-min, "
                f"{row['build_cpu_s_per_million_docs'] / 3600:.1f} CPU-hours per million documents "
                f"at this setting, {row['index_mb']:,.0f} MB of index."
            )
    sw = report.get("seismic_sweep")
    if sw:
        good = [r for r in sw["rows"] if r["recall_at_10"] >= RECALL_TARGET]
        top = max(good, key=lambda r: r["speedup_vs_exact"]) if good else None
        per_posting = [r["build_cpu_us_per_kept_posting"] for r in sw["rows"]]
        index_bytes = [r["index_mb"] * 2**20 / r["kept_postings"] for r in sw["rows"]]
        lines.append(
            f"- Seismic (pyseismic-lsr, one thread) at {sw['docs']:,} SPLARE-shaped documents: "
            + (
                f"the fastest setting with recall@10 >= {RECALL_TARGET} ran at "
                f"{top['speedup_vs_exact']:.2f}x the CPU speed of exact term-at-a-time "
                f"(query_cut {top['query_cut']}, heap_factor {top['heap_factor']}, n_postings "
                f"{top['n_postings']}); "
                if top
                else f"no setting reached recall@10 {RECALL_TARGET}; "
            )
            + f"its build cost {min(per_posting):.0f}-{max(per_posting):.0f} CPU µs and its "
            f"index {min(index_bytes):.0f}-{max(index_bytes):.0f} bytes per posting it keeps "
            "(clustering and summaries over whole 400-entry document vectors), so build time and "
            "memory grow with the postings kept, not per document."
        )
        if sw.get("postings"):
            pruned = {}
            for r in sw["rows"]:
                share = r["kept_postings"] / sw["postings"]
                if share < 0.95:
                    pruned[share] = max(pruned.get(share, 0.0), r["recall_at_10"])
            if pruned:
                lines.append(
                    "- Seismic's posting pruning on flat weights: keeping "
                    + ", ".join(
                        f"{share:.0%} of the postings gave recall@10 <= {rec:.3f}"
                        for share, rec in sorted(pruned.items(), reverse=True)
                    )
                    + " at any query_cut / heap_factor measured. Its default budget (n_postings "
                    f"x dimensions in use) would keep {report['seismic_kept_share_1m']:.0%} of the "
                    "postings of 1M SPLARE-shaped documents (expected from the profile), so "
                    f"recall@10 >= {RECALL_TARGET} at 1M needs nearly all of them kept: at the "
                    "measured build cost and index bytes per kept posting, hours of CPU and more "
                    "memory than this machine has (Seismic at scale, above, keeps fewer)."
                )
    return lines


def build_text(build: dict[str, Any]) -> str:
    """Seismic build overrides as `name value, ...`."""
    return ", ".join(f"{key} {value}" for key, value in build.items())


def fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {**headline(report), **report}
    (out / "search.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [
        "# Sparse search benchmark",
        "",
        f"Command: `{report['command']}` ({report['total_s'] / 60:.0f} min) on {report['machine']},",
        (
            f"{report['cpus']} CPUs shared with other jobs (load average at start "
            f"{report['load_average_at_start'][0]:.1f}). Search only, one thread, top-10. Times "
            "are CPU time of the searching thread (`time.process_time`), which leaves out the "
            "time other jobs held the core; wall times are in search.json. Ratios come from the "
            "same run."
        ),
        "",
        "## Data",
        "",
        "Profiles measured on real encodings (`benchmarks/search_encode_real.py`, Cranfield +",
        "dataset_build passages, top-k 400/40), then generated at scale by",
        "`harness.search.bench.data.generate` (frequency curve matched by rank fraction,",
        "independent rows: no topical clustering). Frequency curve = df / mean density at rank",
        "fractions 0.01%, 0.1%, 1%, 5%, 10%, 25%, 50%:",
        "",
        "| model | real docs / queries | source dim | generated dim | df curve |",
        "|---|---|---:|---:|---|",
    ]
    for m, info in report["profiles"].items():
        curve = ", ".join(f"{v:.2f}" for v in info["doc_df_curve"])
        lines.append(
            f"| {m} | {info['docs']} / {info['queries']} | {info['dim']:,} | {info['generated_dim']:,} | "
            f"{curve} |"
        )
    lines += ["", "## Real encodings: exact TAAT vs MaxScore vs windowed (CPU ms/query)", ""]
    lines += [
        (
            "| model | docs | queries | nnz doc / query | postings/query | TAAT | MaxScore "
            "| windowed | identical to TAAT (MaxScore / windowed) | = brute force |"
        ),
        "|---|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for m, r in report["real"].items():
        lines.append(
            f"| {m} | {r['docs']} | {r['queries']} | {r['avg_nnz_doc']:.0f} / "
            f"{r['avg_nnz_query']:.0f} | {r['postings_per_query']:.0f} | "
            f"{r['taat']['cpu_ms_per_query']:.3f} | {r['maxscore']['cpu_ms_per_query']:.3f} | "
            f"{r['windowed']['cpu_ms_per_query']:.3f} | {r['maxscore_identical_to_taat']} / "
            f"{r['windowed_identical_to_taat']} | {r['maxscore_equals_brute_force']} / "
            f"{r['windowed_equals_brute_force']} |"
        )
    lines += [
        "",
        "## Cost growth, SPLARE-shaped (131,072 dims), CPU ms/query",
        "",
        (
            "| docs | postings/query | TAAT | MaxScore | windowed | MaxScore vs TAAT "
            "| windowed vs TAAT | identical (MaxScore / windowed) | = brute force "
            "| exact index MB | Seismic ms/q | Seismic recall@10 | Seismic MB |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for g in report["growth"]:
        s = g.get("seismic") or {}
        brute = (
            f"{g['maxscore_equals_brute_force']} / {g['windowed_equals_brute_force']}"
            if "maxscore_equals_brute_force" in g
            else "–"
        )
        lines.append(
            f"| {g['docs']:,} | {g['postings_per_query']:.0f} | "
            f"{g['taat']['cpu_ms_per_query']:.3f} | {g['maxscore']['cpu_ms_per_query']:.3f} | "
            f"{g['windowed']['cpu_ms_per_query']:.3f} | {g['maxscore_speedup_vs_taat']:.2f}x | "
            f"{g['windowed_speedup_vs_taat']:.2f}x | {g['maxscore_identical_to_taat']} / "
            f"{g['windowed_identical_to_taat']} | {brute} | {g['taat']['index_mb']:.0f} | "
            f"{fmt(s.get('cpu_ms_per_query'), '.3f')} | {fmt(s.get('recall_at_10'), '.4f')} | "
            f"{fmt(s.get('index_mb'), '.0f')} |"
        )
    lines += ["", "![cost growth](search_growth.png)", ""]
    lines += [
        "## Latent vs vocabulary vectors at equal top-k (400 / 40), CPU ms/query",
        "",
        "| model | dim | docs | nnz doc / query | FLOPS | postings/query | TAAT | MaxScore | windowed |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for m, r in report["latent_vs_vocabulary"].items():
        lines.append(
            f"| {m} | {r['dim']:,} | {r['docs']:,} | {r['avg_nnz_doc']:.0f} / "
            f"{r['avg_nnz_query']:.0f} | {r['flops']:.2f} | {r['postings_per_query']:.0f} | "
            f"{r['taat']['cpu_ms_per_query']:.3f} | {r['maxscore']['cpu_ms_per_query']:.3f} | "
            f"{r['windowed']['cpu_ms_per_query']:.3f} |"
        )
    lines += [
        "",
        "FLOPS = expected shared active dimensions per (query, document) pair (SPLADE's measure).",
        "Paper (arXiv 2603.13277, as cited in issue 16): SPLARE-7B with Seismic about 5 ms/query on",
        "8.8M MS MARCO passages; published Seismic figures for SPLADE on MS MARCO are about",
        "0.2 ms/query on one thread. Neither was reproducible here (see the Seismic sweep).",
    ]
    st = report["stock"]
    stock = st["mteb_stock_cpu_ms_per_query"]
    lines += [
        "",
        f"## mteb stock sparse path ({st['docs']:,} SPLARE-shaped docs, {st['queries']} queries)",
        "",
        (
            f"CPU ms/query: mteb stock {stock:.2f} (its torch calls may use more than one thread); "
            + "; ".join(
                f"{label} {st[f'{key}_cpu_ms_per_query']:.3f} "
                f"({stock / st[f'{key}_cpu_ms_per_query']:.0f}x faster than stock)"
                for key, label in (("taat", "TAAT"), *VARIANTS)
            )
            + f". Stock top-10 equals exact on {st['stock_equals_taat']} queries."
        ),
    ]
    sw = report.get("seismic_sweep")
    if sw:
        lines += [
            "",
            (
                f"## Seismic sweep ({sw['docs']:,} SPLARE-shaped docs, {sw['queries']} queries; exact "
                f"TAAT {sw['exact_taat']['cpu_ms_per_query']:.3f} CPU ms/q in the same run)"
            ),
            "",
            (
                "| n_postings | max_fraction | centroid_fraction | summary_energy | query_cut "
                "| heap_factor | CPU ms/q | recall@10 | speedup vs exact | kept postings "
                "| build CPU s | build CPU µs / kept posting | index MB |"
            ),
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sw["rows"]:
            kept = r["kept_postings"] / sw["postings"] if sw.get("postings") else None
            lines.append(
                f"| {r['n_postings']} | {r.get('max_fraction', defaults('seismic')['max_fraction'])} "
                f"| {r['centroid_fraction']} | {r['summary_energy']} | "
                f"{r['query_cut']} | {r['heap_factor']} | {r['cpu_ms_per_query']:.3f} | "
                f"{r['recall_at_10']:.4f} | {r['speedup_vs_exact']:.2f}x | "
                f"{r['kept_postings']:,}{f' ({kept:.0%})' if kept else ''} | "
                f"{r['build_cpu_s']:.0f} | "
                f"{r['build_cpu_us_per_kept_posting']:.0f} | {r['index_mb']:.0f} |"
            )
        lines += ["", f"Sweep command: `{sw.get('command', report['command'])}`."]
    builds = report.get("seismic_scale")
    if builds:
        lines += [
            "",
            (
                f"## Seismic at scale (SPLARE-shaped, {builds[0]['queries']} queries; build "
                "settings over the configured defaults)"
            ),
            "",
            (
                "| docs | build | kept postings | build CPU min | build peak MB | index MB "
                f"| exact ({builds[0]['exact_pruning']}) ms/q | TAAT ms/q | query_cut "
                "| heap_factor | Seismic ms/q | recall@10 | speedup vs exact |"
            ),
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        entries = sorted(
            ((e, record["build"]) for record in builds for e in record["sizes"]),
            key=lambda pair: (pair[0]["docs"], build_text(pair[1])),
        )
        for e, build in entries:
            for r in e["rows"]:
                lines.append(
                    f"| {e['docs']:,} | {build_text(build)} | {e['kept_postings']:,} "
                    f"({e['kept_postings'] / e['postings']:.0%}) | {e['build_cpu_s'] / 60:.1f} | "
                    f"{e['build_peak_mb']:,.0f} | {e['index_mb']:,.0f} | "
                    f"{e['exact']['cpu_ms_per_query']:.3f} | {e['taat']['cpu_ms_per_query']:.3f} "
                    f"| {r['query_cut']} | {r['heap_factor']} | {r['cpu_ms_per_query']:.3f} | "
                    f"{r['recall_at_10']:.4f} | {r['speedup_vs_exact']:.2f}x |"
                )
        commands = [c for record in builds for c in record.get("commands") or [record["command"]]]
        lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands) + "."]
    lines += ["", "## Findings", "", *findings(report)]
    lines += ["", "## Headline", "", "```json", json.dumps(headline(report), indent=1), "```"]
    (out / "search.md").write_text("\n".join(lines) + "\n")
    plot_growth(report, out / "search_growth.png")
    print(f"wrote {out / 'search.md'}")


def plot_growth(report: dict[str, Any], path: Path) -> None:
    """Log-log CPU ms/query and index MB against documents: one line per exact kernel (TAAT and
    windowed share one index) and one per Seismic build, at its most accurate search setting
    (recall@10 range in the legend); the legend sits below the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    growth = report["growth"]
    n = [g["docs"] for g in growth]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for key, label in (("taat", "exact TAAT"), *((k, f"exact {v}") for k, v in VARIANTS)):
        axes[0].plot(n, [g[key]["cpu_ms_per_query"] for g in growth], "o-", label=label)
        axes[1].plot(n, [g[key]["index_mb"] for g in growth], "o-", label=label)
    for record in report.get("seismic_scale") or []:
        sizes = record["sizes"]
        rows = [max(e["rows"], key=lambda r: r["recall_at_10"]) for e in sizes]
        recalls = [r["recall_at_10"] for r in rows]
        span = (
            f"{min(recalls):.2f}-{max(recalls):.2f}" if len(rows) > 1 else f"{recalls[0]:.3f}"
        )
        label = f"Seismic {build_text(record['build'])} (recall@10 {span})"
        docs = [e["docs"] for e in sizes]
        axes[0].plot(docs, [r["cpu_ms_per_query"] for r in rows], "s--", label=label)
        axes[1].plot(docs, [e["index_mb"] for e in sizes], "s--", label=label)
    for ax, ylabel in zip(axes, ("CPU ms / query (1 thread)", "index MB"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents (SPLARE-shaped, 131,072 dims)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
