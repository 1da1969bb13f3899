"""Every shipped config composes; bad group values fail in one line listing the valid ones."""

import subprocess
import sys

import pytest

from harness.config import GROUPS, compose_config, group_options
from harness.paths import REPO_ROOT


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in group_options(g)]
)
def test_every_shipped_config_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    node = cfg[group]
    assert node.name == option, f"conf/{group}/{option}.yaml must set name: {option}"
    if group == "model":
        assert node.kind in ("splare", "splade_llm", "splade_mlm", "bm25")
    if group == "benchmark":
        assert node.mteb_benchmark or node.local_tasks or node.data_tasks or node.beir_folders


@pytest.mark.parametrize("option,expected", [("q10_d100", (10, 100)), ("nocap", (0, 0))])
def test_top_k_ablation_group_overrides_the_model(option, expected):
    cfg = compose_config(["model=splare7b", f"+top_k={option}"])
    assert (cfg.model.top_k.query, cfg.model.top_k.document) == expected
    with pytest.raises(ValueError, match="unknown top_k 'q5_d50'"):
        compose_config(["model=splare7b", "+top_k=q5_d50"])


def test_each_group_has_options():
    for group in GROUPS:
        assert group_options(group), group


def test_unknown_group_value_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; valid: .*splare7b"):
        compose_config(["model=nope"])
    with pytest.raises(ValueError, match=r"unknown search 'faiss'; valid: exact"):
        compose_config(["search=faiss"])


def test_cli_prints_composed_config_and_rejects_unknown_values():
    ok = subprocess.run(
        [sys.executable, "-m", "harness", "model=splare7b", "benchmark=mmteb_multilingual", "--cfg", "job"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "layer: 26" in ok.stdout and "MTEB(Multilingual, v2)" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "-m", "model=splare7b,splare9b"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: unknown model 'splare9b'; valid: {', '.join(group_options('model'))}"
    ]


def test_bad_top_k_fails_before_loading_anything():
    from harness.runner import check_config

    cfg = compose_config(["model=splare7b", "model.top_k.query=-3"])
    with pytest.raises(ValueError, match=r"model.top_k.query must be an integer >= 0.*-3"):
        check_config(cfg)
    cfg = compose_config(["model=splare7b", "model.top_k.document=2.5"])
    with pytest.raises(ValueError, match=r"model.top_k.document.*2.5"):
        check_config(cfg)
