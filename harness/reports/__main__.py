"""`python -m harness.reports build --name NAME [--results results/] [--runs GLOB...] [--out reports/]`.

`python -m harness.reports reference` regenerates `results/reference/` from the shared paper CSV.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.reports.reference import PAPER_EFFICIENCY_CSV, REFERENCE_CSV, SHARED_CSV


def _families(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, family = item.partition("=")
        if not sep or not name or not family:
            raise ValueError(f"--counterpart '{item}' must look like MODEL_NAME=PAPER_MODEL")
        out[name] = family
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.reports", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build reports/<name>/ from results on disk")
    build.add_argument("--name", default="all", help="report folder name (default: all)")
    build.add_argument("--results", type=Path, default=Path("results"), help="mteb ResultCache root")
    build.add_argument("--runs", nargs="*", default=[], metavar="GLOB",
                       help="Hydra run folders (or result revision folders) to report; default: everything")
    build.add_argument("--out", type=Path, default=Path("reports"))
    build.add_argument("--reference", type=Path, default=REFERENCE_CSV)
    build.add_argument("--leaderboard", type=Path, default=None,
                       help="MTEB leaderboard CSV (default: ../shared/reference/leaderboard_sparse_scores.csv "
                            "when present)")
    build.add_argument("--search-bench", type=Path, default=None,
                       help="search benchmark JSON with latent_vs_vocabulary "
                            "(default: results/bench/search.json)")
    build.add_argument("--paper-efficiency", type=Path, default=PAPER_EFFICIENCY_CSV)
    build.add_argument("--counterpart", action="append", default=[], metavar="MODEL=PAPER_MODEL",
                       help="paper model a measured model reproduces (e.g. harness/x=SPLARE-7B)")
    ref = sub.add_parser("reference", help="rewrite results/reference/ from the shared paper CSV")
    ref.add_argument("--shared", type=Path, default=SHARED_CSV)
    ref.add_argument("--out", type=Path, default=REFERENCE_CSV)
    args = parser.parse_args(argv)
    try:
        if args.command == "reference":
            from harness.reports.reference import write_reference

            print(write_reference(args.shared, args.out))
        else:
            from harness.reports.build import build_report
            from harness.reports.search_cost import SEARCH_BENCH

            print(build_report(args.name, args.results, args.runs, args.out, args.reference,
                               _families(args.counterpart), leaderboard_path=args.leaderboard,
                               search_bench=args.search_bench or SEARCH_BENCH,
                               paper_efficiency=args.paper_efficiency))
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
