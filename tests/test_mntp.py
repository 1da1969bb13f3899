"""The MNTP pre-stage (harness/train/mntp.py) on a tiny random Llama: the loss is the shifted,
masked cross-entropy under bidirectional attention; training lowers it on held-out text; its
adapter is where retrieval training starts (`train.init_adapter`); bad input fails in one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import transformers
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tiny_models import save_tiny_lm

import models
from harness import offline
from harness.config import CONF_DIR
from harness.train.mntp import (
    bidirectional_config,
    load_bidirectional_lm,
    mntp,
    mntp_collator,
    mntp_loss,
)
from harness.train.model import lora_config, trainable_encoder

LAYER = 1
SUBJECTS = ["the cat", "a dog", "the bird", "a boat", "the car"]
VERBS = {"the cat": "sat on the mat", "a dog": "ran on the road", "the bird": "sang in the tree",
         "a boat": "sailed the sea", "the car": "drove fast on the road"}
WORDS = sorted({w for s in SUBJECTS for w in (s + " " + VERBS[s]).split()} | {"red", "blue", "green"})

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline.hub_reachable.cache_clear()
    yield
    offline.hub_reachable.cache_clear()


def _texts(n: int, seed: int) -> list[str]:
    """Sentences of a tiny grammar: a subject always goes with its own predicate, so a masked word
    is predictable from both sides."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        subject = rng.choice(SUBJECTS)
        colour = rng.choice(["red", "blue", "green"])
        first, rest = subject.split(" ", 1)
        texts.append(f"{first} {colour} {rest} {VERBS[subject]}")
    return texts


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mntp_assets")
    text = root / "texts.txt"
    text.write_text("\n".join(_texts(40, 0) + _texts(200, 1)) + "\n")  # the first 40 are held out
    lm = save_tiny_lm(root / "lm", WORDS, arch="llama", hidden=32, n_layers=3)
    # a random head at the default init scale (0.02) caps |logits| near 0.6, so no adapter could
    # lower the loss much: scale it so that confident predictions are reachable
    model = transformers.AutoModelForCausalLM.from_pretrained(lm)
    with torch.no_grad():
        model.lm_head.weight.mul_(25.0)
    model.save_pretrained(lm)
    return {"lm": lm, "text": text}


def _model_cfg(lm: Path, adapter: str | None = None):
    return OmegaConf.create({
        "name": "tiny_llm", "kind": "splade_llm",
        "backbone": {"id": None, "path": str(lm), "layer": LAYER, "dtype": "float32", "device": "cpu",
                     "max_length": 32, "bidirectional": "auto", "adapter": adapter},
        "sae": None, "top_k": {"query": 0, "document": 0}, "tau": 10.0, "checkpoint": None,
    })


def _mntp_cfg(assets, out: Path, **settings):
    overrides = [
        f"mntp.output_dir={out}", "mntp.steps=15", "mntp.batch_size=8", "mntp.lr=5e-3",
        "mntp.lora.r=8", "mntp.lora.alpha=16", "mntp.max_length=16", "mntp.eval_texts=40",
        "mntp.logging_steps=10", "mntp.gradient_checkpointing=false", "mntp.precision=fp32",
        "mntp.text.source=file", f"mntp.text.path={assets['text']}",
    ] + [f"mntp.{k}={v}" for k, v in settings.items()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="mntp", overrides=overrides)
    cfg.model = _model_cfg(assets["lm"])
    return cfg


def test_loss_is_next_token_cross_entropy_on_masked_tokens_with_bidirectional_attention(assets):
    spec = models.ModelSpec.from_config(_model_cfg(assets["lm"]), training=True)
    model, tokenizer = load_bidirectional_lm(str(assets["lm"]), spec, "cpu")
    texts = _texts(4, 7)
    encoded = tokenizer(texts)
    batch = mntp_collator(tokenizer, 0.2, seed=3)(
        [{k: encoded[k][i] for k in ("input_ids", "attention_mask")} for i in range(len(texts))]
    )
    picked = batch["labels"] != -100
    assert picked.any() and not picked[:, 0].any()  # BOS is never masked
    assert (batch["input_ids"][picked] == tokenizer.mask_token_id).float().mean() > 0.5
    # hand computation: full (non-causal) attention over the real tokens, logits at i-1 predict i
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    full = torch.zeros(len(texts), 1, ids.shape[1], ids.shape[1])
    full.masked_fill_(~mask[:, None, None, :], torch.finfo(torch.float32).min)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=full).logits
        loss = mntp_loss(model, model.config, batch)
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    # bidirectional: an early position's output depends on a later token
    row = int(mask.sum(1).argmax())  # a text with no padding: its last position is a real token
    changed = ids.clone()
    changed[row, -1] = tokenizer.convert_tokens_to_ids("red" if ids[row, -1] != tokenizer.convert_tokens_to_ids("red") else "blue")
    with torch.no_grad():
        embeds = model.get_input_embeddings()
        from models import attention

        def first_logits(x):
            e = embeds(x)
            m = attention.model_attention_mask(model.config, True, e, batch["attention_mask"])
            return model(inputs_embeds=e, attention_mask=m).logits[row, 1]

        assert not torch.allclose(first_logits(ids), first_logits(changed))


def test_mntp_lowers_held_out_loss_and_retrieval_training_starts_from_its_adapter(assets, tmp_path):
    summary = mntp(_mntp_cfg(assets, tmp_path / "mntp"))
    before, after = summary["held_out_loss_before"], summary["held_out_loss_after"]
    print(f"held-out masked-token loss: {before:.3f} -> {after:.3f}")
    assert after < 0.7 * before, (before, after)
    folder = tmp_path / "mntp"
    origin = json.loads((folder / "adapter_origin.json").read_text())
    assert origin == {"backbone": str(assets["lm"]), "layer": None, "stage": "mntp",
                      "attention": "bidirectional"}
    logs = [json.loads(line) for line in (folder / "mntp_log.jsonl").read_text().splitlines()]
    assert any("loss" in line for line in logs)
    # `train.init_adapter`: the trainable encoder starts from the MNTP adapter (ForCausalLM keys
    # mapped onto the truncated backbone, layers above the read-out dropped) ...
    start = trainable_encoder(_model_cfg(assets["lm"]), lora_config(8, 16.0, 0.0, ["q_proj"]), 16,
                              init_adapter=str(folder))
    trainable = {n for n, p in start.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    merged = models.build_encoder(_model_cfg(assets["lm"], adapter=str(folder)))
    base = models.build_encoder(_model_cfg(assets["lm"]), training=True)
    texts = _texts(3, 9)

    def dense(encoder):
        return encoder.eval().encode(texts, convert_to_sparse_tensor=False)

    # ... which is exactly the MNTP-adapted backbone, not the base one
    torch.testing.assert_close(dense(start), dense(merged), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(dense(base), dense(merged), atol=1e-4)


def test_mntp_on_a_family_that_cannot_attend_bidirectionally_fails_before_loading(tmp_path):
    folder = tmp_path / "gpt2"
    transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2).save_pretrained(folder)  # config only
    with pytest.raises(ValueError, match="MNTP needs bidirectional attention, which this backbone "
                                         "cannot run: unsupported backbone family model_type='gpt2'"):
        bidirectional_config(str(folder), None)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mntp.mask_ratio": 0}, r"mntp.mask_ratio must be in \(0, 1\), got 0"),
        ({"mntp.text.source": "web"}, "mntp.text.source 'web' unknown; valid: embedded, file, hub"),
        ({"mntp.eval_texts": 240}, "mntp.eval_texts=240 leaves no training texts"),
        ({"model.kind": "bm25"}, "MNTP needs a decoder backbone; model.kind 'bm25' has none"),
    ],
)
def test_bad_mntp_settings_fail_in_one_line(assets, tmp_path, override, message):
    cfg = _mntp_cfg(assets, tmp_path / "run")
    for key, value in override.items():
        OmegaConf.update(cfg, key, value)
    with pytest.raises(ValueError, match=message) as err:
        mntp(cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
