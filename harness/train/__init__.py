"""The SPLARE training recipe (LoRA + KL distillation or contrastive loss + FLOPS) on
sentence-transformers' SparseEncoder trainer: `python -m harness.train model=<m> data=<d>
[train=paper|smoke] [train.x=y]`, and its MNTP pre-stage: `python -m harness.train.mntp model=<m>`.

Modules (imported on use, so the CLI can set the HF offline flags before any HF library loads):
- `harness.train.run`: `train(cfg) -> TrainResult`, `check_train_config`, `training_arguments`.
- `harness.train.losses`: `build_loss`, `flops`, `MeasuredFlopsLoss`, `StudentTemperatureKLDivLoss`.
- `harness.train.model`: `trainable_encoder`, `lora_config`, `add_lora`, `continue_lora`,
  `check_init_adapter`, `save_adapter`.
- `harness.train.mntp`: `mntp(cfg)`, `mask_tokens` (masked next-token prediction, LLM2Vec).
- `harness.train.data`: `load_training_data`, `standardise`.
"""
