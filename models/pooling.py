"""SPLADE max-log1p pooling of per-token scores, computed a few tokens at a time.

u_j = max_i log(1 + relu(s_ij)) over the masked-in tokens i, where `s_i = encode(h_i)` are SAE
latents or LM-head logits of width `dim` (131k-262k). The `[batch, tokens, dim]` scores never exist
at once, with or without autograd:

- no gradient needed (inference, or nothing upstream trains): each chunk's scores are turned into
  weights in place (relu, log1p, mask) and folded into the running max; peak ~ one chunk's scores.
- gradient needed (training): `MaxLog1pPool`, a custom autograd function. Forward keeps only the
  pooled `[batch, dim]` values and the arg-max token of every (text, dimension) pair; backward
  recomputes one chunk at a time and sends each output's gradient to its arg-max token. Memory
  is O(batch x dim + chunk x dim) instead of O(tokens x dim) for the stored per-chunk graphs.
  Gradients equal those of the naive `amax` except on exact ties between tokens (there the whole
  gradient goes to one of the tied tokens instead of being split); ties at 0 carry no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

Encode = Callable[[torch.Tensor], torch.Tensor]


def _step(batch: int, chunk_tokens: int) -> int:
    """Positions per chunk so that one chunk holds about `chunk_tokens` (batch x positions) tokens."""
    return max(1, chunk_tokens // max(batch, 1))


def _chunk_weights(
    scores: torch.Tensor, chunk_mask: torch.Tensor, source: torch.Tensor
) -> torch.Tensor:
    """log(1 + relu(scores)) as float32, 0 where `chunk_mask` is False, computed in place.

    Args:
        scores: `[batch, chunk, dim]` from `encode`; overwritten when float32, unless it shares
            memory with `source` (an identity-like `encode`), which is never written.
        chunk_mask: `[batch, chunk]` bool.
        source: the `[batch, tokens, d_in]` states the scores were computed from.
    """
    weights = scores.float()
    if weights.untyped_storage().data_ptr() == source.untyped_storage().data_ptr():
        weights = weights.clone()
    weights.relu_().log1p_()
    return weights.masked_fill_(~chunk_mask.unsqueeze(-1), 0.0)


@torch.no_grad()
def _pool_forward(
    hidden: torch.Tensor, mask: torch.Tensor, encode: Encode, dim: int, chunk_tokens: int,
    with_argmax: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled `[batch, dim]` float32 and, with `with_argmax`, the arg-max position `[batch, dim]`
    (int64; meaningful where the pooled value is > 0). No autograd graph is kept."""
    batch, n_tokens, _ = hidden.shape
    step = _step(batch, chunk_tokens)
    pooled = torch.zeros(batch, dim, dtype=torch.float32, device=hidden.device)
    argmax = torch.zeros(batch, dim, dtype=torch.long, device=hidden.device) if with_argmax else None
    for start in range(0, n_tokens, step):
        chunk_mask = mask[:, start : start + step]
        if not bool(chunk_mask.any()):
            continue
        weights = _chunk_weights(encode(hidden[:, start : start + step]), chunk_mask, hidden)
        if argmax is None:
            torch.maximum(pooled, weights.amax(dim=1), out=pooled)
        else:
            values, index = weights.max(dim=1)
            better = values > pooled
            pooled = torch.where(better, values, pooled)
            argmax = torch.where(better, index + start, argmax)
        del weights  # freed before the next chunk's scores are allocated
    return pooled, argmax


class MaxLog1pPool(torch.autograd.Function):
    """Memory-bounded autograd for `max_log1p_pool` (see the module docstring).

    `apply(hidden, mask, encode, dim, chunk_tokens, *params)`: `params` are the tensors `encode`
    reads that need gradients (e.g. a trainable LM head weight); their gradients, and that of
    `hidden` `[batch, tokens, d_in]`, come from recomputing `encode` chunk by chunk in backward.
    `encode` must be deterministic (no dropout); backward recomputes it under the forward's
    autocast state (bf16 mixed precision).
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, mask: torch.Tensor, encode: Encode, dim: int,
        chunk_tokens: int, *params: torch.Tensor,
    ) -> torch.Tensor:
        pooled, argmax = _pool_forward(hidden, mask, encode, dim, chunk_tokens, with_argmax=True)
        ctx.encode, ctx.chunk_tokens = encode, chunk_tokens
        device = hidden.device.type  # backward recomputes under the same autocast (bf16) state
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.save_for_backward(hidden, pooled, argmax, *params)
        return pooled

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_pooled: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, pooled, argmax, *params = ctx.saved_tensors
        batch, n_tokens, _ = hidden.shape
        step = _step(batch, ctx.chunk_tokens)
        wants_hidden = ctx.needs_input_grad[0]
        grad_hidden = torch.zeros_like(hidden) if wants_hidden else None
        grad_params: list[torch.Tensor | None] = [None] * len(params)
        active = pooled > 0  # outputs with a gradient path (relu and the mask zero the rest)
        grad_pooled = grad_pooled.float() * active
        for start in range(0, n_tokens, step):
            stop = min(start + step, n_tokens)
            here = active & (argmax >= start) & (argmax < stop)
            if not bool(here.any()):
                continue
            chunk = hidden[:, start:stop].detach().requires_grad_(wants_hidden)
            device, enabled, dtype = ctx.autocast
            with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
                scores = ctx.encode(chunk)
                index = (argmax - start).clamp_(0, stop - start - 1).unsqueeze(1)
                picked = scores.gather(1, index).squeeze(1).float()  # [batch, dim]
                weights = torch.log1p(torch.relu(picked))
            inputs = ([chunk] if wants_hidden else []) + list(params)
            grads = torch.autograd.grad(
                weights, inputs, grad_outputs=grad_pooled * here, allow_unused=True
            )
            if wants_hidden:
                grad_hidden[:, start:stop] = grads[0]
                grads = grads[1:]
            for i, grad in enumerate(grads):
                if grad is not None:
                    grad_params[i] = grad if grad_params[i] is None else grad_params[i] + grad
            del scores, picked, weights, grads
        return (grad_hidden, None, None, None, None, *grad_params)


def max_log1p_pool(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    encode: Encode,
    dim: int,
    chunk_tokens: int,
    params: Iterable[torch.Tensor] = (),
) -> torch.Tensor:
    """SPLADE pooling of `encode(hidden)` computed a few tokens at a time.

    Args:
        hidden: `[batch, tokens, d_in]` token states.
        mask: `[batch, tokens]` bool, True where a token takes part in the pooling.
        encode: maps `[batch, chunk, d_in]` to `[batch, chunk, dim]` scores.
        dim: output dimension (SAE latents or vocabulary size).
        chunk_tokens: about how many tokens (batch x positions) to encode at once.
        params: tensors `encode` reads; those that require grad get gradients (frozen ones are
            skipped).

    Returns:
        `[batch, dim]` float32, max over masked-in tokens of log(1 + relu(score)); 0 when no token
        is masked in. Differentiable (through `MaxLog1pPool`) when grad mode is on and `hidden` or
        a param requires grad; otherwise computed in place with no graph.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if mask.shape != hidden.shape[:2]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(hidden.shape[:2])}")
    mask = mask.bool()
    trainable: Sequence[torch.Tensor] = [p for p in params if p is not None and p.requires_grad]
    if torch.is_grad_enabled() and (hidden.requires_grad or trainable):
        return MaxLog1pPool.apply(hidden, mask, encode, dim, chunk_tokens, *trainable)
    return _pool_forward(hidden, mask, encode, dim, chunk_tokens, with_argmax=False)[0]
