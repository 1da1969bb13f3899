"""Reports: reference transcription, table builders, LaTeX, figures and the CLI on fixture results.

Fixture results (tests/fixtures/reports/) are real mteb TaskResult files written by
`make_fixtures.py` with mteb's API; expected numbers here are recomputed from the raw JSON.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib.image
import pytest

from harness.reports import tables as T
from harness.reports.__main__ import main
from harness.reports.collect import load_measured
from harness.reports.efficiency import read_efficiency
from harness.reports.reference import REFERENCE_CSV, SHARED_CSV, load_reference, transcribe
from harness.reports.render import latex_escape, to_latex
from harness.reports.variants import paper_counterpart, parse_variant

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
RESULTS = FIXTURES / "results"
SPLARE = "harness/splare-llama3.1-8b-l26-sae128k-topk40-400"
SPLADE = "harness/splade-llama3.1-8b-vocab-topk40-400"
ENG = ["ArguAna", "CQADupstackGamingRetrieval", "CQADupstackUnixRetrieval", "ClimateFEVERHardNegatives",
       "FEVERHardNegatives", "FiQA2018", "HotpotQAHardNegatives", "SCIDOCS", "TRECCOVID",
       "Touche2020Retrieval.v3"]


def raw_task_score(model: str, task: str, metric: str = "ndcg_at_10", revision: str = "r1") -> float:
    """Independent of mteb: mean of `metric` over every split/subset entry of the raw JSON, x100."""
    data = json.loads((RESULTS / "results" / model.replace("/", "__") / revision / f"{task}.json").read_text())
    values = [entry[metric] for entries in data["scores"].values() for entry in entries]
    return 100 * sum(values) / len(values)


def raw_subset(model: str, task: str, subset: str, metric: str = "ndcg_at_10") -> float:
    data = json.loads((RESULTS / "results" / model.replace("/", "__") / "r1" / f"{task}.json").read_text())
    return 100 * next(e[metric] for es in data["scores"].values() for e in es if e["hf_subset"] == subset)


@pytest.fixture(scope="module")
def runs():
    return load_measured(RESULTS)


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def _row(table: T.Table, label: str) -> dict[str, T.Cell]:
    row = next(r for r in table.rows if r[0].text == label)
    return dict(zip(table.header, row))


def _by_name(runs, name: str, revision: str = "r1"):
    return next(r for r in runs if r.name == name and r.revision == revision)


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
        assert (row["model"], row["task"], row["setting"]) == (raw["model"], raw["task"], raw["setting"])


def test_reference_rejects_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("paper_table,model,benchmark,task,metric,value,setting\nT1,m,b,t,ndcg_at_10,1.0,\n")
    with pytest.raises(ValueError, match="'T1' is not of the form tableN"):
        transcribe(bad)
    bad.write_text("paper_table,model\n")
    with pytest.raises(ValueError, match="missing column"):
        transcribe(bad)


# loading and variants ------------------------------------------------------------------------


def test_loader_keeps_variants_sharing_a_name_apart(runs):
    gemma = [r for r in runs if r.name == "harness/splade-gemma3-270m-vocab-topk40-400"]
    assert sorted(r.revision for r in gemma) == ["r1", "r2"]
    assert {r.label for r in gemma} == {"splade-gemma3-270m-vocab-topk40-400@r1",
                                        "splade-gemma3-270m-vocab-topk40-400@r2"}
    s1, s2 = (T.task_score(r.results["XQuADRetrieval"], "main_score") for r in gemma)
    assert s1 != pytest.approx(s2)
    splare = _by_name(runs, SPLARE)
    assert set(splare.results) == {*ENG[:-1], "MIRACLRetrieval"}  # run.json / *.efficiency.json skipped
    assert splare.efficiency["ArguAna"]["top_k_document"] == 400
    assert len(runs) == 13


def test_variant_from_config_meta_and_name(runs):
    v = _by_name(runs, SPLARE).variant
    assert (v.head, v.layer, v.width, v.top_k_query, v.top_k_document, v.trained) == \
        ("latent", 26, 131072, 40, 400, True)
    assert paper_counterpart(v, 3) == ("SPLARE-7B (top-k 40/400)", "")
    assert paper_counterpart(v, 1) == ("SPLARE", "multilingual-trained")
    nocap = parse_variant("harness/splare-llama3.1-8b-l26-sae128k-nocap")
    assert (nocap.top_k_query, nocap.top_k_document, nocap.layer, nocap.width) == (0, 0, 26, 131072)
    assert paper_counterpart(nocap, 3) == ("SPLARE-7B (no pooling cap)", "")
    assert paper_counterpart(nocap, 6) is None
    real = parse_variant("harness/splare-gemma3-270m-L9-causal-gemma-scope-2-270m-pt-res."
                         "layer_9_width_16k_l0_medium-len512-qall-d400")  # models.build naming
    assert (real.head, real.layer, real.width, real.top_k_query, real.top_k_document) == \
        ("latent", 9, 16384, 0, 400)
    mlm = parse_variant("harness/splade_mlm-splade-v3-len512-q40-d400",
                        {"model": {"kind": "splade_mlm", "backbone": {"id": "naver/splade-v3"}}})
    assert mlm.trained is True and not mlm.caveats and paper_counterpart(mlm, 1) == ("SPLADE-v3", "english-trained")
    gemma = _by_name(runs, "harness/splare-gemma3-270m-l9-sae8k-topk40-400").variant
    assert gemma.width == 8192 and gemma.trained is False and len(gemma.caveats) == 2
    assert paper_counterpart(gemma, 1) is None


def test_efficiency_reader_tolerates_shapes(tmp_path):
    nested = tmp_path / "a.json"
    nested.write_text(json.dumps({"backend": "exact", "top_k_document": 400,
                                  "subsets": {"en": {"test": {"avg_nnz_query": 10, "flops": 1.0}},
                                              "de": {"test": {"avg_nnz_query": 30}}}}))
    got = read_efficiency(nested)
    assert got == {"avg_nnz_query": 20.0, "flops": 1.0, "backend": "exact", "top_k_document": 400}
    records = tmp_path / "b.json"
    records.write_text(json.dumps([{"hf_subset": "en", "search_ms_per_query": 1.0},
                                   {"hf_subset": "de", "search_ms_per_query": 3.0, "backend": "seismic"}]))
    assert read_efficiency(records) == {"search_ms_per_query": 2.0, "backend": "seismic"}
    assert read_efficiency(tmp_path / "missing.json") == {}
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_efficiency(tmp_path / "c.json")


# tables --------------------------------------------------------------------------------------


def test_table1_partial_benchmark_is_marked_and_complete_one_is_not(runs, reference):
    table = T.benchmark_table(reference, runs, 1, T.TABLE1)
    splare = _row(table, SPLARE.removeprefix("harness/"))
    expected = sum(raw_task_score(SPLARE, t) for t in ENG[:-1]) / 9
    cell = splare["MTEB(eng, v2)"]
    assert cell.value == pytest.approx(expected, abs=1e-6)
    assert T.PARTIAL in cell.marks and cell.display().endswith(T.PARTIAL)
    assert any("9/10 tasks" in n and "Touche2020Retrieval.v3" in n for n in table.notes)
    splade = _row(table, SPLADE.removeprefix("harness/"))
    full = sum(raw_task_score(SPLADE, t) for t in ENG) / 10
    assert splade["MTEB(eng, v2)"].value == pytest.approx(full, abs=1e-6)
    assert splade["MTEB(eng, v2)"].marks == ""
    assert splade["Δ MTEB(eng, v2)"].value == pytest.approx(full - 58.9, abs=1e-6)
    assert splare["Δ MTEB(eng, v2)"].value == pytest.approx(expected - 59.3, abs=1e-6)
    assert T.PARTIAL in splare["Δ MTEB(eng, v2)"].marks
    assert "Δ Code" not in table.header  # nobody measured a Code task
    paper = _row(table, "SPLADE-v3")
    assert paper["ChemTEB"].value == 75.6 and paper["Source"].text == "paper, Table 1"


def test_table3_topk_rows_get_their_own_paper_counterpart(runs, reference):
    table = T.benchmark_table(reference, runs, 3, T.TABLE3)
    row = _row(table, "splare-llama3.1-8b-l26-sae128k-topk10-100")
    mean = sum(raw_task_score("harness/splare-llama3.1-8b-l26-sae128k-topk10-100", t)
               for t in ("ArguAna", "SCIDOCS", "FiQA2018")) / 3
    assert row["Δ MTEB(eng, v2)"].value == pytest.approx(mean - 50.1, abs=1e-6)
    assert row["XTREME-UP (MRR@10)"].value is None
    assert _row(table, "gemini-embedding-001")["XTREME-UP (MRR@10)"].value == 64.3


def test_table6_missing_task_and_per_task_delta(runs, reference):
    table = T.per_task_table(reference, runs, 6, T.ENG)
    label = SPLARE.removeprefix("harness/")
    touche, arguana = _row(table, "Touche2020Retrieval.v3"), _row(table, "ArguAna")
    assert touche[label].value is None and touche[label].display() == "–"
    assert touche[f"Δ {label}"].value is None
    assert arguana[label].value == pytest.approx(raw_task_score(SPLARE, "ArguAna"), abs=1e-6)
    assert arguana[f"Δ {label}"].value == pytest.approx(raw_task_score(SPLARE, "ArguAna") - 67.4, abs=1e-6)
    mean = _row(table, "Mean of rows")
    assert T.PARTIAL in mean[label].marks
    paper_same = [67.4, 59.6, 43.7, 33.4, 90.6, 57.8, 76.0, 20.8, 83.4]
    measured = sum(raw_task_score(SPLARE, t) for t in ENG[:-1]) / 9
    assert mean[f"Δ {label}"].value == pytest.approx(measured - sum(paper_same) / 9, abs=1e-6)
    assert mean["SPLARE-7B (paper)"].value == pytest.approx(
        sum([*paper_same, 60.8]) / 10)


def test_table11_languages(runs, reference):
    table = T.language_table(reference, runs)
    label = SPLARE.removeprefix("harness/")
    assert _row(table, "fi")[label].value == pytest.approx(raw_subset(SPLARE, "MIRACLRetrieval", "fi"), abs=1e-6)
    assert _row(table, "bn")[label].value is None
    avg = _row(table, "Average")
    langs = ["ar", "de", "en", "fi", "ja"]
    expected = sum(raw_subset(SPLARE, "MIRACLRetrieval", g) for g in langs) / 5
    assert avg[label].value == pytest.approx(expected, abs=1e-6) and T.PARTIAL in avg[label].marks
    assert avg[f"Δ {label}"].value == pytest.approx(expected - 71.7, abs=1e-6)
    assert any("5/18 languages" in n for n in table.notes)
    averages = T.language_average_table(reference, runs)
    assert len([r for r in averages.rows if r[1].text == "paper, Table 11"]) == 11


def test_measured_only_tables(runs):
    table = T.measured_task_table(runs, {"MIRACLRetrieval", *ENG})
    assert [r[0].text for r in table.rows] == ["XQuADRetrieval", "Mean over tasks"]
    bm25 = dict(zip(table.header, table.rows[0]))["mteb/baseline-bm25s"]
    assert bm25.value == pytest.approx(raw_task_score("mteb/baseline-bm25s", "XQuADRetrieval", revision="0_1_10"))
    assert T.SUBSETS in bm25.marks  # 4 of XQuAD's 12 languages
    (lang,) = T.measured_language_tables(runs, {"MIRACLRetrieval", *ENG})
    assert [r[0].text for r in lang.rows][:4] == ["de", "en", "es", "zh"]


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
    header = next(line for line in tex.splitlines() if line.endswith(r"\\"))
    columns = tex.split(r"\begin{tabular}{")[1].split("}")[0]
    for line in tex.splitlines():
        if line.endswith(r"\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == len(columns) - 1, line
    assert header


def test_latex_escapes_and_balances(runs, reference):
    nasty = r"a_b & c% $x #1 {y} ~z ^w \ † Δ"
    escaped = latex_escape(nasty)
    assert r"a\_b \& c\% \$x \#1 \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}" in escaped
    table = T.Table(key="t_1", title="50% of R&D_x", header=["Model_name", "Δ #"],
                    rows=[[T.Cell(text="m&m_{1}"), T.Cell(1.5, kind="delta", marks="†")]], notes=["n/N ~ 3"])
    _assert_valid_latex(to_latex(table))
    for built in (T.benchmark_table(reference, runs, 1, T.TABLE1), T.per_task_table(reference, runs, 7, T.MULTI),
                  T.language_table(reference, runs)):
        _assert_valid_latex(to_latex(built))


# end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    assert main(["build", "--name", "fixtures", "--results", str(RESULTS), "--out", str(out)]) == 0
    return out / "fixtures"


def test_cli_builds_tables_figures_and_index(built):
    index = (built / "index.md").read_text()
    for key in ("table1", "table3", "table6", "table7", "table11", "table11_averages", "measured_tasks"):
        for ext in ("md", "tex", "csv", "long.csv"):
            assert (built / "tables" / f"{key}.{ext}").stat().st_size > 100
        _assert_valid_latex((built / "tables" / f"{key}.tex").read_text())
    for stem in ("latent_vs_vocab_tasks", "latent_vs_vocab_languages", "ndcg_vs_topk", "ndcg_vs_sparsity",
                 "ndcg_vs_latency", "ndcg_vs_layer", "ndcg_vs_width"):
        png, pdf = built / "figures" / f"{stem}.png", built / "figures" / f"{stem}.pdf"
        assert png.stat().st_size > 10_000 and pdf.read_bytes()[:4] == b"%PDF"
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.01
        assert f"](figures/{stem}.png)" in index
    for link in re.findall(r"\]\(((?:tables|figures|provenance)/[^)]+)\)", index):
        assert (built / link).is_file(), link
    assert "measured here" in index and "arXiv 2603.13277v1" in index
    assert "results: `__main__.py model=splare_26 benchmark=mteb_eng`" in index
    assert "zero-shot" in index
    with (built / "tables" / "table1.csv").open() as f:
        grid = list(csv.reader(f))
    row = next(r for r in grid if r[0] == SPLARE.removeprefix("harness/"))
    assert row[grid[0].index("MTEB(eng, v2)")].endswith("†")


def test_cli_runs_selects_and_reports_errors(tmp_path, capsys):
    run = FIXTURES / "runs" / "2026-11-26" / "*"
    assert main(["build", "--name", "one", "--results", str(RESULTS), "--runs", str(run),
                 "--out", str(tmp_path)]) == 0
    index = (tmp_path / "one" / "index.md").read_text()
    assert "### splare-llama3.1-8b-l26-sae128k-topk40-400" in index
    assert "### splade-llama3.1-8b-vocab-topk40-400" not in index
    assert "10-00-00_splare7b_mteb_eng`: `python -m harness model=splare7b benchmark=mteb_eng`" in index
    assert main(["build", "--name", "x", "--results", str(RESULTS), "--runs", str(tmp_path / "nope*")]) == 2
    assert "matches no folder" in capsys.readouterr().err
    assert main(["build", "--name", "bad/name", "--results", str(RESULTS), "--out", str(tmp_path)]) == 2
    assert main(["build", "--name", "x", "--results", str(tmp_path / "empty")]) == 2


def test_fixtures_are_what_the_generator_writes(tmp_path):
    """The committed fixtures match a fresh run of make_fixtures.py (mteb's writer, same scores)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.write_fixtures(tmp_path)
    committed = sorted(p.relative_to(RESULTS) for p in RESULTS.rglob("*.json"))
    assert committed == sorted(p.relative_to(fresh) for p in fresh.rglob("*.json"))
    for rel in committed:
        a, b = json.loads((RESULTS / rel).read_text()), json.loads((fresh / rel).read_text())
        if "scores" in a:
            assert a["scores"] == b["scores"], rel
