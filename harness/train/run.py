"""One training run: config -> data, LoRA encoder, SPLARE loss -> SparseEncoderTrainer -> adapter folder.

The output folder (`train.output_dir`) holds the peft adapter (`adapter_config.json`,
`adapter_model.safetensors`; evaluate with `python -m harness model=<m> model.backbone.adapter=<folder>`),
`train_config.yaml` (the resolved config), `train_log.jsonl` (one line per logging step: loss,
its parts, FLOPS and L0 of queries / documents, regulariser weights, lr; with
`train.eval_pairs`, `eval_loss` / `eval_base_loss` lines on the held-out rows), `train_summary.json`
and, with `train.save_steps`, `checkpoint-<step>/` folders (adapter + optimizer, scheduler and RNG
state) that `train.resume=true` continues from.

Multi-GPU: the same app under `torchrun --nproc_per_node N -m harness.train ...` (or `accelerate
launch -m harness.train ...`) trains with DDP through the sentence-transformers / transformers
trainer: `train.batch_size` is the global batch, split evenly over the processes; the contrastive
loss gathers documents across processes so in-batch negatives span the global batch.
"""

from __future__ import annotations

import json
import logging
import os
import resource
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
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import get_last_checkpoint

import models
from harness.train.data import LABEL, load_training_data
from harness.train.losses import build_loss, sparsity_log
from harness.train.model import (
    backbone_of,
    check_init_adapter,
    check_trainable,
    count_parameters,
    lora_config,
    origin,
    save_adapter,
    trainable_encoder,
)

logger = logging.getLogger("harness.train")

PRECISIONS = ("auto", "bf16", "fp32")
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
    """`SparseEncoderTrainer` whose training logs also carry FLOPS and L0 of queries and documents,
    and whose checkpoints hold the LoRA adapter only (not the frozen backbone, SAE or LM head)."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs = {**logs, **sparsity_log(self.loss)}
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        folder = output_dir or self.args.output_dir
        os.makedirs(folder, exist_ok=True)
        save_adapter(self.model, folder)
        torch.save(self.args, os.path.join(folder, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(str(Path(checkpoint_path) / "adapter_model.safetensors"))
        set_peft_model_state_dict(backbone_of(self.model).model, weights)


class JsonlLogCallback(TrainerCallback):
    """Append every log dict (with its step) to `path` as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")


def cpu_seconds() -> float:
    """CPU time this process has used so far: user + system, all of its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuBudgetCallback(TrainerCallback):
    """Stop training after the step at which the process has used `minutes` of CPU time since
    training began (`train.cpu_minutes`): runs on different heads get the same compute, measured
    the same way, whatever their step cost or what else runs on the machine."""

    def __init__(self, minutes: float) -> None:
        self.budget = 60.0 * minutes
        self.start: float | None = None
        self.used = 0.0
        self.stopped = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = cpu_seconds()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.used = cpu_seconds() - self.start
        if self.used >= self.budget:
            self.stopped = True
            control.should_training_stop = True


def checked_int(value: Any, key: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """`value` if it is an integer >= `minimum` (or None when allowed); else a one-line ValueError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{key} must be {kind}{' or null' if allow_none else ''}, got {value!r}")
    return value


def world_size() -> int:
    """Number of training processes (DDP under torchrun / accelerate launch), 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def use_bf16(precision: str) -> bool:
    """bf16 mixed precision for `train.precision`: `auto` = on a CUDA device that supports it."""
    if precision == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def check_train_config(train_cfg: Mapping) -> None:
    """Validate the `train:` settings in one line each, before anything is loaded."""
    checked_int(train_cfg.get("eval_pairs", 0), "train.eval_pairs", minimum=0)
    checked_int(train_cfg.get("steps"), "train.steps", allow_none=True)
    checked_int(train_cfg.get("epochs"), "train.epochs")
    batch = checked_int(train_cfg.get("batch_size"), "train.batch_size")
    checked_int(train_cfg.get("logging_steps"), "train.logging_steps")
    checked_int(train_cfg.get("max_length"), "train.max_length")
    checked_int(train_cfg.get("negatives"), "train.negatives", minimum=0, allow_none=True)
    checked_int(train_cfg.get("save_steps"), "train.save_steps", allow_none=True)
    minutes = train_cfg.get("cpu_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0):
        raise ValueError(f"train.cpu_minutes must be a positive number of minutes or null, got {minutes!r}")
    processes = world_size()
    if batch % processes:
        raise ValueError(
            f"train.batch_size={batch} (the global batch) does not split evenly over {processes} processes"
        )
    if not float(train_cfg["lr"]) > 0:
        raise ValueError(f"train.lr must be > 0, got {train_cfg['lr']}")
    if not 0 <= float(train_cfg["warmup_ratio"]) < 1:
        raise ValueError(f"train.warmup_ratio must be in [0, 1), got {train_cfg['warmup_ratio']}")
    if train_cfg.get("precision") not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {train_cfg.get('precision')!r}")
    for key in ("gradient_checkpointing", "resume"):
        if not isinstance(train_cfg.get(key), bool):
            raise ValueError(f"train.{key} must be true or false, got {train_cfg.get(key)!r}")  # noqa: TRY004 (one-line CLI errors are ValueErrors)
    if train_cfg.get("precision") == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision=bf16 but this GPU does not support bf16; use auto or fp32")
    flops = train_cfg["flops"]
    for side in ("query", "document"):
        if float(flops[side]) < 0:
            raise ValueError(f"train.flops.{side} must be >= 0, got {flops[side]}")
    if not 0 < float(flops["warmup_ratio"]) <= 1:
        raise ValueError(f"train.flops.warmup_ratio must be in (0, 1], got {flops['warmup_ratio']}")
    schedules = [s.value for s in SchedulerType]
    if flops["schedule"] not in schedules:
        raise ValueError(f"train.flops.schedule '{flops['schedule']}' unknown; valid: {', '.join(schedules)}")


def model_tau(spec: models.ModelSpec) -> float:
    """The student temperature: the model config's `tau`; one-line error when it is missing."""
    if spec.tau is None:
        raise ValueError(
            f"model.tau is not set for model '{spec.name}': the training temperature on the student "
            "scores (paper: 80 Llama Scope SAE, 50 Gemma Scope / embedded SAE, 10 vocabulary head)"
        )
    return spec.tau


def resume_checkpoint(train_cfg: Mapping, out: Path) -> str | None:
    """The last `checkpoint-<step>` folder in `out` when `train.resume`; one-line error if none."""
    if not train_cfg.get("resume"):
        return None
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last is None:
        raise ValueError(
            f"train.resume=true but train.output_dir={out} holds no checkpoint-<step> folder "
            "(resume needs the killed run's output_dir, trained with train.save_steps)"
        )
    return last


def trim_log(path: Path, checkpoint: str | None) -> None:
    """Start the training log afresh, or, when resuming, keep only the lines up to the checkpoint's
    step (the killed run logged steps past it that are trained again)."""
    if checkpoint is None or not path.is_file():
        path.unlink(missing_ok=True)
        return
    step = int(Path(checkpoint).name.rsplit("-", 1)[1])
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def shared_output_dir(out: Path) -> Path:
    """Process 0's output folder on every DDP process (each composes its own `${now:...}`)."""
    if world_size() == 1:
        return out
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState()  # joins the process group torchrun / accelerate launch set up
    return Path(broadcast_object_list([str(out)], from_process=0)[0])


def split_held_out(data: Dataset, n: int, seed: int) -> tuple[Dataset, Dataset | None]:
    """(training rows, `n` held-out rows drawn at random with `seed`); (data, None) when n = 0."""
    if n == 0:
        return data, None
    if n >= len(data):
        raise ValueError(f"train.eval_pairs={n} leaves no training rows ({len(data)} rows in the data)")
    split = data.train_test_split(test_size=n, seed=seed, shuffle=True)
    return split["train"], split["test"]


def training_arguments(train_cfg: Mapping, output_dir: Path) -> SparseEncoderTrainingArguments:
    """Trainer settings: optimisation from `train_cfg` (`batch_size` global, split over the DDP
    processes), checkpoints every `save_steps` (else only the final adapter), no-duplicate batches
    so in-batch negatives are true negatives, backbone gradient checkpointing and bf16 mixed
    precision as set; with `train.eval_pairs`, the held-out loss at every logging step."""
    held_out = bool(train_cfg.get("eval_pairs"))
    per_device = train_cfg["batch_size"] // world_size()
    save_steps = train_cfg.get("save_steps")
    return SparseEncoderTrainingArguments(
        output_dir=str(output_dir),
        max_steps=train_cfg.get("steps") or -1,
        num_train_epochs=train_cfg["epochs"],
        per_device_train_batch_size=per_device,
        learning_rate=float(train_cfg["lr"]),
        warmup_steps=float(train_cfg["warmup_ratio"]),
        weight_decay=float(train_cfg.get("weight_decay", 0.0)),
        lr_scheduler_type="linear",
        logging_steps=train_cfg["logging_steps"],
        logging_first_step=True,
        eval_strategy="steps" if held_out else "no",
        eval_on_start=held_out,  # the zero-shot held-out loss, as the curve's first point
        eval_steps=train_cfg["logging_steps"] if held_out else None,
        per_device_eval_batch_size=per_device,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        gradient_checkpointing=bool(train_cfg.get("gradient_checkpointing")),
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=use_bf16(train_cfg.get("precision", "fp32")),
        ddp_find_unused_parameters=False,
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
    spec = models.ModelSpec.from_config(cfg.model, training=True)
    temperature = model_tau(spec)
    source = models.resolve(spec).backbone
    init_adapter = train_cfg.get("init_adapter")
    if init_adapter:
        check_init_adapter(str(init_adapter), source, spec.backbone.layer, spec.backbone.attention)
    lora = train_cfg.lora
    adapter_config = lora_config(lora.r, float(lora.alpha), float(lora.dropout), list(lora.targets))
    out = shared_output_dir(Path(train_cfg.output_dir).expanduser().resolve())
    checkpoint = resume_checkpoint(train_cfg, out)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if train_cfg.get("negatives") is not None:
        data_cfg["negatives"] = int(train_cfg.negatives)
    data, held_out = split_held_out(load_training_data(data_cfg), int(train_cfg.get("eval_pairs", 0)),
                                    int(train_cfg.seed))
    args = training_arguments(train_cfg, out)
    main_process = args.process_index == 0
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
        trim_log(out / LOG_FILE, checkpoint)

    distill = LABEL in data.column_names
    set_seed(int(train_cfg.seed))
    model_cfg = OmegaConf.merge(cfg.model, {"backbone": {"device": str(args.device)}})
    encoder = trainable_encoder(model_cfg, adapter_config, int(train_cfg.max_length),
                                str(init_adapter) if init_adapter else None)
    loss = build_loss(
        encoder,
        temperature,
        distill,
        float(train_cfg.flops.query),
        float(train_cfg.flops.document),
        float(train_cfg.teacher_temperature),
        gather_across_devices=world_size() > 1,
    )
    schedule = SpladeRegularizerWeightSchedulerCallback(
        loss, scheduler_type=train_cfg.flops.schedule, warmup_ratio=float(train_cfg.flops.warmup_ratio)
    )
    trainable, total = count_parameters(encoder)
    logger.info(
        "training %s on %s: %d rows (%s), tau=%g, LoRA %s, %d of %d parameters trainable, %d "
        "process(es), %s -> %s",
        cfg.model.name, cfg.data.name, len(data), "KL distillation" if distill else "contrastive",
        temperature, f"from {init_adapter}" if init_adapter else f"r={lora.r}", trainable, total,
        world_size(), "bf16" if args.bf16 else "fp32", out,
    )
    callbacks = [schedule, JsonlLogCallback(out / LOG_FILE)]
    budget = CpuBudgetCallback(float(train_cfg.cpu_minutes)) if train_cfg.get("cpu_minutes") else None
    if budget is not None:
        callbacks.append(budget)
    trainer = SplareTrainer(
        model=encoder,
        args=args,
        train_dataset=data,
        eval_dataset=held_out,
        loss=loss,
        callbacks=callbacks,
    )
    start, cpu_start = time.time(), cpu_seconds()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    summary = {
        "model": cfg.model.name,
        "data": cfg.data.name,
        "objective": "kl_distillation" if distill else "contrastive",
        "temperature": temperature,
        "rows": len(data),
        "held_out_rows": len(held_out) if held_out is not None else 0,
        "steps": result.global_step,
        "resumed_from": checkpoint,
        "init_adapter": str(init_adapter) if init_adapter else None,
        "processes": world_size(),
        "precision": "bf16" if args.bf16 else "fp32",
        "train_loss": result.training_loss,
        "seconds": round(time.time() - start, 1),
        "cpu_seconds": round(cpu_seconds() - cpu_start, 1),
        "cpu_budget_seconds": budget.budget if budget is not None else None,
        "stopped_by_cpu_budget": budget.stopped if budget is not None else False,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "evaluate": f"python -m harness model={cfg.model.name} model.backbone.adapter={out}",
    }
    if main_process:
        save_adapter(encoder, str(out), origin(source, spec.backbone.layer, "retrieval", spec.backbone.attention))
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        logger.info("adapter saved to %s; evaluate with: %s", out, summary["evaluate"])
    return TrainResult(out, encoder, summary)
