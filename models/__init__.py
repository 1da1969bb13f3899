"""Model wrappers: every model of the harness is a sentence-transformers SparseEncoder."""
