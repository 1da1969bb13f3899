"""Reference harness for learned sparse retrieval (SPLARE / SPLADE / BM25) on MTEB."""

__version__ = "0.1.0"
