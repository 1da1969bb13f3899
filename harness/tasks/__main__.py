"""`python -m harness.tasks [hydra overrides]`: print the task catalogue of a benchmark config.

Example: `python -m harness.tasks benchmark=mmteb_multilingual benchmark.reranking=true`.
Reads mteb's metadata and stored descriptive statistics only: nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import sys

import pandas as pd

from harness.config import compose_config
from harness.tasks import select_mteb_tasks, task_row
from harness.tasks.local_beir import beir_folders


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = compose_config(argv)
        tasks = select_mteb_tasks(cfg.benchmark)
        beir_folders(cfg.benchmark)  # malformed entries fail in one line
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = pd.DataFrame([dataclasses.asdict(task_row(t)) for t in tasks])
    bench = cfg.benchmark
    print(f"{bench.name}: {bench.mteb_benchmark or 'local tasks only'} — {len(rows)} tasks")
    if len(rows):
        print(rows.value_counts("type").to_string())
        print(rows.to_string(index=False))
    extra = [*bench.local_tasks, *bench.data_tasks]
    extra += [f"{f.task_name} ({f.path}; queries {f.query_language}, documents "
              f"{f.document_language})" for f in beir_folders(bench)]
    if extra:
        print(f"local tasks (built at run time): {', '.join(map(str, extra))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
