"""Pieces of the search benchmark (`benchmarks/bench_search.py`): profile-driven data generation
(`data`), timing and reference search (`measure`) and its report (`report`).

They are not on the search path: `harness.search.search_code_digest` reads only the modules of
`harness/search/` itself, so editing the benchmark does not change any result's revision.
"""
