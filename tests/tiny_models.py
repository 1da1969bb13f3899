"""Tiny random decoder LMs of every supported family, saved as ordinary HF folders (tests only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, pre_tokenizers, processors
from tokenizers import models as tok_models
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
)

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


def save_word_tokenizer(folder: Path, words: list[str]) -> None:
    """Whitespace word-level tokenizer over `SPECIAL + words`; every text starts with <bos>."""
    vocab = {t: i for i, t in enumerate([*SPECIAL, *words])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>",
    ).save_pretrained(folder)


def save_byte_level_tokenizer(folder: Path, words: list[str]) -> int:
    """Qwen2's own tokenizer class (byte-level BPE, no BOS) over the characters of `words` and the
    space marker, one token per character; transformers loads every qwen2 folder's tokenizer with
    this class whatever the folder says. Returns its vocabulary size."""
    chars = sorted({c for word in words for c in word})
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "\u0120", *chars])}
    Qwen2Tokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return len(vocab)


# arch -> (model class, config class, family-specific settings); sliding windows of 4 tokens so
# that texts of a few words already cross them. "gemma" is Gemma 3 (text), the historical name.
ARCHS = {
    "llama": (LlamaForCausalLM, LlamaConfig, {"tie_word_embeddings": False}),
    "mistral": (MistralForCausalLM, MistralConfig, {"head_dim": 16, "sliding_window": 4}),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config, {}),
    "qwen3": (Qwen3ForCausalLM, Qwen3Config, {"head_dim": 16}),
    "gemma2": (
        Gemma2ForCausalLM, Gemma2Config,
        {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 4},
    ),
    "gemma3": (Gemma3ForCausalLM, Gemma3TextConfig, {"head_dim": 16, "sliding_window": 4}),
}
ARCHS["gemma"] = ARCHS["gemma3"]


def save_tiny_lm(folder: Path, words: list[str], *, arch: str = "gemma", hidden: int = 32,
                 n_layers: int = 4, **settings: Any) -> Path:
    """A random `arch` causal LM (a key of `ARCHS`) and its tokenizer in `folder` (word-level with a
    BOS; for qwen2, character-level byte-level BPE without one).

    `settings` override config fields (e.g. `layer_types`).
    """
    torch.manual_seed(0)
    common = {
        "vocab_size": len(words) + len(SPECIAL), "hidden_size": hidden, "intermediate_size": 64,
        "num_hidden_layers": n_layers, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 64, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }
    model_cls, config_cls, family_settings = ARCHS[arch]
    if arch == "qwen2":
        n_tokens = save_byte_level_tokenizer(folder, words)
        common["vocab_size"] = max(common["vocab_size"], n_tokens)
    else:
        save_word_tokenizer(folder, words)
    model_cls(config_cls(**{**common, **family_settings, **settings})).save_pretrained(folder)
    return folder
