"""models.pooling: the chunked max-log1p pooling against the naive all-tokens formula: values,
gradients w.r.t. the hidden states (SAE and LM head) and a trainable LM-head weight, the in-place
inference path, and that backward keeps no per-token `[batch, tokens, dim]` tensors."""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata

from models.pooling import max_log1p_pool
from models.sae_pooling import SaeLatentPooling
from models.vocab_head import VocabLogitsPooling

D_IN, D_SAE, VOCAB = 8, 48, 40


def naive_pool(hidden: torch.Tensor, mask: torch.Tensor, encode) -> torch.Tensor:
    """The definition, all tokens at once: max_i log(1 + relu(encode(h_i))) over masked-in tokens."""
    weights = torch.log1p(torch.relu(encode(hidden).float())) * mask.unsqueeze(-1)
    return weights.amax(dim=1)


def _inputs(batch: int = 3, tokens: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, tokens, D_IN, generator=generator, dtype=torch.float64)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, 0] = False  # a BOS
    mask[1, 4:] = False  # padding
    mask[2, :] = False  # nothing pooled: output 0, no gradient
    return hidden, mask


def _sae(kind: str) -> torch.nn.Module:
    torch.manual_seed(3)
    meta = SAEMetadata(hook_name="blocks.0.hook_resid_post")
    if kind == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=6, metadata=meta))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta))
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn_like(param) * 0.7)
    return sae.double()


@pytest.mark.parametrize("kind", ["standard", "topk"])
@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_sae_pooling_values_and_hidden_gradients_equal_naive(kind, chunk):
    sae = _sae(kind)
    pooling = SaeLatentPooling(sae, chunk_tokens=chunk)
    hidden, mask = _inputs()
    upstream = torch.randn(3, D_SAE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours_h = hidden.clone().requires_grad_()
    pooled = pooling({"token_embeddings": ours_h, "attention_mask": mask.long(), "pooling_mask": mask})[
        "sentence_embedding"
    ]
    (pooled * upstream).sum().backward()
    ref_h = hidden.clone().requires_grad_()
    reference = naive_pool(ref_h, mask, sae.encode)
    (reference * upstream).sum().backward()
    torch.testing.assert_close(pooled, reference.float())
    assert ours_h.grad.abs().sum() > 0
    torch.testing.assert_close(ours_h.grad, ref_h.grad)
    assert not any(p.requires_grad for p in sae.parameters())  # the SAE stays frozen


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_lm_head_gradients_wrt_hidden_and_trainable_weight_equal_naive(softcap):
    generator = torch.Generator().manual_seed(5)
    weight = torch.nn.Parameter(torch.randn(VOCAB, D_IN, generator=generator, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.randn(VOCAB, generator=generator, dtype=torch.float64))
    head = VocabLogitsPooling(weight, VOCAB, D_IN, bias=bias, logit_softcap=softcap, chunk_tokens=5)
    hidden, mask = _inputs(seed=2)
    upstream = torch.randn(3, VOCAB, dtype=torch.float64, generator=generator)

    ours_h = hidden.clone().requires_grad_()
    pooled = head({"token_embeddings": ours_h, "attention_mask": mask.long(), "pooling_mask": mask})[
        "sentence_embedding"
    ]
    (pooled * upstream).sum().backward()
    ours = (ours_h.grad, weight.grad.clone(), bias.grad.clone())

    weight.grad = bias.grad = None
    ref_h = hidden.clone().requires_grad_()
    (naive_pool(ref_h, mask, head.logits) * upstream).sum().backward()
    for mine, theirs in zip(ours, (ref_h.grad, weight.grad, bias.grad), strict=True):
        assert mine.abs().sum() > 0
        torch.testing.assert_close(mine, theirs)


def test_frozen_head_with_frozen_hidden_builds_no_graph():
    weight = torch.randn(VOCAB, D_IN)
    hidden, mask = _inputs()
    pooled = max_log1p_pool(hidden.float(), mask, lambda h: h @ weight.T, VOCAB, 4, params=[weight])
    assert pooled.grad_fn is None and not pooled.requires_grad


def test_inference_path_leaves_identity_inputs_untouched_and_equals_naive():
    # an identity "encoder" returns views of the caller's tensor: in-place work must not write it
    scores = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    kept = scores.clone()
    with torch.no_grad():
        pooled = max_log1p_pool(scores, mask, lambda x: x, 5, chunk_tokens=4)
    torch.testing.assert_close(scores, kept)
    torch.testing.assert_close(pooled, naive_pool(kept, mask, lambda x: x))


def test_backward_saves_no_per_token_score_tensors():
    """What autograd keeps for backward is O(batch x dim), independent of the token count."""
    weight = torch.randn(VOCAB, D_IN)

    def saved_elements(tokens: int) -> int:
        sizes: list[int] = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            sizes.append(tensor.numel())
            return tensor

        hidden = torch.randn(2, tokens, D_IN, requires_grad=True)
        mask = torch.ones(2, tokens, dtype=torch.bool)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            max_log1p_pool(hidden, mask, lambda h: h @ weight.T, VOCAB, chunk_tokens=4)
        return sum(sizes) - 2 * tokens * D_IN  # the states themselves are kept by the backbone anyway

    assert saved_elements(8) == saved_elements(64) <= 2 * 2 * VOCAB


def test_bad_arguments_fail_in_one_line():
    hidden, mask = _inputs()
    with pytest.raises(ValueError, match="chunk_tokens must be >= 1, got 0"):
        max_log1p_pool(hidden, mask, lambda x: x, D_IN, 0)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 6\), expected \(3, 7\)"):
        max_log1p_pool(hidden, mask[:, :6], lambda x: x, D_IN, 4)


def test_backward_recomputes_under_the_forwards_bf16_autocast():
    weight = torch.randn(VOCAB, D_IN, generator=torch.Generator().manual_seed(4))
    hidden, mask = _inputs()
    hidden = hidden.float()
    ours_h, ref_h = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = max_log1p_pool(ours_h, mask, lambda h: h @ weight.T, VOCAB, chunk_tokens=4)
        reference = naive_pool(ref_h, mask, lambda h: h @ weight.T)
    pooled.sum().backward()
    reference.sum().backward()
    torch.testing.assert_close(pooled, reference)
    torch.testing.assert_close(ours_h.grad, ref_h.grad)  # bf16 products, as in the forward
