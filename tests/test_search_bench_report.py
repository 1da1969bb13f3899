"""The search benchmark's report logic: which Seismic setting is reported, the headline keys, and
the merging of at-scale records (`harness.search.bench.report`), on hand-written records."""

from __future__ import annotations

import json
from pathlib import Path

from harness.search.bench.report import best_seismic, headline, scale_builds, with_scale


def size_entry(docs: int, rows: list[tuple[float, float, int]]) -> dict:
    """An at-scale entry; rows are (recall@10, speed-up vs exact, query_cut)."""
    return {
        "docs": docs,
        "postings": 1000,
        "kept_postings": 100,
        "index_mb": 1.0,
        "rows": [
            {"query_cut": qc, "heap_factor": 0.9, "recall_at_10": rec, "speedup_vs_exact": up,
             "cpu_ms_per_query": 1.0 / up}
            for rec, up, qc in rows
        ],
    }  # fmt: skip


def growth_row(docs: int, taat: float, maxscore: float, windowed: float) -> dict:
    row = {"docs": docs}
    for key, ms in (("taat", taat), ("maxscore", maxscore), ("windowed", windowed)):
        row[key] = {"cpu_ms_per_query": ms}
        if key != "taat":
            row[f"{key}_speedup_vs_taat"] = taat / ms
    return row


def test_best_seismic_prefers_the_fastest_setting_that_reaches_the_recall_target():
    builds = [
        {"build": {"n_postings": 100},
         "sizes": [size_entry(1000, [(0.5, 9.0, 10), (0.98, 2.0, 20)]),
                   size_entry(2000, [(0.995, 1.5, 40)])]},
        {"build": {"n_postings": 900},
         "sizes": [size_entry(1000, [(0.99, 0.5, 10), (0.999, 0.8, 20)])]},
    ]  # fmt: skip
    best = best_seismic(builds)
    # 1000 docs: two settings reach 0.99; the faster (0.8x) wins over the faster but inaccurate 9x
    assert (best[1000]["speedup_vs_exact"], best[1000]["build_setting"]) == (0.8, {"n_postings": 900})
    assert best[2000]["query_cut"] == 40
    # none reaches the target: the most accurate is reported, not the fastest
    only_bad = [{"build": {"n_postings": 5}, "sizes": [size_entry(10, [(0.3, 4.0, 10), (0.6, 0.2, 40)])]}]
    assert best_seismic(only_bad)[10]["recall_at_10"] == 0.6


def test_headline_keys_come_from_the_200k_and_1m_rows(tmp_path: Path):
    report = {"growth": [growth_row(200_000, 4.0, 2.0, 0.5), growth_row(1_000_000, 20.0, 11.0, 2.5)]}
    out = tmp_path
    record = {"build": {"n_postings": 300}, "queries": 5, "exact_pruning": "windowed",
              "commands": ["c"], "sizes": [size_entry(1_000_000, [(0.25, 0.3, 40), (0.1, 0.8, 10)])]}  # fmt: skip
    (out / "search_seismic_scale.json").write_text(json.dumps({"builds": [record]}))
    top = headline(with_scale(report, out))
    assert top["exact_ms_per_query_200k"] == 0.5 and top["exact_method"].startswith(
        "exact pruning=windowed"
    )
    assert top["exact_speedup_vs_taat"] == 8.0
    assert (top["seismic_recall_at_10_1m"], top["seismic_speedup_vs_exact_1m"]) == (0.25, 0.3)
    assert top["seismic_setting_1m"] == {"n_postings": 300, "query_cut": 40, "heap_factor": 0.9}
    # without at-scale records the Seismic keys are null, not invented
    assert headline(report)["seismic_recall_at_10_1m"] is None


def test_scale_builds_reads_the_single_record_layout_too(tmp_path: Path):
    path = tmp_path / "scale.json"
    assert scale_builds(path) == []
    single = {"build": {"n_postings": 1}, "command": "c", "sizes": []}
    path.write_text(json.dumps(single))
    assert scale_builds(path) == [single]
    path.write_text(json.dumps({"builds": [single, single]}))
    assert len(scale_builds(path)) == 2
