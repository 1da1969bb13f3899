"""The SPLARE training recipe (LoRA + KL distillation or contrastive loss + FLOPS) on
sentence-transformers' SparseEncoder trainer: `python -m harness.train model=<m> data=<d> [train.x=y]`.

Modules (imported on use, so the CLI can set the HF offline flags before any HF library loads):
- `harness.train.run`: `train(cfg) -> TrainResult`, `check_train_config`, `training_arguments`.
- `harness.train.losses`: `build_loss`, `default_temperature`, `flops`, `MeasuredFlopsLoss`,
  `StudentTemperatureKLDivLoss`.
- `harness.train.model`: `trainable_encoder`, `lora_config`, `add_lora`, `save_adapter`.
- `harness.train.data`: `load_training_data`, `standardise`.
"""
