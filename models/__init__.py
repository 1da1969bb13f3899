"""Model wrappers: every model of the harness is a sentence-transformers SparseEncoder."""

from models.build import build_encoder, load_encoder, model_meta, variant_name

__all__ = ["build_encoder", "load_encoder", "model_meta", "variant_name"]
