"""Reports on the runner's own output: reference transcription, variants from `variant.json`,
table builders, the leaderboard Δ table, LaTeX, figures and the CLI.

The fixture results (tests/fixtures/reports/results/) are written by `python -m harness` on tiny
models (`tests/fixtures/reports/regenerate.py`); expected numbers here are recomputed from the raw
JSON files, independently of mteb and of the report code.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from harness.paths import REPO_ROOT
from harness.reports import tables as T
from harness.reports.__main__ import main
from harness.reports.collect import load_measured
from harness.reports.efficiency import read_efficiency
from harness.reports.leaderboard import (
    FLAG,
    LEADERBOARD_CSV,
    delta_frame,
    leaderboard_table,
    load_leaderboard,
)
from harness.reports.reference import (
    REFERENCE_CSV,
    SHARED_CSV,
    load_paper_efficiency,
    load_reference,
    transcribe,
)
from harness.reports.render import latex_escape, to_latex
from harness.reports.search_cost import search_cost_table
from harness.reports.variants import Variant, paper_counterpart, paper_family, top_k_label

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
RESULTS = FIXTURES / "results"
SLICE = "(slice_8q_seed0_24d)"
EMBEDDED = f"EmbeddedMultilingualRetrieval {SLICE}"
XQUAD = f"LocalXQuADRetrieval {SLICE}"
OPENSEARCH = "opensearch-project/opensearch-neural-sparse-encoding-doc-v3-distill"
needs_leaderboard = pytest.mark.skipif(not LEADERBOARD_CSV.is_file(), reason="no shared leaderboard CSV")


def _regenerate_module():
    spec = importlib.util.spec_from_file_location("regenerate", FIXTURES / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def folders() -> dict[str, Path]:
    """mteb model name -> its (single) revision folder, read from the raw model_meta.json files."""
    out = {}
    for meta in (RESULTS / "results").glob("*/*/model_meta.json"):
        out[json.loads(meta.read_text())["name"]] = meta.parent
    return out


def raw_variant(name: str) -> dict:
    return json.loads((folders()[name] / "harness" / "variant.json").read_text())


def raw_task_score(name: str, task: str, metric: str = "ndcg_at_10") -> float:
    """Independent of mteb: mean of `metric` over every split/subset entry of the raw JSON, x100."""
    data = json.loads((folders()[name] / f"{task}.json").read_text())
    values = [entry[metric] for entries in data["scores"].values() for entry in entries]
    return 100 * sum(values) / len(values)


def raw_subsets(name: str, task: str, metric: str = "ndcg_at_10") -> dict[str, float]:
    data = json.loads((folders()[name] / f"{task}.json").read_text())
    return {e["hf_subset"]: 100 * e[metric] for es in data["scores"].values() for e in es}


def by_config(runs, config: str, **fields):
    """The fixture run of shipped config `config` whose Variant has `fields`."""
    (run,) = [r for r in runs if r.variant.config == config
              and all(getattr(r.variant, k) == v for k, v in fields.items())]
    return run


@pytest.fixture(scope="module")
def runs():
    return load_measured(RESULTS)


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def _row(table: T.Table, *labels: str) -> dict[str, T.Cell]:
    row = next(r for r in table.rows if [c.text for c in r[:len(labels)]] == list(labels))
    return dict(zip(table.header, row))


# reference -----------------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="shared reference CSV not present")
def test_reference_matches_shared_csv():
    with SHARED_CSV.open(newline="") as f:
        shared = list(csv.DictReader(f))
    committed = load_reference(REFERENCE_CSV)
    assert len(committed) == len(shared) == 192
    fresh = transcribe(SHARED_CSV)
    assert fresh.reset_index(drop=True).equals(committed.reset_index(drop=True))
    for raw, (_, row) in zip(shared, committed.iterrows()):
        assert f"table{row['table']}" == raw["paper_table"]
        assert row["value"] == pytest.approx(float(raw["value"]))
        assert row["source"] == f"arXiv 2603.13277v1 Table {row['table']}"


def test_reference_rejects_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("paper_table,model,benchmark,task,metric,value,setting\nT1,m,b,t,ndcg_at_10,1.0,\n")
    with pytest.raises(ValueError, match="'T1' is not of the form tableN"):
        transcribe(bad)
    bad.write_text("paper_table,model\n")
    with pytest.raises(ValueError, match="missing column"):
        transcribe(bad)


# the fixtures are the runner's output --------------------------------------------------------


def test_fixtures_hold_every_variant_the_script_runs(runs):
    regenerate = _regenerate_module()
    assert len(runs) == len(regenerate.variants()) == 11
    assert sorted(p.name for p in (FIXTURES / "runs").iterdir()) == sorted(regenerate.variants())
    for run in runs:
        assert run.variant.recorded and run.records, run.name
        assert all(r.command.startswith("python -m harness ") for r in run.records)
        assert set(run.results) == {EMBEDDED, XQUAD}
    text = "\n".join(p.read_text() for p in RESULTS.rglob("*.json"))
    assert str(REPO_ROOT) not in text and "/tmp/" not in text  # no machine paths in the records


def test_fresh_runner_output_has_the_committed_layout(tmp_path):
    """One variant regenerated now: same files (run ids aside) and variant fields as committed."""
    _regenerate_module().regenerate(tmp_path, only=["bm25"])

    def layout(root: Path) -> set[str]:
        folder = next((root / "results").glob("mteb__baseline-bm25s/*"))
        return {re.sub(r"runs/[^/]+\.json$", "runs/<run>.json", str(p.relative_to(folder)))
                for p in folder.rglob("*") if p.is_file()}

    assert layout(tmp_path / "results") == layout(RESULTS)
    fresh = json.loads(next((tmp_path / "results").rglob("variant.json")).read_text())
    assert fresh == raw_variant("mteb/baseline-bm25s")


# variants come from the records, not from names --------------------------------------------


def test_variant_fields_are_the_records(runs):
    for run in runs:
        record, v = raw_variant(run.name), run.variant
        meta = json.loads((run.folder / "model_meta.json").read_text())
        assert (v.config, v.kind, v.layer, v.dtype, v.attention) == (
            record["config"], record["kind"], record["layer"], record["dtype"], record["attention"])
        assert (v.top_k_query, v.top_k_document) == (record["top_k"]["query"], record["top_k"]["document"])
        assert v.width == (meta["embed_dim"] if record["kind"] == "splare" else None)
    latent = by_config(runs, "splare2b", layer=1, width=128).variant
    assert (latent.space, latent.backbone, latent.sae, latent.trained) == (
        "latent", "tiny/llama", "tiny/sae_L1_w128", False)
    assert "zero-shot (no adapter or checkpoint)" in latent.caveats
    assert "queries sliced to 8 per subset/split" in latent.caveats
    bm25 = by_config(runs, "bm25").variant
    assert (bm25.space, bm25.search, top_k_label(bm25), bm25.leaderboard_id) == (
        "lexical", "bm25s", "–", "mteb/baseline-bm25s")
    assert top_k_label(by_config(runs, "splade_tiny", top_k_document=0).variant) == "no cap"


def test_a_misleading_name_changes_nothing(runs, tmp_path):
    """A folder renamed to look like a Llama-3.1-8B layer-26 SPLARE at top-k 10/100 keeps its
    recorded fields: names are labels."""
    source = by_config(runs, "splade_tiny", top_k_document=400).folder
    name = "splare-harness/splare-Llama-3.1-8B-L26-sae128k-q10-d100"
    target = tmp_path / "results" / name.replace("/", "__") / source.name
    shutil.copytree(source, target)
    meta = json.loads((target / "model_meta.json").read_text())
    (target / "model_meta.json").write_text(json.dumps({**meta, "name": name}))
    (run,) = load_measured(tmp_path)
    assert run.name == name
    assert (run.variant.kind, run.variant.layer, run.variant.width, top_k_label(run.variant)) == (
        "splade_mlm", None, None, "40/400")
    assert paper_family(run.variant) is None


def test_folder_without_variant_json_is_unknown_but_reported(runs, tmp_path):
    source = by_config(runs, "bm25").folder
    target = tmp_path / "results" / source.parent.name / source.name
    shutil.copytree(source, target)
    (target / "harness" / "variant.json").unlink()
    (run,) = load_measured(tmp_path)
    assert not run.variant.recorded and run.variant.kind is None
    assert top_k_label(run.variant) == "?" and paper_family(run.variant) is None
    assert run.variant.leaderboard_id == "mteb/baseline-bm25s"  # the mteb name, from model_meta.json
    assert any("no variant.json" in c for c in run.variant.caveats)


def test_paper_family_needs_the_paper_config_with_its_own_kind_and_layer(runs):
    assert paper_family(Variant("x", True, config="splare7b", kind="splare", layer=26)) == "SPLARE-7B"
    assert paper_family(Variant("x", True, config="splare7b", kind="splare", layer=25)) is None
    assert paper_family(Variant("x", True, config="splade_llama", kind="splade_llm", layer=31)) == \
        "SPLADE-Llama"
    assert paper_family(by_config(runs, "bm25").variant) == "BM25"
    assert paper_family(by_config(runs, "splare2b", layer=1, width=64).variant) is None  # layer 1 != 6
    nocap = Variant("x", True, config="splare7b", kind="splare", layer=26, top_k_query=0, top_k_document=0)
    assert paper_counterpart(nocap, 3) == ("SPLARE-7B (no pooling cap)", "")
    assert paper_counterpart(nocap, 6) is None


def test_efficiency_reader_tolerates_shapes(tmp_path, runs):
    nested = tmp_path / "a.json"
    nested.write_text(json.dumps({"backend": "exact", "top_k_document": 400,
                                  "subsets": {"en": {"test": {"avg_nnz_query": 10, "flops": 1.0}},
                                              "de": {"test": {"avg_nnz_query": 30}}}}))
    got = read_efficiency(nested)
    assert got == {"avg_nnz_query": 20.0, "flops": 1.0, "backend": "exact", "top_k_document": 400}
    assert read_efficiency(tmp_path / "missing.json") == {}
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_efficiency(tmp_path / "c.json")
    splade = by_config(runs, "splade_tiny", top_k_document=400)
    assert splade.efficiency[EMBEDDED]["avg_nnz_document"] > 0  # the runner's own file is read


# tables --------------------------------------------------------------------------------------


def test_measured_task_table_matches_raw_json(runs):
    table = T.measured_task_table(runs, set())
    assert [r[0].text for r in table.rows] == [EMBEDDED, XQUAD, "Mean over tasks"]
    for run in runs:
        for task in (EMBEDDED, XQUAD):
            cell = _row(table, task)[run.label]
            assert cell.value == pytest.approx(raw_task_score(run.name, task), abs=1e-9)
            assert T.CAVEAT in cell.marks  # sliced queries
        mean = _row(table, "Mean over tasks")[run.label].value
        assert mean == pytest.approx((raw_task_score(run.name, EMBEDDED) + raw_task_score(run.name, XQUAD)) / 2)
    (embedded, xquad) = T.measured_language_tables(runs, set())
    bm25 = by_config(runs, "bm25")
    for subset, value in raw_subsets(bm25.name, EMBEDDED).items():
        assert _row(embedded, subset)[bm25.label].value == pytest.approx(value)
    assert [r[0].text for r in xquad.rows] == ["de-en", "en", "Task score (mteb)"]


def test_paper_tables_delta_on_runner_output(runs, reference):
    """Table 6 with the run named the SPLARE-7B counterpart (--counterpart) and the paper's
    ArguAna row re-labelled as the task the runner measured: Δ = measured − paper."""
    run = by_config(runs, "splade_tiny", top_k_document=400)
    paper = reference[(reference["table"] == 6) & (reference["model"] == "SPLARE-7B")
                      & (reference["task"] == "ArguAna")]["value"].iloc[0]
    relabelled = reference.assign(task=reference["task"].replace({"ArguAna": EMBEDDED}))
    table = T.per_task_table(relabelled, runs, 6, T.ENG, {run.name: "SPLARE-7B"})
    row = _row(table, EMBEDDED)
    assert row[run.label].value == pytest.approx(raw_task_score(run.name, EMBEDDED))
    assert row[f"Δ {run.label}"].value == pytest.approx(raw_task_score(run.name, EMBEDDED) - paper)
    assert f"Δ {by_config(runs, 'bm25').label}" not in table.header  # BM25 is not in Table 6
    table1 = T.benchmark_table(reference, runs, 1, T.TABLE1)
    assert all(r[2].text == "paper, Table 1" for r in table1.rows)  # no MTEB task was measured


# efficiency ----------------------------------------------------------------------------------

#: Hand-written `<Task>.efficiency.json` files: the search layer's shape (entries with `top_k` and
#: `encode`) for one task, a flat record without `index_bytes` for the other.
EFFICIENCY = {
    EMBEDDED: {"entries": [
        {"subset": "en", "backend": "exact", "top_k": {"query": 40, "document": 400}, "avg_nnz_query": 10,
         "avg_nnz_document": 100, "flops": 2.0, "search_ms_per_query": 1.0, "index_bytes": 2 ** 20,
         "encode": {"documents": {"tokens": 1000, "seconds": 2.0}, "queries": {"tokens": 200, "seconds": 0.4}}},
        {"subset": "de", "backend": "exact", "top_k": {"query": 40, "document": 400}, "avg_nnz_query": 30,
         "avg_nnz_document": 300, "flops": 4.0, "search_ms_per_query": 3.0, "index_bytes": 3 * 2 ** 20,
         "encode": {"documents": {"tokens": 800, "seconds": 1.0}, "queries": {"tokens": 100, "seconds": 0.2}}},
    ]},
    XQUAD: {"backend": "exact", "top_k_query": 40, "top_k_document": 400, "avg_nnz_query": 40,
            "avg_nnz_document": 400, "flops": 5.0, "search_ms_per_query": 4.0, "encode_tokens_per_s": 1000},
}


def test_efficiency_table_is_the_mean_of_the_efficiency_files(runs, tmp_path):
    source = by_config(runs, "splade_tiny", top_k_document=400).folder
    target = tmp_path / "results" / source.parent.name / source.name
    shutil.copytree(source, target)
    for task, data in EFFICIENCY.items():
        (target / "harness" / f"{task}.efficiency.json").write_text(json.dumps(data))
    (run,) = load_measured(tmp_path)
    table = T.efficiency_table([run])
    row = _row(table, run.label)
    embedded_tok_s = (1200 / 2.4 + 900 / 1.2) / 2  # per subset: all tokens over all seconds
    expected = {"nnz query": (20 + 40) / 2, "nnz document": (200 + 400) / 2, "FLOPS": (3 + 5) / 2,
                "Search ms/query": (2 + 4) / 2, "Encode tok/s": (embedded_tok_s + 1000) / 2}
    for column, value in expected.items():
        assert row[column].value == pytest.approx(value), column
        assert T.PARTIAL not in row[column].marks
    assert row["Index MiB"].value == pytest.approx(2.0)  # only EMBEDDED has index_bytes: (1 + 3) / 2
    assert T.PARTIAL in row["Index MiB"].marks
    assert any(f"1/2 tasks (missing: {XQUAD})" in n for n in table.notes)
    assert (row["Backend"].text, row["Top-k (q/d)"].text, row["Tasks"].text) == ("exact", "40/400", "2")
    assert row["Search ms/query"].display().startswith("3.000")
    assert any(f"`{run.records[-1].command}`" in n for n in table.notes)  # where the numbers came from


def test_efficiency_table_lists_only_runs_with_efficiency_files(runs):
    table = T.efficiency_table(runs)
    labels = [r[0].text for r in table.rows]
    assert by_config(runs, "bm25").label not in labels and len(labels) == len(runs) - 1
    splade = by_config(runs, "splade_tiny", top_k_document=400)
    mean_ms = sum(splade.efficiency[t]["search_ms_per_query"] for t in (EMBEDDED, XQUAD)) / 2
    assert _row(table, splade.label)["Search ms/query"].value == pytest.approx(mean_ms)
    assert T.efficiency_table([by_config(runs, "bm25")]) is None


#: A hand-written `search.json`: one kernel the report names, one it does not know, one model
#: without a profile (unknown top-k) and a non-kernel key beside the kernels.
BENCH = {
    "command": "python benchmarks/bench_search.py --compare-docs 1000",
    "profiles": {"splare_tiny": {"top_k": {"document": 400, "query": 40}}},
    "latent_vs_vocabulary": {
        "splare_tiny": {"docs": 1000, "dim": 131072, "avg_nnz_doc": 390.5, "avg_nnz_query": 37.0, "flops": 1.25,
                        "postings_per_query": 2500.0, "taat": {"cpu_ms_per_query": 0.5, "ms_per_query": 0.6},
                        "taat_speedup": 1.0, "future_kernel": {"cpu_ms_per_query": 0.25}},
        "splade_tiny_llm": {"docs": 1000, "dim": 262144, "avg_nnz_doc": 392.0, "avg_nnz_query": 38.0,
                            "flops": 9.5, "postings_per_query": 19000.0, "windowed": {"cpu_ms_per_query": 0.75}},
    },
}


def _bench(folder: Path) -> Path:
    path = folder / "search.json"
    path.write_text(json.dumps(BENCH))
    return path


def test_search_cost_table_reads_the_bench_json(tmp_path):
    paper = load_paper_efficiency()
    table = search_cost_table(_bench(tmp_path), paper)
    rows = [(r[0].text, r[3].text) for r in table.rows]
    assert rows == [("splare_tiny", "exact, term-at-a-time"), ("splare_tiny", "future_kernel"),
                    ("splade_tiny_llm", "exact, windowed, block-max top-k"),
                    ("SPLARE-7B", "Seismic, single thread, MS MARCO")]
    taat = _row(table, "splare_tiny", "latent", "measured", "exact, term-at-a-time")
    assert [taat[c].value for c in ("Docs", "Dim", "nnz document", "nnz query", "FLOPS", "Postings/query",
                                    "ms/query")] == [1000, 131072, 390.5, 37.0, 1.25, 2500.0, 0.5]
    assert taat["Top-k (q/d)"].text == "40/400"
    windowed = _row(table, "splade_tiny_llm", "vocabulary")
    assert (windowed["ms/query"].value, windowed["Top-k (q/d)"].text) == (0.75, "?")
    assert any(BENCH["command"] in n for n in table.notes)
    _assert_valid_latex(to_latex(table))
    assert search_cost_table(tmp_path / "missing.json", paper) is None
    (tmp_path / "other.json").write_text(json.dumps({"command": "x"}))
    assert search_cost_table(tmp_path / "other.json", paper) is None
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        search_cost_table(tmp_path / "bad.json", paper)


def test_paper_efficiency_rows_come_from_the_csv(tmp_path):
    with (REPO_ROOT / "results" / "reference" / "paper_efficiency.csv").open(newline="") as f:
        raw = list(csv.DictReader(f))
    speed = next(r for r in raw if r["metric"] == "search_ms_per_query")
    assert (speed["model"], speed["documents"], speed["top_k_query"], speed["top_k_document"],
            speed["value"], speed["qualifier"]) == ("SPLARE-7B", "8800000", "40", "400", "5", "about")
    table = search_cost_table(_bench(tmp_path), load_paper_efficiency())
    row = _row(table, "SPLARE-7B", "latent", "paper")
    assert (row["ms/query"].value, row["ms/query"].display(), row["Docs"].value, row["Top-k (q/d)"].text) == (
        5.0, "about 5", 8_800_000, "40/400")
    assert "Paper, SPLARE (document pruning to 100): loss about 2 %." in table.notes
    assert "Paper, SPLADE (document pruning to 100): loss over 6 %." in table.notes

    def edited(**changes: str) -> pd.DataFrame:
        path = tmp_path / "paper.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(speed))
            writer.writeheader()
            writer.writerow({**speed, **changes})
        return load_paper_efficiency(path)

    row = _row(search_cost_table(_bench(tmp_path), edited(value="7.5", qualifier="")), "SPLARE-7B")
    assert (row["ms/query"].value, row["ms/query"].display()) == (7.5, "7.5")
    with pytest.raises(ValueError, match="qualifier 'roughly' is not one of"):
        edited(qualifier="roughly")
    with pytest.raises(ValueError, match="value 'five' is not a number"):
        edited(value="five")


# leaderboard ---------------------------------------------------------------------------------


@needs_leaderboard
def test_leaderboard_loader_keeps_task_scores():
    board = load_leaderboard()
    assert len(board) == 49  # the README's 49 task scores
    with LEADERBOARD_CSV.open(newline="") as f:
        raw = [r for r in csv.DictReader(f) if r["model"] == "mteb/baseline-bm25s"]
    mlqa = board[board["task"] == "MLQARetrieval"].iloc[0]
    joined = next(r for r in raw if r["task"] == "MLQARetrieval" and "+" in r["split"])
    assert mlqa["splits"] == ("validation", "test") and mlqa["value"] == pytest.approx(100 * float(joined["main_score"]))
    assert set(board.loc[board["model"] == OPENSEARCH, "task"]) == {
        "ArguAna", "CQADupstackGamingRetrieval", "CQADupstackUnixRetrieval", "FiQA2018", "SCIDOCS", "TRECCOVID"}


def test_leaderboard_loader_rejects_bad_input(tmp_path):
    bad = tmp_path / "lb.csv"
    bad.write_text("model,revision,task\n")
    with pytest.raises(ValueError, match="missing column"):
        load_leaderboard(bad)
    bad.write_text("model,revision,task,split,main_score,n_subsets,mteb_version,source_path\n"
                   "m,r,T,test,zero,1,1,p\n")
    with pytest.raises(ValueError, match="main_score 'zero' is not a number"):
        load_leaderboard(bad)
    bad.write_text("model,revision,task,split,main_score,n_subsets,mteb_version,source_path\n"
                   "m,r,T,dev,0.1,1,1,p\nm,r,T,test,0.2,1,1,p\n")
    with pytest.raises(ValueError, match="no single '\\+'-joined task row"):
        load_leaderboard(bad)
    with pytest.raises(FileNotFoundError, match="leaderboard table not found"):
        load_leaderboard(tmp_path / "none.csv")


def _board(tmp_path: Path, rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """A leaderboard CSV of (model, task, split, main score on 0-1) rows at doc-v3-distill's
    leaderboard revision."""
    path = tmp_path / "lb.csv"
    lines = ["model,revision,task,split,main_score,n_subsets,mteb_version,source_path"]
    lines += [f"{m},babf71f3c48695e2e53a978208e8aba48335e3c0,{t},{sp},{s!r},1,1.38.33,results/{t}.json"
              for m, t, sp, s in rows]
    path.write_text("\n".join(lines) + "\n")
    return load_leaderboard(path)


def test_leaderboard_delta_and_flag_on_runner_output(runs, tmp_path):
    """Leaderboard rows naming the tasks the tiny OpenSearch run measured: Δ = measured −
    leaderboard, flagged exactly when |Δ| > 0.5 points."""
    run = next(r for r in runs if r.variant.leaderboard_id == OPENSEARCH)
    measured = {t: raw_task_score(run.name, t) for t in (EMBEDDED, XQUAD)}
    board = _board(tmp_path, [(OPENSEARCH, EMBEDDED, "test", (measured[EMBEDDED] - 0.49) / 100),
                              (OPENSEARCH, XQUAD, "validation", (measured[XQUAD] + 0.51) / 100),
                              (OPENSEARCH, "ArguAna", "test", 0.5)])
    frame = delta_frame(board, runs).set_index("task")
    assert set(frame["run"]) == {run.label}  # no other fixture model is an OpenSearch model
    assert frame.loc[EMBEDDED, "delta"] == pytest.approx(0.49, abs=1e-6)
    assert frame.loc[XQUAD, "delta"] == pytest.approx(-0.51, abs=1e-6)
    assert not frame.loc[EMBEDDED, "flagged"] and frame.loc[XQUAD, "flagged"] and FLAG == 0.5
    assert frame.loc[XQUAD, "subsets"] == "2/1"
    assert pd.isna(frame.loc["ArguAna", "measured"]) and not frame.loc["ArguAna", "flagged"]
    table = leaderboard_table(board, runs)
    assert _row(table, run.label, XQUAD)["Δ"].display() == "-0.5!"
    assert _row(table, run.label, EMBEDDED)["Δ"].display() == "+0.5"
    assert _row(table, run.label, "ArguAna")["Measured"].display() == "–"
    assert any(f"reproduces leaderboard model {OPENSEARCH}; caveat: weights from the local folder "
               "tiny/opensearch_tiny, not the hub" in n for n in table.notes)


@needs_leaderboard
def test_leaderboard_table_against_the_shared_csv(runs):
    board = load_leaderboard()
    table = leaderboard_table(board, runs)
    bm25 = by_config(runs, "bm25")
    opensearch = next(r for r in runs if r.variant.leaderboard_id == OPENSEARCH)
    assert {r[0].text for r in table.rows} == {bm25.label, opensearch.label}
    assert len([r for r in table.rows if r[0].text == bm25.label]) == 25
    assert len([r for r in table.rows if r[0].text == opensearch.label]) == 6
    arguana = _row(table, opensearch.label, "ArguAna")
    assert arguana["Leaderboard"].value == pytest.approx(51.909) and arguana["Measured"].value is None
    assert any("revision 0_3_0; leaderboard ran 0_1_10" in n for n in table.notes)
    assert any("leaderboard ran babf71f3c48695e2e53a978208e8aba48335e3c0" in n for n in table.notes)


# rendering -----------------------------------------------------------------------------------


def _assert_valid_latex(tex: str) -> None:
    stripped = re.sub(r"\\[{}%&#$_]", "", tex)
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert not stack
    body = re.sub(r"\$[^$]*\$", "", stripped)  # math spans are ours ($^{\dagger}$, $\Delta$)
    assert not re.search(r"[_#%^~]", body), "unescaped special character"
    columns = tex.split(r"\begin{tabular}{")[1].split("}")[0]
    for line in tex.splitlines():
        if line.endswith(r"\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == len(columns) - 1, line


def test_latex_escapes_and_balances(runs, reference):
    nasty = r"a_b & c% $x #1 {y} ~z ^w \ † Δ"
    escaped = latex_escape(nasty)
    assert r"a\_b \& c\% \$x \#1 \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}" in escaped
    table = T.Table(key="t_1", title="50% of R&D_x", header=["Model_name", "Δ #"],
                    rows=[[T.Cell(text="m&m_{1}"), T.Cell(1.5, kind="delta", marks="†")]], notes=["n/N ~ 3"])
    _assert_valid_latex(to_latex(table))
    for built in (T.benchmark_table(reference, runs, 1, T.TABLE1), T.per_task_table(reference, runs, 7, T.MULTI),
                  T.measured_task_table(runs, set())):
        _assert_valid_latex(to_latex(built))


# end to end ----------------------------------------------------------------------------------

FIGURES = ("latent_vs_vocab_tasks", "latent_vs_vocab_languages", "ndcg_vs_topk", "ndcg_vs_sparsity",
           "ndcg_vs_latency", "ndcg_vs_layer", "ndcg_vs_width")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    assert main(["build", "--name", "fixtures", "--results", str(RESULTS), "--out", str(out),
                 "--search-bench", str(_bench(out))]) == 0
    return out / "fixtures"


def test_cli_builds_tables_figures_and_index(built, runs):
    index = (built / "index.md").read_text()
    keys = ["table1", "table3", "table6", "table7", "table11", "table11_averages", "measured_tasks",
            "efficiency", "search_cost"]
    keys += ["leaderboard"] if LEADERBOARD_CSV.is_file() else []
    for key in keys:
        for ext in ("md", "tex", "csv", "long.csv"):
            assert (built / "tables" / f"{key}.{ext}").stat().st_size > 100
        _assert_valid_latex((built / "tables" / f"{key}.tex").read_text())
    for stem in FIGURES:
        png, pdf = built / "figures" / f"{stem}.png", built / "figures" / f"{stem}.pdf"
        assert png.stat().st_size > 10_000 and pdf.read_bytes()[:4] == b"%PDF"
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.01
        assert f"](figures/{stem}.png)" in index
    for link in re.findall(r"\]\(((?:tables|figures|provenance)/[^)]+)\)", index):
        assert (built / link).is_file(), link
    assert "measured here" in index and "arXiv 2603.13277v1" in index
    latent = by_config(runs, "splare2b", layer=2, width=64)
    assert f"### {latent.label}" in index
    assert "python -m harness model=splare2b model.backbone.path=tiny/llama" in index
    assert "config `splare2b`, kind splare (latent space); backbone: tiny/llama; layer: 2" in index
    assert "zero-shot" in index and str(REPO_ROOT) not in index


def test_cli_runs_selects_and_reports_errors(tmp_path, capsys):
    assert main(["build", "--name", "one", "--results", str(RESULTS), "--runs",
                 str(FIXTURES / "runs" / "splade_tiny_q10"), "--out", str(tmp_path),
                 "--search-bench", str(tmp_path / "no_search.json")]) == 0
    index = (tmp_path / "one" / "index.md").read_text()
    (note,) = [line for line in index.splitlines() if line.startswith("Search cost at scale")]
    assert "not shown" in note and "no_search.json" in note
    assert not (tmp_path / "one" / "tables" / "search_cost.md").exists()
    assert re.findall(r"^### (.+)$", index, re.MULTILINE) == ["splade_mlm-splade-bert-tiny-len512-q10-d100"]
    assert "Hydra run `" in index
    assert main(["build", "--name", "x", "--results", str(RESULTS), "--runs", str(tmp_path / "nope*")]) == 2
    assert "matches no folder" in capsys.readouterr().err
    assert main(["build", "--name", "bad/name", "--results", str(RESULTS), "--out", str(tmp_path)]) == 2
    assert main(["build", "--name", "x", "--results", str(tmp_path / "empty")]) == 2


# figure labels and legends -------------------------------------------------------------------

#: Longest legend entry a report figure may show (a pair: "<latent> vs <vocabulary>").
MAX_LEGEND_CHARS = 72


def test_short_labels_come_from_the_variant_record():
    from harness.reports.variants import short_label, short_labels

    splare = {"kind": "splare", "backbone_id": "google/gemma-3-270m", "layer": 9,
              "embed_dim": 8192, "trained": False, "top_k": {"query": 40, "document": 400}}
    assert short_label(splare) == "SPLARE · Gemma-3-270M L9 · 8k SAE"
    assert short_label({**splare, "embed_dim": 64}) == "SPLARE · Gemma-3-270M L9 · 64 SAE"
    assert short_label(splare, omit=("layer", "width")) == "SPLARE · Gemma-3-270M · SAE"
    assert short_label({**splare, "kind": "splade_llm"}) == "SPLADE · Gemma-3-270M L9 · LM head"
    assert short_label({**splare, "trained": True}).endswith(" · trained")
    assert short_label({"kind": "bm25"}) == "BM25"
    assert short_label({"kind": "splade_mlm", "backbone_id": OPENSEARCH}) == \
        "SPLADE · Opensearch-neural-spars…"
    nocap = {**splare, "top_k": {"query": 0, "document": 0}, "revision": "abc"}
    assert short_labels([splare, nocap, {**splare, "kind": "bm25"}]) == [
        "SPLARE · Gemma-3-270M L9 · 8k SAE · top-k 40/400",
        "SPLARE · Gemma-3-270M L9 · 8k SAE · no cap", "BM25"]
    assert short_labels([{**splare, "revision": "aaaaaa1"}, {**splare, "revision": "bbbbbb2"}]) == [
        "SPLARE · Gemma-3-270M L9 · 8k SAE · aaaaaa", "SPLARE · Gemma-3-270M L9 · 8k SAE · bbbbbb"]


def test_run_short_labels_are_the_records_labels_and_unique(runs):
    from harness.reports.variants import short_labels

    shorts = [r.short for r in runs]
    assert len(set(shorts)) == len(runs) and max(map(len, shorts)) <= 48
    assert shorts == short_labels([raw_variant(r.name) for r in runs])
    assert by_config(runs, "splare2b", layer=1, width=128).short == "SPLARE · Llama-3.1-8B L1 · 128 SAE"
    assert by_config(runs, "splade_tiny", top_k_document=100).short == \
        "SPLADE · Splade-bert-tiny · top-k 10/100"


def test_figures_use_short_labels_and_legends_never_cover_the_axes(runs, reference, tmp_path):
    from harness.reports.build import build_figures

    figures, _ = build_figures(reference, runs, tmp_path)
    assert {f.stem for f in figures} == set(FIGURES)
    for figure in figures:
        assert figure.legend and figure.overlaps == (), figure.stem
        assert max(map(len, figure.legend)) <= MAX_LEGEND_CHARS, figure.stem
        assert not any(r.label in entry for r in runs for entry in figure.legend), figure.stem
    sparsity = next(f for f in figures if f.stem == "ndcg_vs_sparsity")
    measured = [r for r in runs if any("avg_nnz_document" in e for e in r.efficiency.values())]
    assert len(measured) >= 9 and set(sparsity.legend) == {r.short for r in measured}
    for run in measured:  # each by its short label, and the caption names each one in full
        assert f"{run.short} = `{run.label}`" in sparsity.caption
    languages = next(f for f in figures if f.stem == "latent_vs_vocab_languages")
    latent = by_config(runs, "splare2b", layer=0, width=64)
    vocab = by_config(runs, "splade_llama")
    assert f"{latent.short} vs {vocab.short}" in languages.legend
    assert "EmbeddedMultilingualRetrieval" in languages.legend  # marker per task


def test_an_overlapping_legend_is_detected(tmp_path):
    from harness.reports.plots import new_figure, outside_legend, save_figure

    fig, ax = new_figure(4, 3)
    ax.plot([0, 1], [0, 1], label="a long legend entry placed over the data")
    ax.legend(loc="center")  # inside the axes: what the report's figures must never do
    assert save_figure(fig, tmp_path, "inside", "").overlaps == ("axes 0",)
    fig, ax = new_figure(4, 3)
    ax.plot([0, 1], [0, 1], label="a long legend entry placed over the data")
    outside_legend(fig)
    assert save_figure(fig, tmp_path, "outside", "").overlaps == ()
