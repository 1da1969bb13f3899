"""harness.compare: the paired test against hand-worked cases, a brute-force permutation test and
ranx.compare; Holm against its definition (and statsmodels when installed); ranx's per-query
nDCG@10 against the harness's pytrec_eval one (ties included); the overlap measure; the tables;
latent names from corpus tokens against the pooled vector; bad inputs fail in one line."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from harness.compare import analysis
from harness.compare.__main__ import compare
from harness.compare.overlap import mass_overlap, symmetric_overlap, top_k_rows
from harness.compare.significance import (
    check_scores,
    holm,
    paired_test,
    per_query_scores,
    read_trec_run,
    unit_weights,
)
from harness.compare.variants import select_variants
from harness.runfiles import per_query_ndcg, trec_lines


def test_identical_runs_give_p_one_and_a_zero_interval():
    scores = np.random.default_rng(0).uniform(size=40)
    result = paired_test(scores, scores, permutations=500)
    assert result.p == 1.0 and result.delta == 0.0 and (result.low, result.high) == (0.0, 0.0)
    assert (result.wins, result.ties, result.losses) == (0, 40, 0)


def test_a_constant_shift_is_significant():
    a = np.random.default_rng(1).uniform(0, 0.8, size=30)
    result = paired_test(a, a + 0.1, permutations=2000)
    assert result.p < 0.01 and result.delta == pytest.approx(0.1)
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.1)


def test_randomization_p_matches_the_exact_permutation_test():
    a = np.array([0.2, 0.5, 0.1, 0.9, 0.4, 0.3, 0.6, 0.8])
    b = np.array([0.3, 0.7, 0.1, 0.8, 0.6, 0.5, 0.6, 0.9])
    d = b - a
    observed = abs(d.mean())
    flips = [abs((d * np.array(s)).mean()) >= observed - 1e-12
             for s in itertools.product((1, -1), repeat=len(d))]
    exact = float(np.mean(flips))
    result = paired_test(a, b, permutations=20_000, seed=3)
    assert result.p == pytest.approx(exact, abs=0.015)
    assert result.low < d.mean() < result.high


def test_p_value_agrees_with_ranx_compare():
    from ranx import Qrels, Run
    from ranx import compare as ranx_compare

    rng = np.random.default_rng(2)
    qrels = {f"q{i}": {f"d{i}": 1, f"d{i + 1}": 2} for i in range(25)}
    docs = [f"d{j}" for j in range(30)]
    runs = []
    for name, boost in (("a", 0.0), ("b", 0.6)):
        run = {}
        for q, rel in qrels.items():
            scores = {d: float(rng.uniform()) for d in docs}
            for d in rel:
                scores[d] += boost * rng.uniform()
            run[q] = scores
        runs.append((name, run))
    ours = [per_query_scores(qrels, run) for _, run in runs]
    qids = sorted(qrels)
    result = paired_test([ours[0][q] for q in qids], [ours[1][q] for q in qids],
                         permutations=5000, seed=42)
    report = ranx_compare(Qrels(qrels), [Run(r, name=n) for n, r in runs], ["ndcg@10"],
                          stat_test="fisher", n_permutations=5000, max_p=0.05, random_seed=42)
    theirs = report.comparisons[("a", "b")]["ndcg@10"]["p_value"]
    assert result.p == pytest.approx(theirs, abs=0.03)
    assert result.mean_a == pytest.approx(report.results["a"]["ndcg@10"])
    assert result.mean_b == pytest.approx(report.results["b"]["ndcg@10"])


def test_holm_matches_its_definition_and_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    m = len(p)
    order = np.argsort(p)
    expected = np.empty(m)
    for k, i in enumerate(order):
        expected[i] = min(1.0, max((m - j) * p[order[j]] for j in range(k + 1)))
    assert holm(p) == pytest.approx(expected)
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    assert holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1])


def test_unit_weights_make_the_weighted_mean_the_mean_of_unit_means():
    units = ["x"] * 3 + ["y"] * 5
    values = np.array([1, 2, 3, 10, 10, 10, 10, 0], dtype=float)
    weights = unit_weights(units)
    assert weights.mean() == pytest.approx(1.0)
    assert (values * weights).mean() == pytest.approx((2 + 8) / 2)


def test_ranx_scores_equal_pytrec_eval_with_ties_and_missing_queries(tmp_path):
    qrels = {"q1": {"a": 1, "b": 2, "z": 0}, "q2": {"c": 1}, "q3": {"a": 1}}
    ranking = {"q1": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 2.0}, "q2": {"a": 0.5, "c": 0.5},
               "q3": {}}
    path = tmp_path / "run.trec"
    path.write_text(trec_lines(ranking, "tag"))
    ours = per_query_scores(qrels, read_trec_run(path))
    reference = per_query_ndcg(qrels, ranking)
    assert set(ours) == {"q1", "q2", "q3"} and ours["q3"] == 0.0
    for qid, value in reference.items():
        assert ours[qid] == pytest.approx(value, abs=1e-12)
    check_scores(ours, reference, "here")
    with pytest.raises(ValueError, match="query q2") as info:
        check_scores(ours, {**reference, "q2": 0.123}, "here")
    assert "\n" not in str(info.value)


def test_overlap_is_one_for_identical_and_zero_for_disjoint_vectors():
    u = sp.csr_matrix(np.array([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]]))
    disjoint = sp.csr_matrix(np.array([[0.0, 0.0, 1.0, 1.0], [5.0, 1.0, 0.0, 0.0]]))
    partial = sp.csr_matrix(np.array([[0.0, 7.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert mass_overlap(u, u) == pytest.approx([1.0, 1.0])
    assert mass_overlap(u, disjoint) == pytest.approx([0.0, 0.0])
    assert mass_overlap(u, partial) == pytest.approx([2 / 3, 0.0])
    assert symmetric_overlap(u, partial) == pytest.approx([(2 / 3 + 1) / 2, 0.0])
    capped = top_k_rows(u, 1).toarray()
    assert capped.tolist() == [[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]]


def frame_of(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """A per-query frame: {(variant, task): [scores]} with one subset per task."""
    rows = []
    for (variant, task), values in scores.items():
        for i, value in enumerate(values):
            rows.append({"task": task, "split": "test", "subset": "default",
                         "query_lang": "eng-Latn", "doc_lang": "deu-Latn" if task == "t2" else
                         "eng-Latn", "domains": ("Web",), "qid": f"q{i}", "variant": variant,
                         "score": value})
    return pd.DataFrame(rows)


def test_task_table_holm_and_mean_row():
    a1, a2 = [0.1] * 10, list(np.linspace(0, 1, 10))
    frame = frame_of({("A", "t1"): a1, ("B", "t1"): [0.6] * 10,
                      ("A", "t2"): a2, ("B", "t2"): a2})
    table = analysis.task_table(frame, "A", "B", permutations=1000, seed=0, alpha=0.05)
    assert list(table.task) == ["t1", "t2", "mean over tasks"]
    assert table.delta.tolist()[:2] == pytest.approx([0.5, 0.0])
    assert table.p_holm[0] == pytest.approx(min(1, 2 * table.p[0]))
    assert table.significant.tolist()[:2] == [True, False]
    mean = table.iloc[-1]
    assert mean.n == 2 and mean.delta == pytest.approx(0.25)
    units = analysis.unit_table(frame, "A", "B", permutations=1000, seed=0, alpha=0.05)
    assert units.outcome.tolist() == ["win", "tie"]
    by_language = analysis.win_tie_loss(units, "language").set_index("language")
    assert by_language.loc["eng-Latn", "win"] == 1 and by_language.loc["eng→deu", "tie"] == 1
    grid = analysis.crosslingual_grid(frame)
    assert list(grid) == ["t2"] and len(grid["t2"]) == 2


def test_bad_inputs_fail_in_one_line(tmp_path):
    (tmp_path / "results").mkdir()
    broken = tmp_path / "explanations.json"
    broken.write_text("[{\"index\": 1}]")
    with pytest.raises(ValueError, match="record without an id") as info:
        compare([f"results={tmp_path}", "variants=a,b", f"explanations={broken}"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="variant 'a' matches no variant"):
        select_variants(tmp_path, ["a", "b"])
    with pytest.raises(ValueError, match="alpha=2 is outside"):
        compare([f"results={tmp_path}", "variants=a,b", "alpha=2"])
    record = tmp_path / "results" / "m" / "r" / "harness"
    record.mkdir(parents=True)
    (record / "variant.json").write_text(json.dumps({"config": "x", "revision": "r"}))
    with pytest.raises(ValueError, match="at least two"):
        select_variants(tmp_path, ["x"])


@pytest.fixture(scope="module")
def tiny_splare(tmp_path_factory):
    from test_paper_configs import HIDDEN, LAYER, N_LAYERS, WORDS, save_tiny_sae
    from tiny_models import save_tiny_lm

    from harness.config import compose_config
    from models import build_encoder

    root = tmp_path_factory.mktemp("compare")
    lm = save_tiny_lm(root / "lm", WORDS, arch="llama", hidden=HIDDEN, n_layers=N_LAYERS)
    sae = save_tiny_sae(root / "sae")
    cfg = compose_config(["model=splare2b", f"model.backbone.path={lm}",
                          f"model.backbone.layer={LAYER}", f"model.sae.path={sae}",
                          "model.backbone.dtype=float32", "run.hub=offline"])
    return build_encoder(cfg.model)


def test_latent_top_token_activation_is_the_pooled_value(tiny_splare):
    from harness.compare.examples import latent_top_tokens

    text = "the boundary layer of a wing in supersonic flow"
    vector = tiny_splare.encode_document([text], convert_to_sparse_tensor=False)[0]
    latents = torch.topk(vector, 3).indices.tolist()
    tops = latent_top_tokens(tiny_splare, [text, text], latents)
    for j in latents:
        assert tops[j][0][1] == pytest.approx(float(vector[j]), rel=1e-5)
        values = [v for _, v in tops[j]]
        assert values == sorted(values, reverse=True)


def test_a_crosslingual_beir_folder_enters_the_grid(tmp_path):
    """A BEIR folder with German queries and English documents, declared in the benchmark entry,
    through the real loader, ranx scoring of two variants' run files and the grid code."""
    from harness.compare.variants import Variant
    from harness.runfiles import per_query_ndcg
    from harness.tasks import load_tasks

    corpus = {"d1": "The boundary layer separates at high angles of attack.",
              "d2": "Heat transfer in supersonic flow over a flat plate.",
              "d3": "The river flows through the old city."}
    queries = {"q1": "Wann löst sich die Grenzschicht ab?", "q2": "Wärmeübergang im Überschall",
               "q3": "Welcher Fluss fließt durch die Stadt?"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    for name in ("de_en", "en"):
        folder = tmp_path / name
        (folder / "qrels").mkdir(parents=True)
        (folder / "corpus.jsonl").write_text("".join(
            json.dumps({"_id": d, "text": t}) + "\n" for d, t in corpus.items()), encoding="utf-8")
        (folder / "queries.jsonl").write_text("".join(
            json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()),
            encoding="utf-8")
        (folder / "qrels" / "test.tsv").write_text("".join(
            f"{q}\t{d}\t1\n" for q, docs in qrels.items() for d in docs), encoding="utf-8")
    bench = {"name": "xl", "beir_folders": [
        str(tmp_path / "en"),
        {"path": str(tmp_path / "de_en"), "query_language": "deu-Latn",
         "document_language": "eng-Latn"}]}
    tasks = {t.metadata.name: t for t in load_tasks(bench)}
    units = [(name, "test", "default") for name in sorted(tasks)]
    rankings = {"A": {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d1": 2.0, "d2": 1.0},
                      "q3": {"d3": 1.0}},
                "B": {"q1": {"d2": 3.0, "d1": 1.0}, "q2": {"d2": 1.0}, "q3": {"d1": 1.0}}}
    variants = []
    for label, ranking in rankings.items():
        folder = tmp_path / "results" / label
        per_query = per_query_ndcg(qrels, ranking)
        scores = {"test": [{"hf_subset": "default",
                            "main_score": float(np.mean(list(per_query.values())))}]}
        variant = Variant(folder, {"config": label}, label=label)
        for task, split, subset in units:
            (folder / f"{task}.json").parent.mkdir(parents=True, exist_ok=True)
            (folder / f"{task}.json").write_text(json.dumps({"scores": scores}))
            unit_dir = folder / "harness" / "queries" / task / split
            unit_dir.mkdir(parents=True)
            (unit_dir / f"{subset}.trec").write_text(trec_lines(ranking, label))
            record = unit_dir / f"{subset}.ndcg_at_10.json"
            record.write_text(json.dumps({"per_query": per_query, "trec_file": f"{subset}.trec"}))
            variant.units[(task, split, subset)] = record
        variants.append(variant)

    frame = analysis.per_query_table(variants, tasks, units)
    grid = analysis.crosslingual_grid(frame)
    assert list(grid) == ["LocalBEIR-de_en"]  # the bare English folder is monolingual
    cells = grid["LocalBEIR-de_en"].sort_values("variant")
    assert cells[["variant", "query_lang", "doc_lang", "n"]].values.tolist() == [
        ["A", "deu-Latn", "eng-Latn", 3], ["B", "deu-Latn", "eng-Latn", 3]]
    expected = [np.mean(list(per_query_ndcg(qrels, rankings[v]).values())) for v in "AB"]
    assert cells.score.tolist() == pytest.approx(expected)
    units_frame = analysis.unit_table(frame, "A", "B", permutations=100, seed=0, alpha=0.05)
    assert dict(zip(units_frame.task, units_frame.language, strict=True)) == {
        "LocalBEIR-de_en": "deu→eng", "LocalBEIR-en": "eng-Latn"}
