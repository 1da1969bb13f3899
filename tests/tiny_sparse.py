"""Tiny random sparse-model parts for tests and report fixtures: an sae-lens SAE of any width, and
an inference-free sentence-transformers SparseEncoder laid out as the OpenSearch doc-v2/v3 repos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def save_tiny_sae(folder: Path, d_in: int, d_sae: int, layer: int, seed: int = 2) -> Path:
    """A random JumpReLU sae-lens SAE (`d_in` -> `d_sae`) reading `blocks.{layer}.hook_resid_post`."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    meta = SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post")
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta))
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(torch.randn_like(param) * (0.1 if name == "threshold" else 1.0))
        sae.threshold.abs_()
    sae.save_model(folder)
    return folder


def save_tiny_inference_free(folder: Path, tokenizer: str | Path, seed: int = 0) -> Path:
    """A random inference-free SparseEncoder in `folder`, built from sentence-transformers' own
    modules: a Router whose query route is a SparseStaticEmbedding (random positive IDF weights,
    shape (vocab,)) and whose document route is MLMTransformer (a 1-layer, 16-wide BERT) ->
    SpladePooling. As in the OpenSearch hub repos, the MLM sits at the folder's root (its
    `config.json` is the transformers config), the other modules in `query_0_*` / `document_1_*`.
    """
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import (
        MLMTransformer,
        SparseStaticEmbedding,
        SpladePooling,
    )
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    mlm_dir = folder.parent / f".{folder.name}.mlm"
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=512)
    BertForMaskedLM(config).save_pretrained(mlm_dir)
    tok.save_pretrained(mlm_dir)
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=tok, weight=torch.rand(tok.vocab_size),
                                             frozen=True)],
        document_modules=[MLMTransformer(str(mlm_dir), max_seq_length=512), SpladePooling("max")],
    )
    SparseEncoder(modules=[router], similarity_fn_name="dot").save(str(folder))
    shutil.rmtree(mlm_dir)
    # Move the MLM to the root, as the hub repos have it (Router module id "" = the root).
    for path in (folder / "document_0_MLMTransformer").iterdir():
        path.replace(folder / path.name)
    (folder / "document_0_MLMTransformer").rmdir()
    config_path = folder / "router_config.json"
    router_config = json.loads(config_path.read_text())
    router_config["types"] = {("" if k == "document_0_MLMTransformer" else k): v
                              for k, v in router_config["types"].items()}
    router_config["structure"]["document"] = [
        "" if m == "document_0_MLMTransformer" else m for m in router_config["structure"]["document"]
    ]
    config_path.write_text(json.dumps(router_config, indent=2))
    return folder
