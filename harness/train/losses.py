"""The SPLARE training objective on sentence-transformers' sparse losses.

`SpladeLoss` (main loss + FLOPS on queries and documents, weights warmed up by
`SpladeRegularizerWeightSchedulerCallback`) wraps either
- `StudentTemperatureKLDivLoss` when the data carries teacher scores (paper: KL distillation from a
  cross-encoder over the positive and hard negatives), or
- `SparseMultipleNegativesRankingLoss` with `scale = 1 / tau` otherwise (in-batch + hard negatives).

tau divides the student scores only; it is the model config's `model.tau` (paper: 80 Llama Scope,
50 Gemma Scope, 10 vocabulary head).
The regularisers are `MeasuredFlopsLoss`: the stack's FLOPS loss, also recording the FLOPS value and
the L0 of the pooled vectors for the training log.
"""

from __future__ import annotations

import torch
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.losses import (
    FlopsLoss,
    SparseDistillKLDivLoss,
    SparseMultipleNegativesRankingLoss,
    SpladeLoss,
)


def flops(embeddings: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser (Paria et al. 2020): sum_j (mean_i w_ij)^2 for `embeddings` `[n, dim]` (>= 0)."""
    return embeddings.mean(dim=0).pow(2).sum()


class MeasuredFlopsLoss(FlopsLoss):
    """sentence-transformers' `FlopsLoss` that also accumulates, for the training log, its value and
    the mean L0 (number of non-zero entries) of the pooled vectors `[n, dim]` it regularises."""

    def __init__(self, model: SparseEncoder) -> None:
        super().__init__(model)
        self._sums: dict[str, float] = {"flops": 0.0, "l0": 0.0}
        self._calls = 0

    def compute_loss_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        value = super().compute_loss_from_embeddings(embeddings)
        if torch.is_grad_enabled():
            self._sums["flops"] += float(value.detach())
            self._sums["l0"] += float((embeddings.detach() > 0).sum(dim=1).float().mean())
            self._calls += 1
        return value

    def pop_means(self) -> dict[str, float]:
        """Means of FLOPS and L0 since the previous call (empty when nothing was recorded)."""
        if not self._calls:
            return {}
        means = {key: total / self._calls for key, total in self._sums.items()}
        self._sums = dict.fromkeys(self._sums, 0.0)
        self._calls = 0
        return means


class StudentTemperatureKLDivLoss(SparseDistillKLDivLoss):
    """KL(teacher || student) over (positive, negatives) with the student scores divided by tau.

    The stack's `SparseDistillKLDivLoss` multiplies the loss by tau^2 (Hinton's rescaling for a
    shared temperature); the SPLARE recipe puts tau on the student scores only, next to FLOPS
    weights tuned for an unscaled KL (lambda = 1e-4), so that factor is divided back out here.
    Teacher scores are softmaxed at `teacher_temperature` (1 = raw cross-encoder logits).
    """

    def __init__(self, model: SparseEncoder, temperature: float, teacher_temperature: float = 1.0) -> None:
        super().__init__(model, student_temperature=temperature, teacher_temperature=teacher_temperature)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """`embeddings`: query `[batch, dim]` then one `[batch, dim]` per candidate column;
        `labels`: teacher scores `[batch, candidates]`."""
        return super().compute_loss_from_embeddings(embeddings, labels) / self.student_temperature**2


def build_loss(
    model: SparseEncoder,
    temperature: float,
    distill: bool,
    lambda_query: float,
    lambda_document: float,
    teacher_temperature: float = 1.0,
    gather_across_devices: bool = False,
) -> SpladeLoss:
    """`SpladeLoss` around the KL (with teacher scores) or contrastive (without) main loss, with
    `MeasuredFlopsLoss` regularisers weighted `lambda_query` / `lambda_document`.

    `gather_across_devices` (DDP): the contrastive loss scores each query against the documents of
    every process, so in-batch negatives span the global batch as in single-process training."""
    if not temperature > 0:
        raise ValueError(f"model.tau must be > 0, got {temperature}")
    main: torch.nn.Module = (
        StudentTemperatureKLDivLoss(model, temperature, teacher_temperature)
        if distill
        else SparseMultipleNegativesRankingLoss(
            model, scale=1.0 / temperature, gather_across_devices=gather_across_devices
        )
    )
    return SpladeLoss(
        model,
        main,
        document_regularizer_weight=lambda_document,
        query_regularizer_weight=lambda_query,
        document_regularizer=MeasuredFlopsLoss(model),
        query_regularizer=MeasuredFlopsLoss(model),
    )


def sparsity_log(loss: SpladeLoss) -> dict[str, float]:
    """`query_flops`, `query_l0`, `document_flops`, `document_l0` means since the last call."""
    logs: dict[str, float] = {}
    for side in ("query", "document"):
        regularizer = getattr(loss, f"{side}_regularizer", None)
        if isinstance(regularizer, MeasuredFlopsLoss):
            logs.update({f"{side}_{k}": round(v, 4) for k, v in regularizer.pop_means().items()})
    return logs
