"""`make plan`: task sizes from mteb's stored statistics, token and hour estimates, cache size,
each checked against an independent computation (mteb's stats files read directly, a real CSR
matrix, the encoder's own tokenizer)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mteb
import numpy as np
import pytest
import scipy.sparse as sp

from harness import plan
from harness.config import compose_config
from harness.paths import shared_data_root

STATS = Path(mteb.__file__).parent / "descriptive_stats" / "Retrieval"


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"tokens_per_second": None, "gpus": 8, "chars_per_token": None, **kw})


def _row(table, task):
    return table.set_index("task").loc[task]


def test_split_totals_match_mteb_stats_file():
    """ArguAna: one split with totals; tokens = texts x min(avg chars / cpt, max_length)."""
    stats = json.loads((STATS / "ArguAna.json").read_text())["test"]
    cfg = compose_config(["model=splade_tiny", "benchmark=mteb_eng", "run.tasks=[ArguAna]"])
    table, notes = plan.plan_model(cfg, _args(chars_per_token=3.5, tokens_per_second=1000.0, gpus=4))
    row = _row(table, "ArguAna")
    docs, doc_chars = stats["num_documents"], stats["documents_text_statistics"]["total_text_length"]
    queries, query_chars = stats["num_queries"], stats["queries_text_statistics"]["total_text_length"]
    assert (row["documents"], row["queries"]) == (docs, queries)
    assert (row["doc chars"], row["query chars"]) == (doc_chars, query_chars)
    doc_tokens = docs * min(doc_chars / docs / 3.5, 512)
    query_tokens = queries * min(query_chars / queries / 3.5, 512)
    assert row["doc tokens"] == round(doc_tokens) and row["query tokens"] == round(query_tokens)
    hours = (doc_tokens + query_tokens) / 1000 / 3600
    assert any(f"{hours:.2f} h on 1 GPU, {hours / 4:.2f} h on 4 GPUs" in n for n in notes), notes
    assert (_row(table, "TOTAL")[["documents", "queries"]] == [docs, queries]).all()


def test_counts_from_characters_when_mteb_keeps_no_count():
    """BelebeleRetrieval's stats keep characters only: texts = total / average characters."""
    split = json.loads((STATS / "BelebeleRetrieval.json").read_text())["test"]
    cfg = compose_config(["model=splare_tiny", "benchmark=mmteb_multilingual",
                          "run.tasks=[BelebeleRetrieval]"])
    table, _ = plan.plan_model(cfg, _args(chars_per_token=4.0))
    row = _row(table, "BelebeleRetrieval")
    docs_stats, query_stats = split["documents_text_statistics"], split["queries_text_statistics"]
    docs = round(docs_stats["total_text_length"] / docs_stats["average_text_length"])
    queries = round(query_stats["total_text_length"] / query_stats["average_text_length"])
    assert (row["documents"], row["queries"]) == (docs, queries)
    tokens = docs * min(docs_stats["total_text_length"] / docs / 4.0, cfg.model.backbone.max_length)
    assert row["doc tokens"] == round(tokens)


def test_truncation_caps_long_documents():
    assert plan.capped_tokens(10, 10 * 8000, 4.0, 1024) == 10 * 1024
    assert plan.capped_tokens(10, 10 * 400, 4.0, 1024) == 10 * 100


@pytest.mark.parametrize("cap", [1, 40, 1024])
def test_cache_bytes_equal_a_real_csr_of_that_cap(cap):
    """The formula against scipy's CSR arrays as the encoding cache stores them (float32 values)."""
    n, dim = 37, 262_144
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(n), cap)
    cols = np.concatenate([rng.choice(dim, cap, replace=False) for _ in range(n)])
    matrix = sp.csr_matrix((np.ones(n * cap, dtype=np.float32), (rows, cols)), shape=(n, dim))
    stored = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    assert plan.cache_bytes(n, cap) == stored


def test_cache_cap_follows_the_search_model():
    assert plan.cache_cap(400, 1024) == 1024
    assert plan.cache_cap(2000, 1024) == 2000
    assert plan.cache_cap(0, 1024) == 0 and plan.cache_cap(40, 0) == 0


def test_chars_per_token_measured_with_the_models_tokenizer():
    """The ratio on the English embedded passages, recomputed with the encoder's own tokenizer."""
    import models
    from models.spec import ModelSpec

    cfg = compose_config(["model=splade_tiny", "benchmark=mteb_eng", "run.tasks=[ArguAna]"])
    spec = ModelSpec.from_config(cfg.model)
    mteb_tasks, local_tasks = plan.split_tasks(cfg)
    texts, where = plan.sample_texts(local_tasks, mteb_tasks)
    assert "eng" in where and len(texts) > 50
    ratio, _ = plan.measure_chars_per_token(spec, texts)
    tokenizer = models.build_encoder(cfg.model).tokenizer  # what encoding tokenizes with
    tokens = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts)
    assert ratio == pytest.approx(sum(map(len, texts)) / tokens)
    _, notes = plan.plan_model(cfg, _args())
    assert any(n.startswith(f"chars/token: {ratio:.3f}, measured") for n in notes)


def test_plan_cli_rejects_bad_values_in_one_line(capsys):
    with pytest.raises(SystemExit):
        plan.main(["--tokens-per-second", "-5", "model=splade_tiny"])
    assert "--tokens-per-second must be a positive float, got '-5'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        plan.main(["model=nope", "benchmark=mteb_eng"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: unknown model 'nope'")


@pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets")
def test_local_measurement_equals_mteb_stats_of_the_same_data():
    """LocalLegalBenchCorporateLobbying (measured on disk) is mteb's LegalBenchCorporateLobbying:
    its counts and characters equal mteb's stored statistics of that task."""
    stats = json.loads((STATS / "LegalBenchCorporateLobbying.json").read_text())["test"]
    cfg = compose_config(["model=splade_tiny", "benchmark=local_real",
                          "run.tasks=[LocalLegalBenchCorporateLobbying]"])
    table, _ = plan.plan_model(cfg, _args(chars_per_token=4.0))
    row = _row(table, "LocalLegalBenchCorporateLobbying")
    assert row["source"] == "local data"
    assert (row["documents"], row["queries"]) == (stats["num_documents"], stats["num_queries"])
    assert row["doc chars"] == stats["documents_text_statistics"]["total_text_length"]
    assert row["query chars"] == stats["queries_text_statistics"]["total_text_length"]
