"""The MNTP pre-stage (LLM2Vec, which SPLARE follows): masked next-token prediction with
bidirectional attention and LoRA, so that the decoder learns to use the tokens on both sides
before retrieval training.

`python -m harness.train mntp model=<m> [mntp.x=y]` (`make mntp MODEL=<m>`). The whole causal LM
(all layers and its LM head) is loaded with bidirectional attention (`models.attention`: the
family's flag or explicit masks); 20% of the non-special tokens are picked, 80% of those replaced
by the mask token, 10% by a random token, 10% kept (transformers' `DataCollatorForLanguageModeling`);
the loss is the cross-entropy of each picked token predicted from the logits one position earlier
(the causal LM's shifted loss, restricted to the picked tokens). Only the LoRA trains.

The output folder (`mntp.output_dir`) holds the peft adapter, `adapter_origin.json` (the backbone,
layer null: it fits any read-out layer; bidirectional attention), `mntp_config.yaml`, `mntp_log.jsonl` and
`mntp_summary.json` (with `mntp.eval_texts`: the masked-token loss on held-out texts before and
after). Retrieval training continues it with bidirectional attention (`model.backbone.bidirectional`
auto or true): `make train MODEL=<m> ARGS='train.init_adapter=<folder>'`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf
from peft import get_peft_model
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

import models
from harness.train.model import ORIGIN_FILE, lora_config, origin
from harness.train.run import JsonlLogCallback, checked_int, use_bf16, world_size
from models import attention
from models.backbone import load_kwargs, load_tokenizer, truncated_config

logger = logging.getLogger("harness.train.mntp")

CONFIG_FILE = "mntp_config.yaml"
LOG_FILE = "mntp_log.jsonl"
SUMMARY_FILE = "mntp_summary.json"
TEXT_SOURCES = ("embedded", "file", "hub")
#: LLM2Vec's mask token for decoders that have none (a single ordinary token in Llama / Mistral).
FALLBACK_MASK = "_"


def check_mntp_config(mntp_cfg: Mapping) -> None:
    """Validate the `mntp:` settings in one line each, before anything is loaded."""
    for key in ("steps", "batch_size", "max_length", "logging_steps"):
        checked_int(mntp_cfg.get(key), f"mntp.{key}")
    checked_int(mntp_cfg.get("eval_texts"), "mntp.eval_texts", minimum=0)
    if not 0 < float(mntp_cfg["mask_ratio"]) < 1:
        raise ValueError(f"mntp.mask_ratio must be in (0, 1), got {mntp_cfg['mask_ratio']}")
    if not float(mntp_cfg["lr"]) > 0:
        raise ValueError(f"mntp.lr must be > 0, got {mntp_cfg['lr']}")
    if mntp_cfg["batch_size"] % world_size():
        raise ValueError(f"mntp.batch_size={mntp_cfg['batch_size']} does not split over {world_size()} processes")
    if mntp_cfg.get("precision") not in ("auto", "bf16", "fp32"):
        raise ValueError(f"mntp.precision must be one of auto, bf16, fp32, got {mntp_cfg.get('precision')!r}")
    source = (mntp_cfg.get("text") or {}).get("source")
    if source not in TEXT_SOURCES:
        raise ValueError(f"mntp.text.source '{source}' unknown; valid: {', '.join(TEXT_SOURCES)}")


def bidirectional_config(source: str, attn_implementation: str | None) -> Any:
    """The full LM's config with bidirectional attention set up; one-line error (no weights loaded)
    for a family that cannot attend bidirectionally here (unsupported family, flash-attention)."""
    config = AutoConfig.from_pretrained(source)
    try:
        attention.check_attention(config, True, attn_implementation)
    except ValueError as err:
        raise ValueError(f"MNTP needs bidirectional attention, which this backbone cannot run: {err}") from None
    return truncated_config(source, config.num_hidden_layers - 1, True, attn_implementation)


def with_mask_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer` with a mask token: its own, else LLM2Vec's `_` when that is one known token,
    else its unknown token; one-line error when it has none of these."""
    if tokenizer.mask_token is not None:
        return tokenizer
    ids = tokenizer.convert_tokens_to_ids([FALLBACK_MASK])
    if ids and ids[0] is not None and ids[0] != tokenizer.unk_token_id:
        tokenizer.mask_token = FALLBACK_MASK
    elif tokenizer.unk_token is not None:
        tokenizer.mask_token = tokenizer.unk_token
    else:
        raise ValueError("MNTP: the tokenizer has no mask token, no '_' token and no unknown token")
    return tokenizer


def mntp_collator(tokenizer: PreTrainedTokenizerBase, ratio: float, seed: int | None = None):
    """Masks `ratio` of the non-special tokens (80% mask token / 10% random / 10% kept); `labels`
    hold the picked tokens' ids and -100 elsewhere. With `seed`, the same masks every time."""
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=ratio, seed=seed)


def mntp_loss(model: torch.nn.Module, config: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Masked next-token loss of a causal LM `model` (possibly wrapped: LoRA, DDP) on a collated
    batch (`input_ids`, `attention_mask`, `labels`, all `[batch, tokens]`), attending bidirectionally.

    The causal LM's own loss shifts the labels: the picked token at position i is predicted from
    the output at position i - 1, as in LLM2Vec."""
    base = model.module if hasattr(model, "module") else model
    embeds = base.get_input_embeddings()(batch["input_ids"])
    mask = attention.model_attention_mask(config, True, embeds, batch["attention_mask"])
    out = model(inputs_embeds=embeds, attention_mask=mask, labels=batch["labels"], use_cache=False)
    return out.loss


@torch.no_grad()
def held_out_loss(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], ratio: float,
    max_length: int, seed: int = 0, batch_size: int = 8,
) -> float:
    """Mean masked-token loss on `texts`, with masks fixed by `seed` (comparable across calls)."""
    if not texts:
        raise ValueError("held_out_loss: no texts")
    was_training = model.training
    model.eval()
    collate = mntp_collator(tokenizer, ratio, seed)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        encoded = tokenizer(chunk, truncation=True, max_length=max_length)
        batch = collate([{k: encoded[k][i] for k in ("input_ids", "attention_mask")} for i in range(len(chunk))])
        n = int((batch["labels"][:, 1:] != -100).sum())
        if n == 0:
            continue
        batch = {k: v.to(device) for k, v in batch.items()}
        total += float(mntp_loss(model, model.config, batch)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def load_texts(text_cfg: Mapping) -> list[str]:
    """MNTP texts: `embedded` (dataset_build passages, disjoint from the embedded evaluation),
    `file` (`path`: one text a line, or JSONL with a `column` field) or `hub` (`id`, `subset`,
    `split`, `column`; offline it needs `path` or fails in one line)."""
    source, n = text_cfg["source"], text_cfg.get("n")
    if source == "embedded":
        from harness.tasks.local_embedded import embedded_training_pairs

        languages = text_cfg.get("languages")
        texts = [f"{q} {p}" for q, p in embedded_training_pairs(list(languages) if languages else None)]
    elif source == "file" or text_cfg.get("path"):
        path = Path(str(text_cfg.get("path") or "")).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"mntp.text.path={text_cfg.get('path')}: no such file")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        column = text_cfg.get("column") or "text"
        texts = [json.loads(line)[column] if line.lstrip().startswith("{") else line for line in lines]
    else:
        from datasets import load_dataset

        from harness.offline import require_local_or_hub

        hub_id = require_local_or_hub(str(text_cfg["id"]), None, "mntp.text.path", "dataset")
        data = load_dataset(hub_id, text_cfg.get("subset"), split=text_cfg.get("split") or "train")
        texts = [t for t in data[text_cfg.get("column") or "text"] if t and t.strip()]
    texts = texts[:n] if n else texts
    if not texts:
        raise ValueError(f"mntp.text ({source}): no texts")
    return texts


class MntpTrainer(Trainer):
    """transformers' Trainer with the MNTP loss (bidirectional attention, shifted masked labels)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = mntp_loss(model, self.accelerator.unwrap_model(model).config, inputs)
        return (loss, None) if return_outputs else loss


def load_bidirectional_lm(source: str, spec: Any, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The full causal LM at `source` with bidirectional attention, and its tokenizer with a mask token."""
    b = spec.backbone
    config = bidirectional_config(source, b.attn_implementation)
    model = AutoModelForCausalLM.from_pretrained(
        source, **load_kwargs(config, b.dtype, b.attn_implementation, device)
    )
    return model, with_mask_token(load_tokenizer(source))


def mntp(cfg: DictConfig) -> dict[str, Any]:
    """Run the MNTP stage for `cfg.model` with `cfg.mntp`; returns the summary (adapter in output_dir)."""
    m = cfg.mntp
    check_mntp_config(m)
    spec = models.ModelSpec.from_config(cfg.model, training=True)
    if not spec.kind.decoder:
        raise ValueError(f"MNTP needs a decoder backbone; model.kind '{spec.kind.name}' has none")
    source = models.resolve(spec).backbone
    config = bidirectional_config(source, spec.backbone.attn_implementation)  # fails before weights
    adapter_config = lora_config(m.lora.r, float(m.lora.alpha), float(m.lora.dropout), list(m.lora.targets))
    texts = load_texts(m.text)
    n_eval = int(m.eval_texts)
    if n_eval >= len(texts):
        raise ValueError(f"mntp.eval_texts={n_eval} leaves no training texts ({len(texts)} texts)")
    held_out, train_texts = texts[:n_eval], texts[n_eval:]
    out = Path(m.output_dir).expanduser().resolve()
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=int(m.steps),
        per_device_train_batch_size=int(m.batch_size) // world_size(),
        learning_rate=float(m.lr),
        warmup_steps=float(m.warmup_ratio),
        lr_scheduler_type="linear",
        logging_steps=int(m.logging_steps),
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        seed=int(m.seed),
        data_seed=int(m.seed),
        gradient_checkpointing=bool(m.gradient_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=use_bf16(m.precision),
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
    )
    main_process = args.process_index == 0
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
        (out / LOG_FILE).unlink(missing_ok=True)
    set_seed(int(m.seed))
    model, tokenizer = load_bidirectional_lm(source, spec, str(args.device))
    model.requires_grad_(False)
    model = get_peft_model(model, adapter_config)
    encoded = tokenizer(train_texts, truncation=True, max_length=int(m.max_length))
    dataset = Dataset.from_dict({k: encoded[k] for k in ("input_ids", "attention_mask")})
    eval_args = (tokenizer, held_out, float(m.mask_ratio), int(m.max_length), int(m.seed))
    before = held_out_loss(model, *eval_args) if held_out else None
    logger.info("MNTP on %s (%s, bidirectional): %d texts, %d steps, mask %.0f%% -> %s", spec.name,
                config.model_type, len(train_texts), m.steps, 100 * float(m.mask_ratio), out)
    trainer = MntpTrainer(
        model=model, args=args, train_dataset=dataset,
        data_collator=mntp_collator(tokenizer, float(m.mask_ratio)),
        callbacks=[JsonlLogCallback(out / LOG_FILE)],
    )
    start = time.time()
    result = trainer.train()
    after = held_out_loss(model, *eval_args) if held_out else None
    summary = {
        "model": spec.name, "backbone": source, "texts": len(train_texts), "held_out_texts": n_eval,
        "steps": result.global_step, "mask_ratio": float(m.mask_ratio), "mask_token": tokenizer.mask_token,
        "train_loss": result.training_loss, "held_out_loss_before": before, "held_out_loss_after": after,
        "seconds": round(time.time() - start, 1),
        "next": f"make train MODEL={spec.name} ARGS='train.init_adapter={out}'",
    }
    if main_process:
        model.save_pretrained(str(out))
        (out / ORIGIN_FILE).write_text(json.dumps(origin(source, None, "mntp", "bidirectional"), indent=2), encoding="utf-8")
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        logger.info("MNTP adapter saved to %s; next: %s", out, summary["next"])
    return summary
