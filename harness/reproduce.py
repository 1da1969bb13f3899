"""`python -m harness.reproduce MODEL [--no-run] [--leaderboard CSV] [hydra overrides]`: reproduce
a model's official MTEB leaderboard results, in the manner of pyserini's two-click reproductions.

MODEL is a config of `conf/model/` whose model has leaderboard rows (../shared/reference/
leaderboard_sparse_scores.csv): the OpenSearch doc-v2/v3 configs (`kind: splade_mlm`, matched on
their hub id) and `bm25` (mteb's `mteb/baseline-bm25s`). The harness runs that config on exactly
the leaderboard's tasks for the model (every eval split mteb defines for them), then prints, per
task: the leaderboard score, the measured one, Δ = measured − leaderboard (×100) and `!` where
|Δ| > 0.5. `--no-run` prints the table from results already on disk. The measured folder is the one
whose run records hold the composed `model` section of this invocation.

Examples:
    python -m harness.reproduce opensearch_doc_v3_distill
    python -m harness.reproduce bm25 run.results_dir=results/leaderboard
    make reproduce MODEL=opensearch_doc_v2_mini ARGS='model.backbone.dtype=float32'
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from models.spec import ModelSpec

# harness.reports and harness.runner import mteb and the hub libraries, which read offline mode
# when imported: they are imported once `main` has decided it.


def leaderboard_id(model: DictConfig) -> str:
    """The leaderboard's model id of a model config: mteb's BM25 name, or a stock SparseEncoder's
    hub id. One-line ValueError for any other kind."""
    from harness.runner import BM25_MODEL

    spec = ModelSpec.from_config(model)
    if spec.kind.name == "bm25":
        return BM25_MODEL
    if spec.kind.name == "splade_mlm" and spec.backbone.id:
        return spec.backbone.id
    raise ValueError(f"model config '{spec.name}' (kind {spec.kind.name}) has no leaderboard "
                     "counterpart: only bm25 and splade_mlm configs with a hub id have one")


def plan(model: str, overrides: Sequence[str], leaderboard: pd.DataFrame) -> tuple[DictConfig, pd.DataFrame]:
    """The composed run config for `model` on its leaderboard tasks, and those leaderboard rows."""
    from harness.config import compose_config

    if "," in model:
        raise ValueError(f"MODEL '{model}': give one model config")
    model_only = compose_config([f"model={model}", *overrides])
    model_id = leaderboard_id(model_only.model)
    rows = leaderboard[leaderboard["model"] == model_id]
    if rows.empty:
        raise ValueError(f"model config '{model}' ({model_id}) has no leaderboard row; models with "
                         f"rows: {', '.join(sorted(set(leaderboard['model'])))}")
    tasks = ",".join(f"'{t}'" for t in rows["task"])
    cfg = compose_config([
        f"model={model}", "benchmark=mteb_eng", "benchmark.name=leaderboard",
        "benchmark.mteb_benchmark=null", f"benchmark.tasks=[{tasks}]", *overrides,
    ])
    return cfg, rows


def measured_runs(results_dir: Path, model_section: dict) -> list:
    """The result folders under `results_dir` whose run records used `model_section`."""
    from harness.reports.collect import load_measured, matches_model

    if not (Path(results_dir) / "results").is_dir():
        return []
    return [r for r in load_measured(Path(results_dir)) if matches_model(r, model_section)]


def format_deltas(frame: pd.DataFrame) -> str:
    """The Δ table as printed: one line per (measured folder, leaderboard task)."""
    from harness.reports.leaderboard import FLAG_MARK

    shown = frame.assign(
        leaderboard=frame["leaderboard"].map("{:.2f}".format),
        measured=frame["measured"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        delta=frame["delta"].map(lambda v: "–" if pd.isna(v) else f"{v:+.2f}"),
        flag=frame["flagged"].map({True: FLAG_MARK, False: ""}),
    )
    columns = ["run", "task", "splits", "leaderboard", "measured", "delta", "flag", "subsets"]
    return shown[columns].to_string(index=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (unless `--no-run`) and print the Δ table; 2 with a one-line error on bad input."""
    parser = argparse.ArgumentParser(prog="python -m harness.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a conf/model/ config with leaderboard rows")
    parser.add_argument("--no-run", action="store_true", help="only print Δ from results on disk")
    parser.add_argument("--leaderboard", type=Path, default=None,
                        help="leaderboard CSV (default: ../shared/reference/leaderboard_sparse_scores.csv)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model.*, run.*, search.*)")
    args = parser.parse_intermixed_args(argv)
    from harness.cli import EXPECTED_ERRORS
    from harness.config import compose_config
    from harness.offline import configure_offline

    try:
        offline = configure_offline(compose_config(args.overrides).run.hub)
        from harness.reports.leaderboard import LEADERBOARD_CSV, load_leaderboard

        leaderboard = load_leaderboard(args.leaderboard or LEADERBOARD_CSV)
        cfg, rows = plan(args.model, args.overrides, leaderboard)
        if not args.no_run:
            from harness.runner import run

            run(cfg, offline=offline)
        section = OmegaConf.to_container(cfg.model, resolve=True)
        runs = measured_runs(Path(cfg.run.results_dir), section)
        if not runs:
            raise FileNotFoundError(f"no results of model config '{args.model}' (with these "
                                    f"overrides) under {cfg.run.results_dir}")
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from harness.reports.leaderboard import FLAG, FLAG_MARK, SOURCE, delta_frame

    frame = delta_frame(leaderboard, runs)
    measured = frame["measured"].notna()
    print(f"\n{args.model} vs {rows['model'].iloc[0]} @ {rows['revision'].iloc[0]} "
          f"({SOURCE}); scores ×100")
    print(format_deltas(frame))
    print(f"{int(measured.sum())}/{len(frame)} task(s) measured; {int(frame['flagged'].sum())} with "
          f"|Δ| > {FLAG} ({FLAG_MARK}). Measured: this harness, results under {cfg.run.results_dir}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
