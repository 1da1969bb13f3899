"""The SPLARE training recipe (LoRA + KL distillation or contrastive loss + FLOPS) on
sentence-transformers' SparseEncoder trainer: `python -m harness.train model=<m> data=<d> [train.x=y]`."""

from harness.train.data import load_training_data
from harness.train.losses import (
    MeasuredFlopsLoss,
    StudentTemperatureKLDivLoss,
    build_loss,
    default_temperature,
    flops,
)
from harness.train.model import add_lora, lora_config, save_adapter, trainable_encoder
from harness.train.run import train

__all__ = [
    "MeasuredFlopsLoss",
    "StudentTemperatureKLDivLoss",
    "add_lora",
    "build_loss",
    "default_temperature",
    "flops",
    "load_training_data",
    "lora_config",
    "save_adapter",
    "train",
    "trainable_encoder",
]
