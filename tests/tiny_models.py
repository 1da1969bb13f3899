"""Tiny random decoder LMs with a word-level tokenizer, saved as ordinary HF folders (tests only)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, pre_tokenizers, processors
from tokenizers import models as tok_models
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


def save_word_tokenizer(folder: Path, words: list[str]) -> None:
    """Whitespace word-level tokenizer over `SPECIAL + words`; every text starts with <bos>."""
    vocab = {t: i for i, t in enumerate([*SPECIAL, *words])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)


def save_tiny_lm(folder: Path, words: list[str], *, arch: str = "gemma", hidden: int = 32,
                 n_layers: int = 4) -> Path:
    """A random `arch` ("gemma" = Gemma 3 text, "llama") causal LM and its tokenizer in `folder`."""
    torch.manual_seed(0)
    common = {
        "vocab_size": len(words) + len(SPECIAL), "hidden_size": hidden, "intermediate_size": 64,
        "num_hidden_layers": n_layers, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 64, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }
    if arch == "gemma":
        model = Gemma3ForCausalLM(Gemma3TextConfig(head_dim=16, sliding_window=4, **common))
    else:
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **common))
    model.save_pretrained(folder)
    save_word_tokenizer(folder, words)
    return folder
