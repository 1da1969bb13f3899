"""Leaderboard reproduction: the OpenSearch configs against the leaderboard CSV and mteb's own
registry, task selection, and a tiny inference-free SparseEncoder of the same architecture run
through the runner with the config, then Δ computed by `python -m harness.reproduce --no-run`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mteb
import pytest
from omegaconf import OmegaConf
from tiny_sparse import save_tiny_inference_free
from transformers import AutoModelForMaskedLM

from harness.config import CONF_DIR, compose_config
from harness.paths import shared_data_root
from harness.reports.leaderboard import LEADERBOARD_CSV, load_leaderboard
from harness.reproduce import main, plan
from harness.runner import run
from harness.tasks import load_tasks
from models.embedded import resolve
from models.spec import ModelSpec

pytestmark = pytest.mark.skipif(not LEADERBOARD_CSV.is_file(), reason="no shared leaderboard CSV")

CONFIGS = sorted(p.stem for p in (CONF_DIR / "model").glob("opensearch_*.yaml"))
MODEL = "opensearch_doc_v3_distill"
HUB_ID = "opensearch-project/opensearch-neural-sparse-encoding-doc-v3-distill"
TASK = "LocalCranfield (slice_8q_seed0_30d)"


def csv_rows(model: str) -> list[dict[str, str]]:
    with LEADERBOARD_CSV.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["model"] == model]


def test_every_leaderboard_opensearch_model_has_a_config():
    ids = {ModelSpec.from_config(OmegaConf.load(CONF_DIR / "model" / f"{c}.yaml")).backbone.id
           for c in CONFIGS}
    with LEADERBOARD_CSV.open(newline="") as f:
        published = {r["model"] for r in csv.DictReader(f) if r["model"].startswith("opensearch-project/")}
    assert ids == published and len(CONFIGS) == 4


@pytest.mark.parametrize("config", CONFIGS)
def test_config_is_the_leaderboard_setting(config):
    spec = ModelSpec.from_config(OmegaConf.load(CONF_DIR / "model" / f"{config}.yaml"))
    assert spec.kind.name == "splade_mlm" and (spec.top_k_query, spec.top_k_document) == (0, 0)
    assert spec.backbone.dtype == "float16"  # mteb's SparseEncoderWrapper casts to fp16
    assert {r["revision"] for r in csv_rows(spec.backbone.id)} == {spec.backbone.revision}
    registry = mteb.get_model_meta(spec.backbone.id)  # mteb 2.26's own record of the model
    assert (registry.revision, registry.release_date, registry.max_tokens) == (
        spec.backbone.revision, spec.facts.release_date, spec.backbone.max_length)
    assert list(spec.facts.languages) == registry.languages and spec.facts.license == registry.license


@pytest.mark.parametrize(("config", "model_id"), [(MODEL, HUB_ID), ("bm25", "mteb/baseline-bm25s")])
def test_plan_runs_exactly_the_leaderboard_tasks(config, model_id):
    cfg, rows = plan(config, [], load_leaderboard())
    names = [t.metadata.name for t in load_tasks(cfg.benchmark)]  # metadata only, no download
    assert sorted(names) == sorted({r["task"] for r in csv_rows(model_id)})
    assert len(names) == (6 if config == MODEL else 25)
    assert cfg.model.name == config and set(rows["model"]) == {model_id}


def test_bad_models_fail_in_one_line(capsys, tmp_path):
    assert main(["splade_tiny", "--no-run"]) == 2
    assert "'splade_tiny' (kind splade_mlm) has no leaderboard counterpart" in capsys.readouterr().err
    assert main(["splare_tiny", "--no-run"]) == 2
    assert "(kind splare) has no leaderboard counterpart" in capsys.readouterr().err
    assert main(["nope", "--no-run"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main([MODEL, "--no-run", f"run.results_dir={tmp_path}"]) == 2
    assert "no results of model config" in capsys.readouterr().err.strip()


@pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets")
def test_tiny_opensearch_model_through_the_runner_and_delta(tmp_path, capsys):
    """The config with a tiny random Router SparseEncoder (queries: IDF lookup; documents: BERT MLM
    + SpladePooling) in place of the hub model, on a Cranfield slice; then Δ against the
    leaderboard rows of doc-v3-distill, and against a CSV whose rows name the measured task."""
    tiny = save_tiny_inference_free(tmp_path / "tiny", resolve("embedded:splade-bert-tiny"))
    overrides = [f"model.backbone.path={tiny}", f"run.results_dir={tmp_path / 'r'}",
                 f"run.cache_dir={tmp_path / 'c'}", "run.show_progress=false"]
    cfg = compose_config([f"model={MODEL}", "benchmark=local_real",
                          "benchmark.data_tasks=[LocalCranfield]", "benchmark.slice_queries=8",
                          "benchmark.slice_docs=30", *overrides])
    table = run(cfg, offline=True)
    score = float(table.main_score.iloc[0])
    (folder,) = {p.parent for p in (tmp_path / "r" / "results").glob("*/*/*.json")}
    variant = json.loads((folder / "harness" / "variant.json").read_text())
    assert (variant["kind"], variant["backbone_id"], variant["dtype"]) == ("splade_mlm", HUB_ID, "float16")
    meta = json.loads((folder / "model_meta.json").read_text())
    mlm = AutoModelForMaskedLM.from_pretrained(tiny)  # the document side, plus the query IDF vector
    assert meta["embed_dim"] == mlm.config.vocab_size
    idf = mlm.config.vocab_size
    assert meta["n_parameters"] == sum(p.numel() for p in mlm.parameters()) + idf

    assert main([MODEL, "--no-run", *overrides]) == 0  # real CSV: 6 tasks, none measured here
    out = capsys.readouterr().out
    assert f"vs {HUB_ID} @ babf71f3c48695e2e53a978208e8aba48335e3c0" in out
    assert "0/6 task(s) measured" in out and "51.91" in out  # ArguAna 0.51909

    board = tmp_path / "board.csv"
    rows = csv_rows(HUB_ID)
    rows[0] = {**rows[0], "task": TASK, "main_score": f"{score - 0.01:.6f}"}  # Δ = +1.00: flagged
    rows[1] = {**rows[1], "task": TASK.replace("30d", "31d")}  # a task this run does not have
    with board.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main([MODEL, "--no-run", "--leaderboard", str(board), *overrides]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if TASK in x)
    expected = 100 * score - 100 * float(f"{score - 0.01:.6f}")
    assert f"{expected:+.2f}" in line and line.split()[-2] == "!"
    assert f"{100 * score:.2f}" in line


def test_loader_rows_equal_the_csv():
    board = load_leaderboard()
    for _, row in board[board["model"] == HUB_ID].iterrows():
        (raw,) = [r for r in csv_rows(HUB_ID) if r["task"] == row["task"]]
        assert row["value"] == pytest.approx(100 * float(raw["main_score"]))
        assert Path(raw["source_path"]).name == f"{row['task']}.json"
