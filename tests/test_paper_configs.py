"""The shipped paper configs (conf/model/splare7b.yaml & co.) through the real runner, on tiny
random models of each config's own family built here (Llama, Gemma 2, Gemma 3, Qwen3), in
bfloat16 where the paper runs it, on a slice of a real local task.

Checks what a user of those configs relies on: zero-shot runs are causal, results land under a
content revision with a counted ModelMeta and a variant record, and a changed input is a new
result folder while the old one stays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_sparse
from mteb.cache import ResultCache
from tiny_models import save_tiny_lm
from transformers import AutoModel

from harness.config import compose_config
from harness.paths import REPO_ROOT, shared_data_root
from harness.runner import VARIANT_FILE, run

pytestmark = pytest.mark.skipif(shared_data_root() is None, reason="needs ../shared/datasets")

HIDDEN, N_LAYERS, LAYER, D_SAE = 32, 3, 1, 64
WORDS = ["the", "of", "and", "a", "in", "to", "is", "for", "flow", "pressure", "boundary",
         "layer", "heat", "wing", "shock", "number", "mach", "surface", "theory", "effect"]
TASK = ["benchmark=local_real", "benchmark.data_tasks=[LocalCranfield]",
        "benchmark.slice_queries=8", "benchmark.slice_docs=30"]


def save_tiny_sae(folder: Path, layer: int = LAYER) -> Path:
    """A random JumpReLU sae-lens SAE (`HIDDEN` -> `D_SAE`) reading `blocks.{layer}.hook_resid_post`."""
    return tiny_sparse.save_tiny_sae(folder, HIDDEN, D_SAE, layer)


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper")
    dirs = {
        arch: save_tiny_lm(root / arch, WORDS, arch=arch, hidden=HIDDEN, n_layers=N_LAYERS)
        for arch in ("llama", "gemma2", "gemma", "qwen3")
    }
    dirs["sae"] = save_tiny_sae(root / "sae")
    return dirs


def overrides(model: str, backbone: Path, results: Path, cache: Path, *extra: str) -> list[str]:
    return [
        f"model={model}", f"model.backbone.path={backbone}", f"model.backbone.layer={LAYER}",
        *TASK, f"run.results_dir={results}", f"run.cache_dir={cache}", "run.show_progress=false",
        *extra,
    ]


def result_dirs(results: Path) -> list[Path]:
    """`results/<model>/<revision>/` folders that hold at least one task file."""
    return sorted({p.parent for p in (results / "results").glob("*/*/*.json")})


def test_splare7b_cli_bf16_on_a_tiny_llama(parts, tmp_path):
    """The headline config through `python -m harness`, bf16, local backbone and SAE."""
    results, cache = tmp_path / "results", tmp_path / "cache"
    argv = overrides("splare7b", parts["llama"], results, cache, f"model.sae.path={parts['sae']}",
                     "model.backbone.dtype=bfloat16", f"hydra.run.dir={tmp_path}/hydra")
    out = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=REPO_ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    (folder,) = result_dirs(results)
    variant = json.loads((folder / "harness" / VARIANT_FILE).read_text())
    assert variant["attention"] == "causal" and variant["bidirectional_setting"] == "auto"
    assert variant["dtype"] == "bfloat16" and variant["trained"] is False
    assert "-causal-" in folder.parent.name and "-bf16-" in folder.parent.name
    meta = json.loads((folder / "model_meta.json").read_text())
    assert meta["revision"] == folder.name and len(folder.name) == 12
    assert meta["embed_dim"] == D_SAE
    truncated = AutoModel.from_pretrained(parts["llama"], num_hidden_layers=LAYER + 1)
    sae_encoder = HIDDEN * D_SAE + D_SAE + HIDDEN + D_SAE  # W_enc, b_enc, b_dec, threshold
    assert meta["n_parameters"] == sum(p.numel() for p in truncated.parameters()) + sae_encoder
    cached = ResultCache(results).load_results(models=[meta["name"]], require_model_meta=False)
    assert len(cached.model_results) == 1 and cached.model_results[0].task_results


@pytest.mark.parametrize(
    ("model", "arch", "extra"),
    [
        ("splare2b", "llama", ()),
        ("splade_llama", "llama", ()),
        ("splare_gemma3_270m", "gemma", ("model.backbone.dtype=bfloat16",)),
        ("splare_gemma2_2b", "gemma2", ()),
        ("splare7b", "qwen3", ("model.backbone.dtype=bfloat16",)),
    ],
)
def test_paper_configs_run_on_their_families(parts, tmp_path, model, arch, extra):
    cfg_sae = () if model == "splade_llama" else (f"model.sae.path={parts['sae']}",)
    cfg = compose_config(overrides(model, parts[arch], tmp_path / "r", tmp_path / "c",
                                   *cfg_sae, *extra))
    table = run(cfg, offline=True)
    assert len(table) == 1 and 0.0 <= float(table.main_score.iloc[0]) <= 1.0
    (folder,) = result_dirs(tmp_path / "r")
    variant = json.loads((folder / "harness" / VARIANT_FILE).read_text())
    assert variant["attention"] == "causal" and variant["kind"] == cfg.model.kind


def test_explicit_bidirectional_without_weights_warns_and_is_named(parts, tmp_path, caplog):
    cfg = compose_config(overrides("splare2b", parts["llama"], tmp_path / "r", tmp_path / "c",
                                   f"model.sae.path={parts['sae']}",
                                   "model.backbone.bidirectional=true"))
    run(cfg, offline=True)
    assert any("no adapter or checkpoint" in r.getMessage() for r in caplog.records)
    (folder,) = result_dirs(tmp_path / "r")
    assert "-bi-" in folder.parent.name


def test_a_changed_input_is_a_new_result_folder(parts, tmp_path):
    """dtype, one byte of a weight file: each rerun recomputes; old results stay."""
    backbone = tmp_path / "llama"
    subprocess.run(["cp", "-r", str(parts["llama"]), str(backbone)], check=True)
    base = overrides("splare2b", backbone, tmp_path / "r", tmp_path / "c",
                     f"model.sae.path={parts['sae']}")
    run(compose_config(base), offline=True)
    seen = result_dirs(tmp_path / "r")
    assert len(seen) == 1
    run(compose_config(base), offline=True)  # nothing changed: same folder, reused
    assert result_dirs(tmp_path / "r") == seen

    weights = next(backbone.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one byte of the last tensor
    weights.write_bytes(bytes(data))
    run(compose_config(base), offline=True)
    after_weights = result_dirs(tmp_path / "r")
    assert len(after_weights) == 2 and set(seen) < set(after_weights)

    run(compose_config([*base, "model.backbone.dtype=float32"]), offline=True)
    assert len(result_dirs(tmp_path / "r")) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("model.backbone.attn_implementation=flash_attention_2",
          "model.backbone.bidirectional=true"), "flash_attention_2"),
        (("model.backbone.attn_implementation=sdpa",), "sdpa"),  # Gemma 2's soft-capping
    ],
)
def test_attention_that_cannot_be_honoured_fails_before_loading(parts, tmp_path, monkeypatch,
                                                                 extra, message):
    from models import build

    def never(*args, **kwargs):
        raise AssertionError("weights loaded before the attention check")

    monkeypatch.setattr(build.CausalLMBackbone, "from_pretrained", never)
    cfg = compose_config(overrides("splare_gemma2_2b", parts["gemma2"], tmp_path / "r",
                                   tmp_path / "c", f"model.sae.path={parts['sae']}", *extra))
    with pytest.raises(ValueError, match=message) as info:
        run(cfg, offline=True)
    assert "\n" not in str(info.value) and "valid choices" in str(info.value)
    assert not (tmp_path / "r" / "results").exists() or not result_dirs(tmp_path / "r")


@pytest.mark.parametrize(
    ("setting", "message"),
    [("run.devices=[cuda:7]", "'cuda:7' does not exist"),
     ("run.max_tokens_per_batch=8", "run.max_tokens_per_batch=8 must be"),
     ("run.cache_max_k=-1", "run.cache_max_k must be an integer >= 0")],
)
def test_run_settings_fail_in_one_line_before_loading(parts, tmp_path, monkeypatch, setting,
                                                      message):
    from models import build

    def never(*args, **kwargs):
        raise AssertionError("weights loaded before the settings were checked")

    monkeypatch.setattr(build.CausalLMBackbone, "from_pretrained", never)
    cfg = compose_config(overrides("splare2b", parts["llama"], tmp_path / "r", tmp_path / "c",
                                   f"model.sae.path={parts['sae']}", setting))
    with pytest.raises(ValueError, match=message) as info:
        run(cfg, offline=True)
    assert "\n" not in str(info.value)
