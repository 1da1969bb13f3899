"""`python -m harness.explain`: the contributions q_j * d_j add up to the search score, largest
first; labels come from a local explanations file; bad files fail in one line. Tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from test_paper_configs import HIDDEN, LAYER, N_LAYERS, WORDS, save_tiny_sae
from tiny_models import save_tiny_lm

from harness.config import compose_config
from harness.explain import explain
from models import build_encoder
from models.inspect import contributions, load_explanations

QUERY, DOCUMENT = "flow over the wing", "the boundary layer of a wing in supersonic flow"


@pytest.fixture(scope="module")
def overrides(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("explain")
    lm = save_tiny_lm(root / "lm", WORDS, arch="llama", hidden=HIDDEN, n_layers=N_LAYERS)
    sae = save_tiny_sae(root / "sae")
    return ["model=splare2b", f"model.backbone.path={lm}", f"model.backbone.layer={LAYER}",
            f"model.sae.path={sae}", "model.backbone.dtype=float32", "run.hub=offline"]


def test_contributions_add_up_to_the_dense_score(overrides):
    encoder = build_encoder(compose_config(overrides).model)
    score, rows = contributions(encoder, QUERY, DOCUMENT, n=10_000)
    q = encoder.encode_query([QUERY], convert_to_sparse_tensor=False)[0]
    d = encoder.encode_document([DOCUMENT], convert_to_sparse_tensor=False)[0]
    assert score == pytest.approx(float(torch.dot(q, d)), rel=1e-5)
    assert sum(qj * dj for _, qj, dj in rows) == pytest.approx(score, rel=1e-5)
    products = [qj * dj for _, qj, dj in rows]
    assert products == sorted(products, reverse=True) and len(rows) > 1
    assert all(float(q[j]) == pytest.approx(qj) and float(d[j]) == pytest.approx(dj)
               for j, qj, dj in rows)


def test_cli_labels_latents_from_an_explanations_file(overrides, tmp_path):
    encoder = build_encoder(compose_config(overrides).model)
    _, rows = contributions(encoder, QUERY, DOCUMENT, n=3)
    top = rows[0][0]
    export = tmp_path / "explanations.jsonl"
    export.write_text(json.dumps({"index": top, "description": "aerodynamics"}) + "\n")
    text = explain([*overrides, f"query={QUERY}", f"document={DOCUMENT}", "n=3",
                    f"explanations={export}"])
    lines = text.splitlines()
    assert lines[0].startswith("score q.d = ") and "aerodynamics" in lines[2]
    assert len(lines) == 2 + len(rows)


def test_bad_explanation_files_fail_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_explanations(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json: not a valid export") as info:
        load_explanations(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="give both"):
        explain(["query=x"])
