"""SPLADE on a decoder LM ("SPLADE-Llama"): the LM head's vocabulary logits, max-log1p pooled.

The logits `[batch, tokens, vocab]` of a 128k-262k vocabulary are never materialised for a whole
batch: they are computed a few tokens at a time and folded into the running max.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.base.modules.module import Module

from models.backbone import (
    CausalLMBackbone,
    load_kwargs,
    load_tokenizer,
    saved_module_files,
    torch_dtype,
    truncated_config,
)
from models.pooling import max_log1p_pool


class VocabLogitsPooling(Module):
    """LM head + SPLADE pooling: `token_embeddings` `[batch, tokens, hidden]` -> `sentence_embedding` `[batch, vocab]`.

    Expects the backbone's final-norm output (`CausalLMBackbone(final_norm=True)`).

    Args:
        weight: LM head weight `[vocab, hidden]` (shared with the input embeddings when `tied`).
        bias: optional LM head bias `[vocab]`.
        logit_softcap: Gemma-style final logit soft-capping (`cap * tanh(logits / cap)`), or None.
        tied: the weight is the backbone's input embedding matrix; it is not saved again and is
            re-attached from the backbone on load.
        chunk_tokens: tokens whose logits are computed at once (memory ~ chunk_tokens x vocab floats).
    """

    config_file_name = "vocab_head.json"
    config_keys: ClassVar[list[str]] = [
        "vocab_size",
        "hidden_size",
        "logit_softcap",
        "tied",
        "has_bias",
        "chunk_tokens",
    ]

    def __init__(
        self,
        weight: torch.nn.Parameter | None,
        vocab_size: int,
        hidden_size: int,
        bias: torch.nn.Parameter | None = None,
        logit_softcap: float | None = None,
        tied: bool = False,
        has_bias: bool = False,
        chunk_tokens: int = 256,
    ) -> None:
        super().__init__()
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        if weight is not None and tuple(weight.shape) != (vocab_size, hidden_size):
            raise ValueError(
                f"LM head weight has shape {tuple(weight.shape)}, expected ({vocab_size}, {hidden_size})"
            )
        self.weight = weight
        self.bias = bias
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.logit_softcap = logit_softcap
        self.tied = tied
        self.has_bias = has_bias or bias is not None
        self.chunk_tokens = chunk_tokens

    @classmethod
    def from_causal_lm(
        cls, lm_head: torch.nn.Linear, config: Any, tied: bool, chunk_tokens: int = 256
    ) -> VocabLogitsPooling:
        """Wrap a loaded `*ForCausalLM`'s `lm_head` (weights shared, not copied)."""
        return cls(
            lm_head.weight,
            vocab_size=lm_head.out_features,
            hidden_size=lm_head.in_features,
            bias=lm_head.bias,
            logit_softcap=getattr(config, "final_logit_softcapping", None),
            tied=tied,
            chunk_tokens=chunk_tokens,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits `[..., vocab]` for final-norm states `[..., hidden]`."""
        logits = torch.nn.functional.linear(hidden.to(self.weight.dtype), self.weight, self.bias)
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        """Add `sentence_embedding` `[batch, vocab]` (float32, >= 0)."""
        hidden = features["token_embeddings"]
        mask = features.get("pooling_mask", features["attention_mask"].bool())
        features["sentence_embedding"] = max_log1p_pool(
            hidden, mask, self.logits, self.vocab_size, self.chunk_tokens,
            params=(self.weight, self.bias),
        )
        return features

    def on_model_ready(self, model: Any) -> None:
        """Re-attach a tied weight to the backbone's input embeddings after loading."""
        if self.tied:
            self.weight = model[0].model.get_input_embeddings().weight

    def get_embedding_dimension(self) -> int:
        """Vocabulary size."""
        return self.vocab_size

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """Save settings, and the head weights unless tied to the backbone's embeddings."""
        self.save_config(output_path)
        tensors = {} if self.tied else {"weight": self.weight.detach().contiguous()}
        if self.bias is not None:
            tensors["bias"] = self.bias.detach().contiguous()
        if tensors:
            save_file(tensors, f"{output_path}/head.safetensors")

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        model_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ) -> VocabLogitsPooling:
        """Load a saved head; a tied weight is attached later, in `on_model_ready`.

        `model_kwargs={"dtype": ...}` casts an untied weight, as it does the backbone.
        """
        settings, folder = saved_module_files(cls, model_name_or_path, subfolder, kwargs)
        path = Path(folder) / "head.safetensors"
        tensors = load_file(path) if path.is_file() else {}
        if dtype := (model_kwargs or {}).get("dtype"):
            tensors = {name: t.to(torch_dtype(dtype)) for name, t in tensors.items()}
        weight = tensors.get("weight")
        bias = tensors.get("bias")
        return cls(
            torch.nn.Parameter(weight) if weight is not None else None,
            bias=torch.nn.Parameter(bias) if bias is not None else None,
            **settings,
        )


def load_with_lm_head(
    source: str,
    layer: int,
    dtype: str = "float32",
    max_seq_length: int = 1024,
    bidirectional: bool = True,
    chunk_tokens: int = 256,
    attn_implementation: str | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
) -> tuple[CausalLMBackbone, VocabLogitsPooling]:
    """Layers 0..`layer` of the causal LM at `source` (final norm kept), its LM head as a SPLADE head.

    `attn_implementation`, `device` and `revision` as in `CausalLMBackbone.from_pretrained`.
    """
    from transformers import AutoModelForCausalLM

    config = truncated_config(source, layer, bidirectional, attn_implementation, revision)
    lm = AutoModelForCausalLM.from_pretrained(
        source, **load_kwargs(config, dtype, attn_implementation, device, revision)
    )
    head = lm.get_output_embeddings()
    tied = head.weight is lm.get_input_embeddings().weight
    backbone = CausalLMBackbone(
        lm.base_model, load_tokenizer(source, revision), layer, max_seq_length, bidirectional,
        final_norm=True,
    )
    return backbone, VocabLogitsPooling.from_causal_lm(head, lm.config, tied, chunk_tokens)
