"""One training run: config -> data, LoRA encoder, SPLARE loss -> SparseEncoderTrainer -> adapter folder.

The output folder (`train.output_dir`) holds the peft adapter (`adapter_config.json`,
`adapter_model.safetensors`; evaluate with `python -m harness model=<m> model.backbone.adapter=<folder>`),
`train_config.yaml` (the resolved config), `train_log.jsonl` (one line per logging step: loss,
its parts, FLOPS and L0 of queries / documents, regulariser weights, lr; with
`train.eval_pairs`, `eval_loss` / `eval_base_loss` lines on the held-out rows) and `train_summary.json`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder import (
    SparseEncoderTrainer,
    SparseEncoderTrainingArguments,
)
from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import (
    SchedulerType,
    SpladeRegularizerWeightSchedulerCallback,
)
from transformers import TrainerCallback, set_seed

from harness.train.data import LABEL, load_training_data
from harness.train.losses import build_loss, default_temperature, sparsity_log
from harness.train.model import (
    check_trainable,
    count_parameters,
    lora_config,
    save_adapter,
    trainable_encoder,
)

logger = logging.getLogger("harness.train")

CONFIG_FILE = "train_config.yaml"
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "train_summary.json"


@dataclass
class TrainResult:
    """What a run leaves: the adapter `folder`, the trained `encoder` (LoRA unmerged) and `summary`."""

    folder: Path
    encoder: SparseEncoder
    summary: dict[str, Any]


class SplareTrainer(SparseEncoderTrainer):
    """`SparseEncoderTrainer` whose training logs also carry FLOPS and L0 of queries and documents."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs = {**logs, **sparsity_log(self.loss)}
        super().log(logs, start_time)


class JsonlLogCallback(TrainerCallback):
    """Append every log dict (with its step) to `path` as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")


def _checked_int(value: Any, key: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """`value` if it is an integer >= `minimum` (or None when allowed); else a one-line ValueError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{key} must be {kind}{' or null' if allow_none else ''}, got {value!r}")
    return value


def check_train_config(train_cfg: Mapping) -> None:
    """Validate the `train:` settings in one line each, before anything is loaded."""
    _checked_int(train_cfg.get("eval_pairs", 0), "train.eval_pairs", minimum=0)
    _checked_int(train_cfg.get("steps"), "train.steps", allow_none=True)
    _checked_int(train_cfg.get("epochs"), "train.epochs")
    _checked_int(train_cfg.get("batch_size"), "train.batch_size")
    _checked_int(train_cfg.get("logging_steps"), "train.logging_steps")
    _checked_int(train_cfg.get("max_length"), "train.max_length")
    if not float(train_cfg["lr"]) > 0:
        raise ValueError(f"train.lr must be > 0, got {train_cfg['lr']}")
    if not 0 <= float(train_cfg["warmup_ratio"]) < 1:
        raise ValueError(f"train.warmup_ratio must be in [0, 1), got {train_cfg['warmup_ratio']}")
    flops = train_cfg["flops"]
    for side in ("query", "document"):
        if float(flops[side]) < 0:
            raise ValueError(f"train.flops.{side} must be >= 0, got {flops[side]}")
    if not 0 < float(flops["warmup_ratio"]) <= 1:
        raise ValueError(f"train.flops.warmup_ratio must be in (0, 1], got {flops['warmup_ratio']}")
    schedules = [s.value for s in SchedulerType]
    if flops["schedule"] not in schedules:
        raise ValueError(f"train.flops.schedule '{flops['schedule']}' unknown; valid: {', '.join(schedules)}")


def split_held_out(data: Dataset, n: int, seed: int) -> tuple[Dataset, Dataset | None]:
    """(training rows, `n` held-out rows drawn at random with `seed`); (data, None) when n = 0."""
    if n == 0:
        return data, None
    if n >= len(data):
        raise ValueError(f"train.eval_pairs={n} leaves no training rows ({len(data)} rows in the data)")
    split = data.train_test_split(test_size=n, seed=seed, shuffle=True)
    return split["train"], split["test"]


def training_arguments(train_cfg: Mapping, output_dir: Path) -> SparseEncoderTrainingArguments:
    """Trainer settings: optimisation from `train_cfg`; no intermediate checkpoints (the adapter is
    saved once, at the end), no-duplicate batches so in-batch negatives are true negatives; with
    `train.eval_pairs`, the held-out loss is computed at every logging step."""
    held_out = bool(train_cfg.get("eval_pairs"))
    return SparseEncoderTrainingArguments(
        output_dir=str(output_dir),
        max_steps=train_cfg.get("steps") or -1,
        num_train_epochs=train_cfg["epochs"],
        per_device_train_batch_size=train_cfg["batch_size"],
        learning_rate=float(train_cfg["lr"]),
        warmup_steps=float(train_cfg["warmup_ratio"]),
        weight_decay=float(train_cfg.get("weight_decay", 0.0)),
        lr_scheduler_type="linear",
        logging_steps=train_cfg["logging_steps"],
        logging_first_step=True,
        eval_strategy="steps" if held_out else "no",
        eval_on_start=held_out,  # the zero-shot held-out loss, as the curve's first point
        eval_steps=train_cfg["logging_steps"] if held_out else None,
        per_device_eval_batch_size=train_cfg["batch_size"],
        save_strategy="no",
        report_to="none",
        seed=int(train_cfg["seed"]),
        data_seed=int(train_cfg["seed"]),
        batch_sampler="no_duplicates",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )


def train(cfg: DictConfig) -> TrainResult:
    """Train `cfg.model` on `cfg.data` with `cfg.train`; the adapter lands in `train.output_dir`."""
    train_cfg = cfg.train
    check_train_config(train_cfg)
    check_trainable(cfg.model)
    lora = train_cfg.lora
    adapter_config = lora_config(lora.r, float(lora.alpha), float(lora.dropout), list(lora.targets))
    temperature = float(
        default_temperature(cfg.model) if train_cfg.temperature is None else train_cfg.temperature
    )
    data, held_out = split_held_out(load_training_data(cfg.data), int(train_cfg.get("eval_pairs", 0)),
                                    int(train_cfg.seed))
    out = Path(train_cfg.output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")

    distill = LABEL in data.column_names
    set_seed(int(train_cfg.seed))
    encoder = trainable_encoder(cfg.model, adapter_config, train_cfg.max_length)
    loss = build_loss(
        encoder,
        temperature,
        distill,
        float(train_cfg.flops.query),
        float(train_cfg.flops.document),
        float(train_cfg.teacher_temperature),
    )
    schedule = SpladeRegularizerWeightSchedulerCallback(
        loss, scheduler_type=train_cfg.flops.schedule, warmup_ratio=float(train_cfg.flops.warmup_ratio)
    )
    trainable, total = count_parameters(encoder)
    logger.info(
        "training %s on %s: %d rows (%s), tau=%g, LoRA r=%d, %d of %d parameters trainable -> %s",
        cfg.model.name, cfg.data.name, len(data), "KL distillation" if distill else "contrastive",
        temperature, lora.r, trainable, total, out,
    )
    (out / LOG_FILE).unlink(missing_ok=True)
    trainer = SplareTrainer(
        model=encoder,
        args=training_arguments(train_cfg, out),
        train_dataset=data,
        eval_dataset=held_out,
        loss=loss,
        callbacks=[schedule, JsonlLogCallback(out / LOG_FILE)],
    )
    start = time.time()
    result = trainer.train()
    save_adapter(encoder, str(out))
    summary = {
        "model": cfg.model.name,
        "data": cfg.data.name,
        "objective": "kl_distillation" if distill else "contrastive",
        "temperature": temperature,
        "rows": len(data),
        "held_out_rows": len(held_out) if held_out is not None else 0,
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "seconds": round(time.time() - start, 1),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "evaluate": f"python -m harness model={cfg.model.name} model.backbone.adapter={out}",
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    logger.info("adapter saved to %s; evaluate with: %s", out, summary["evaluate"])
    return TrainResult(out, encoder, summary)
