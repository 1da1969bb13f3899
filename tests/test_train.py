"""Training recipe (harness/train): losses against their definitions, one real training step on tiny
random models (Gemma 3 config + word-level tokenizer + sae-lens SAE built here), frozen SAE,
adapter save/reload, data loading and the CLI's one-line errors. CPU, offline, seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from sentence_transformers.base.data_collator import BaseDataCollator
from tiny_models import save_tiny_lm

import models
from harness import offline
from harness.config import CONF_DIR
from harness.offline import HubUnavailableError
from harness.paths import REPO_ROOT
from harness.train.data import load_training_data, standardise
from harness.train.losses import (
    MeasuredFlopsLoss,
    StudentTemperatureKLDivLoss,
    build_loss,
    flops,
)
from harness.train.run import train

HIDDEN, N_LAYERS, LAYER, D_SAE = 32, 3, 1, 64
WORDS = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "red", "blue", "green", "house",
    "tree", "river", "bird", "sang", "sun", "moon", "rain", "fell", "car", "drove", "road", "boat", "sailed",
    "sea",
]
ROWS = [
    {"query": "cat sat", "positive": "the cat sat on the mat", "negatives": ["the car drove fast", "a bird sang"],
     "scores": [9.0, 1.0, -2.0]},
    {"query": "dog ran", "positive": "a dog ran on the road", "negatives": ["the moon", "rain fell on the sea"],
     "scores": [8.0, 0.5, 0.0]},
    {"query": "bird sang", "positive": "a blue bird sang in the tree", "negatives": ["the red house", "dog ran"],
     "scores": [7.0, -1.0, 2.0]},
    {"query": "boat sailed", "positive": "the boat sailed the green sea", "negatives": ["sun", "the cat sat"],
     "scores": [9.5, 0.0, 1.0]},
]
TEXTS = ["the cat sat on the mat", "a boat sailed", "rain fell on the red house by the river"]

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline.hub_reachable.cache_clear()
    yield
    offline.hub_reachable.cache_clear()


def _save_tiny_gemma(folder: Path) -> Path:
    return save_tiny_lm(folder, WORDS, arch="gemma", hidden=HIDDEN, n_layers=N_LAYERS)


def _save_tiny_sae(folder: Path) -> Path:
    torch.manual_seed(1)
    sae = StandardSAE(StandardSAEConfig(
        d_in=HIDDEN, d_sae=D_SAE, metadata=SAEMetadata(hook_name=f"blocks.{LAYER}.hook_resid_post")
    ))
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn_like(param) * 0.5)
    sae.save_model(folder)
    return folder


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_assets")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return {"lm": _save_tiny_gemma(root / "lm"), "sae": _save_tiny_sae(root / "sae"), "jsonl": data}


def _model_cfg(assets: dict[str, Path], kind: str = "splare", adapter: Path | None = None):
    return OmegaConf.create({
        "name": f"tiny_{kind}",
        "kind": kind,
        "backbone": {"id": None, "path": str(assets["lm"]), "layer": LAYER, "dtype": "float32",
                     "device": "cpu", "max_length": 32, "bidirectional": False,
                     "adapter": str(adapter) if adapter else None},
        "sae": {"release": None, "id": None, "path": str(assets["sae"])} if kind == "splare" else None,
        "top_k": {"query": 0, "document": 0},
        "tau": 50.0 if kind == "splare" else 10.0,
        "checkpoint": None,
    })


def _train_cfg(assets, out: Path, kind: str = "splare", distill: bool = False, **train):
    """The composed conf/train.yaml with the tiny model and the JSONL rows as data."""
    negatives = 2 if distill else 0
    overrides = ["train=smoke", "data=jsonl", f"data.path={assets['jsonl']}", f"data.negatives={negatives}",
                 f"train.output_dir={out}", "train.batch_size=4", "train.steps=1", "train.lr=1e-3",
                 "train.lora.r=4", "train.max_length=16", "train.logging_steps=1", "train.warmup_ratio=0.0"]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    if not distill:
        overrides.append("data.columns.scores=null")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    cfg.model = _model_cfg(assets, kind)
    return cfg


def _batch_loss(encoder, cfg, rows) -> dict[str, torch.Tensor]:
    """The recipe's loss parts on `rows` at full lambda (no warm-up), without gradients."""
    data = standardise(rows, {"query": "query", "positive": "positive", "negatives": "negatives",
                              "scores": cfg.data.columns.scores}, cfg.data.negatives, "test")
    collate = BaseDataCollator(preprocess_fn=encoder.preprocess)
    batch = collate([data[i] for i in range(len(data))])
    labels = batch.pop("label", None)
    columns = [c for c in data.column_names if c != "label"]
    features = [{k.removeprefix(f"{c}_"): v for k, v in batch.items() if k.startswith(f"{c}_")} for c in columns]
    loss = build_loss(encoder, cfg.model.tau, labels is not None, 1e-4, 1e-4)
    with torch.no_grad():
        return {k: float(v) for k, v in loss(features, labels).items()}


def _dense(encoder, texts=TEXTS) -> torch.Tensor:
    return encoder.encode(texts, convert_to_sparse_tensor=False, batch_size=2)


# --- losses against their definitions ---------------------------------------------------------


def test_flops_matches_definition_on_hand_example():
    # mean over the 2 vectors: [2, 0, 1] -> FLOPS = 2^2 + 0^2 + 1^2 = 5; L0 = (2 + 1) / 2
    embeddings = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert float(flops(embeddings)) == pytest.approx(5.0)
    regularizer = MeasuredFlopsLoss(model=None)
    assert float(regularizer.compute_loss_from_embeddings(embeddings)) == pytest.approx(5.0)
    assert regularizer.pop_means() == {"flops": pytest.approx(5.0), "l0": pytest.approx(1.5)}
    assert regularizer.pop_means() == {}


def test_kl_puts_temperature_on_student_scores_only():
    torch.manual_seed(0)
    query, pos, neg = (torch.rand(3, 5) for _ in range(3))
    teacher = torch.tensor([[3.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    tau = 0.5
    loss = StudentTemperatureKLDivLoss(model=None, temperature=tau)
    student = torch.stack([(query * pos).sum(1), (query * neg).sum(1)], dim=1) / tau
    p = teacher.softmax(1)
    expected = (p * (p.log() - student.log_softmax(1))).sum(1).mean()
    assert float(loss.compute_loss_from_embeddings([query, pos, neg], teacher)) == pytest.approx(float(expected))


def test_splade_loss_regularisers_match_flops_of_the_encodings(assets):
    cfg = _train_cfg(assets, Path("unused"))
    encoder = models.build_encoder(cfg.model)
    parts = _batch_loss(encoder, cfg, ROWS)
    queries = _dense(encoder, [r["query"] for r in ROWS])
    documents = _dense(encoder, [r["positive"] for r in ROWS])
    torch.testing.assert_close(parts["query_regularizer_loss"], 1e-4 * float(flops(queries)), rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(parts["document_regularizer_loss"], 1e-4 * float(flops(documents)), rtol=1e-4, atol=1e-9)
    # contrastive: cross-entropy of the in-batch score matrix / tau against the diagonal
    scores = queries @ documents.T / cfg.model.tau
    expected = torch.nn.functional.cross_entropy(scores, torch.arange(len(ROWS)))
    assert parts["base_loss"] == pytest.approx(float(expected), rel=1e-4)


# --- one training step on tiny models ---------------------------------------------------------


@pytest.mark.parametrize(("kind", "distill"), [("splare", False), ("splare", True), ("splade_llm", False)])
def test_one_step_lowers_loss_and_adapter_reloads(assets, tmp_path, kind, distill):
    cfg = _train_cfg(assets, tmp_path / "run", kind=kind, distill=distill)
    before = _batch_loss(models.build_encoder(cfg.model), cfg, ROWS)["base_loss"]
    result = train(cfg)
    reloaded = models.build_encoder(_model_cfg(assets, kind, adapter=result.folder))
    after = _batch_loss(reloaded, cfg, ROWS)["base_loss"]
    assert after < before, (before, after)
    # the saved adapter reproduces the trained encoder, and differs from the base model
    trained = _dense(result.encoder.eval())
    torch.testing.assert_close(_dense(reloaded), trained, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(_dense(models.build_encoder(cfg.model)), trained, atol=1e-4)
    # what the run leaves beside the adapter
    for name in ("adapter_config.json", "adapter_model.safetensors", "train_config.yaml", "train_summary.json"):
        assert (result.folder / name).is_file(), name
    logs = [json.loads(line) for line in (result.folder / "train_log.jsonl").read_text().splitlines()]
    assert {"loss", "query_flops", "query_l0", "document_flops", "document_l0"} <= set(logs[0])
    assert result.summary["objective"] == ("kl_distillation" if distill else "contrastive")
    assert result.summary["temperature"] == cfg.model.tau  # tau comes from the model config


def test_cpu_budget_stops_training_at_the_step_that_spends_it(assets, tmp_path):
    # a budget far below one step's CPU time: the run stops after its first step
    cfg = _train_cfg(assets, tmp_path / "budget", batch_size=2, steps=5, cpu_minutes=1e-6)
    summary = train(cfg).summary
    assert (summary["steps"], summary["stopped_by_cpu_budget"]) == (1, True)
    assert summary["cpu_budget_seconds"] == pytest.approx(6e-5)
    assert summary["cpu_seconds"] > 0
    unbudgeted = train(_train_cfg(assets, tmp_path / "free", batch_size=2, steps=3)).summary
    assert (unbudgeted["steps"], unbudgeted["stopped_by_cpu_budget"]) == (3, False)
    assert unbudgeted["cpu_budget_seconds"] is None


def test_training_leaves_the_sae_and_base_weights_frozen(assets, tmp_path):
    cfg = _train_cfg(assets, tmp_path / "run")
    base = models.build_encoder(cfg.model)
    result = train(cfg)
    sae, base_sae = result.encoder[1].sae, base[1].sae
    for name, param in base_sae.named_parameters():
        assert torch.equal(dict(sae.named_parameters())[name], param), name
    assert not any(p.requires_grad for p in sae.parameters())
    peft_model = result.encoder[0].model
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base_weights = dict(base[0].model.named_parameters())
    for name, param in peft_model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base_weights[name.replace(".base_layer", "")]), name


def test_held_out_pairs_are_scored_every_logging_step(assets, tmp_path):
    cfg = _train_cfg(assets, tmp_path / "run", eval_pairs=2, batch_size=2, steps=2)
    result = train(cfg)
    assert (result.summary["rows"], result.summary["held_out_rows"]) == (len(ROWS) - 2, 2)
    logs = [json.loads(line) for line in (result.folder / "train_log.jsonl").read_text().splitlines()]
    evals = [line for line in logs if "eval_base_loss" in line]
    assert [line["step"] for line in evals] == [0, 1, 2]  # zero-shot, then every logging step
    assert all(line["eval_base_loss"] > 0 for line in evals)


def _adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _assert_same_adapter(a: Path, b: Path, atol: float = 1e-6) -> None:
    first, second = _adapter_weights(a), _adapter_weights(b)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=1e-5, atol=atol)


def test_gradient_checkpointing_trains_the_same_adapter(assets, tmp_path):
    plain = train(_train_cfg(assets, tmp_path / "plain", steps=2, batch_size=2))
    checkpointed = train(_train_cfg(assets, tmp_path / "ckpt", steps=2, batch_size=2,
                                    gradient_checkpointing=True))
    assert checkpointed.encoder[0].model.get_base_model().gradient_checkpointing
    assert not plain.encoder[0].model.get_base_model().gradient_checkpointing
    _assert_same_adapter(plain.folder, checkpointed.folder)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in _adapter_weights(plain.folder).items())


def test_bf16_mixed_precision_step_trains(assets, tmp_path):
    from harness.train.run import use_bf16

    assert use_bf16("auto") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert (use_bf16("bf16"), use_bf16("fp32")) == (True, False)
    result = train(_train_cfg(assets, tmp_path / "bf16", precision="bf16", steps=2, batch_size=2))
    assert result.summary["precision"] == "bf16"
    assert torch.isfinite(torch.tensor(result.summary["train_loss"]))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in _adapter_weights(result.folder).items())


class Killed(Exception):
    """Stands in for a kill: raised inside a training step."""


def test_killed_run_resumes_from_its_last_checkpoint_to_the_same_adapter(assets, tmp_path, monkeypatch):
    # KL distillation at batch 1: 4 steps, a checkpoint every 2; the kill comes during step 4
    settings = {"steps": 4, "batch_size": 1, "save_steps": 2}
    whole = train(_train_cfg(assets, tmp_path / "whole", distill=True, **settings))
    from harness.train.run import SplareTrainer

    step = SplareTrainer.training_step

    def killed_at_step_four(self, *args, **kwargs):
        if self.state.global_step == 3:
            raise Killed
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SplareTrainer, "training_step", killed_at_step_four)
    with pytest.raises(Killed):
        train(_train_cfg(assets, tmp_path / "killed", distill=True, **settings))
    monkeypatch.setattr(SplareTrainer, "training_step", step)
    assert not (tmp_path / "killed" / "adapter_model.safetensors").exists()
    resumed = train(_train_cfg(assets, tmp_path / "killed", distill=True, resume=True, **settings))
    assert resumed.summary["resumed_from"].endswith("checkpoint-2")
    assert resumed.summary["steps"] == 4
    _assert_same_adapter(whole.folder, resumed.folder)
    logs = [json.loads(line) for line in (resumed.folder / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in logs if "loss" in line] == [1, 2, 3, 4]  # killed steps not repeated


def test_init_adapter_for_another_backbone_or_layer_fails_before_loading(assets, tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    for origin, message in [
        ({"backbone": "/somewhere/else", "layer": None, "stage": "mntp"},
         r"was trained on backbone '/somewhere/else', not on this model's"),
        ({"backbone": str(assets["lm"]), "layer": LAYER + 1, "stage": "retrieval"},
         rf"was trained for read-out layer {LAYER + 1}, but model.backbone.layer={LAYER}"),
        ({"backbone": str(assets["lm"]), "layer": None, "stage": "mntp", "attention": "bidirectional"},
         "was trained with bidirectional attention, but this model trains with causal attention"),
    ]:
        (folder / "adapter_origin.json").write_text(json.dumps(origin))
        cfg = _train_cfg(assets, tmp_path / "run", init_adapter=str(folder))
        with pytest.raises(ValueError, match=message) as err:
            train(cfg)
        assert "\n" not in str(err.value)
        assert not (tmp_path / "run").exists()


def test_named_configs_paper_and_smoke():
    def composed(*overrides):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    paper = composed("model=splare7b", "data=msmarco_bge_kd")  # the default is the paper's setting
    t = paper.train
    assert (t.steps, t.epochs, t.batch_size, t.lr, t.warmup_ratio, t.negatives, t.lora.r) == (
        None, 1, 128, 5e-5, 0.01, 8, 64)
    assert (t.flops.query, t.flops.document, t.max_length, paper.model.tau) == (1e-4, 1e-4, 128, 80)
    assert t.gradient_checkpointing and t.precision == "auto"
    assert composed("data=embedded_pairs").train.max_length == 512  # multilingual data
    smoke = composed("train=smoke").train
    assert (smoke.steps, smoke.batch_size, smoke.max_length, smoke.negatives, smoke.precision) == (
        200, 16, 128, None, "fp32")


# --- data and configuration errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train.flops.schedule": "cubic"}, "train.flops.schedule 'cubic' unknown; valid: linear, quadratic"),
        ({"train.steps": 0}, "train.steps must be a positive integer or null, got 0"),
        ({"train.eval_pairs": -1}, "train.eval_pairs must be an integer >= 0, got -1"),
        ({"train.eval_pairs": 4}, r"train.eval_pairs=4 leaves no training rows \(4 rows in the data\)"),
        ({"train.lora.r": 0}, "train.lora.r must be a positive integer, got 0"),
        ({"model.kind": "splade_mlm"}, "model.kind 'splade_mlm' cannot be trained here"),
        ({"model.backbone.adapter": "/x"}, "unset model.backbone.adapter"),
        ({"model.tau": None}, r"model.tau is not set for model 'tiny_splare': the training temperature"),
        ({"train.precision": "fp8"}, "train.precision must be one of auto, bf16, fp32, got 'fp8'"),
        ({"train.gradient_checkpointing": "yes"}, "train.gradient_checkpointing must be true or false"),
        ({"train.resume": True}, r"train.resume=true but train.output_dir=.*run holds no checkpoint"),
        ({"train.init_adapter": "/nonexistent"}, "train.init_adapter=/nonexistent: not a peft adapter"),
        ({"train.cpu_minutes": 0}, "train.cpu_minutes must be a positive number of minutes or null, got 0"),
    ],
)
def test_bad_settings_fail_in_one_line_before_loading(assets, tmp_path, override, message):
    cfg = _train_cfg(assets, tmp_path / "run")
    for key, value in override.items():
        OmegaConf.update(cfg, key, value)
    with pytest.raises(ValueError, match=message) as err:
        train(cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_documents_layout_and_missing_fields():
    rows = [{"q": "a", "docs": ["p", "n1", "n2"], "s": [3, 2, 1, 0]}]
    data = standardise(rows, {"query": "q", "documents": "docs", "scores": "s"}, 2, "x")
    assert data.column_names == ["query", "positive", "negative_1", "negative_2", "label"]
    assert data[0]["label"] == [3.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="row 0 lacks field 'question'"):
        standardise(rows, {"query": "question", "documents": "docs"}, 0, "x")
    with pytest.raises(ValueError, match="needs 4"):
        standardise([{"q": "a", "docs": ["p", "n1", "n2", "n3"], "s": [1, 2]}],
                    {"query": "q", "documents": "docs", "scores": "s"}, 3, "x")


def test_hub_dataset_offline_names_id_and_override():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=msmarco_bge_kd"])
    with pytest.raises(HubUnavailableError, match=r"lightonai/ms-marco-en-bge.*data\.path="):
        load_training_data(cfg.data)


def test_embedded_pairs_have_no_teacher_scores():
    data = load_training_data({"name": "e", "source": "embedded", "languages": ["eng"], "n": 8, "negatives": 0})
    assert data.column_names == ["query", "positive"] and len(data) == 8
    with pytest.raises(ValueError, match="use train=smoke .* or train.negatives=0"):
        load_training_data({"name": "e", "source": "embedded", "languages": ["eng"], "n": 8, "negatives": 2})


def test_cli_rejects_unknown_data_config_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "harness.train", "data=nope"],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown data 'nope'; valid: embedded_pairs, jsonl, msmarco_bge_kd"
    ]
