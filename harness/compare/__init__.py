"""Comparisons a reviewer would accept: paired significance with intervals and Holm correction,
win/tie/loss per domain and language, scores by (query language, document language), the overlap
of pooled vectors of parallel texts, and why the top document matched.

`python -m harness.compare …` (see `harness.compare.__main__`).
"""
