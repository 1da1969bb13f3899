"""Comparisons a reviewer would accept.

    python -m harness.compare results=DIR variants=A,B[,C…] [name=NAME] [out=DIR] [alpha=0.05]
        [permutations=10000] [seed=0] [examples=2] [dims=5] [explanations=FILE] [label_docs=48]
        [overlap=DIR]
    python -m harness.compare overlap models=splare_tiny,splade_tiny_llm[,…] [pairs=40]
        [languages=de,es,zh] [sources=LocalXQuADRetrieval,LocalBelebeleRetrieval] [out=DIR]
        [seed=0] [<Hydra overrides applied to every model, e.g. model.backbone.max_length=256>]

The first form compares the first variant (A) with each other one (B) on the units they all
searched, from the run files of results root DIR (`harness.compare.variants` for the selectors),
and writes `comparison.md`, tables and figures to `out` (default `reports/<name>`). The second
measures the overlap of pooled vectors of parallel texts (`harness.compare.overlap`) and writes
`overlap.md`/`.json`/tables/figure to `out` (default `reports/overlap`).
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cli import one_line_errors
from harness.results import git_state

REPORT_KEYS = ("results", "variants", "name", "out", "alpha", "permutations", "seed", "examples",
               "dims", "explanations", "label_docs", "overlap")
OVERLAP_KEYS = ("models", "pairs", "languages", "sources", "out", "seed")


def parse(argv: Sequence[str], keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(this command's `key=value` arguments, the rest as Hydra overrides)."""
    own, rest = {}, []
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"argument '{item}' is not key=value")
        (own.__setitem__(key, value) if key in keys else rest.append(item))
    return own, rest


def number(own: Mapping[str, str], key: str, default: str, cast: type, low: float,
           high: float = float("inf")) -> Any:
    """`own[key]` (or `default`) as `cast`, within [low, high]; one-line error otherwise."""
    raw = own.get(key, default)
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{key}={raw} is not a {cast.__name__}") from None
    if not low <= value <= high:
        raise ValueError(f"{key}={raw} is outside [{low}, {high}]")
    return value


def provenance_header(kind: str) -> list[str]:
    """Lines saying who measured this, when, with which command."""
    git = git_state() or {}
    commit = f"{git.get('commit', '?')}{'+dirty' if git.get('dirty') else ''}"
    return [(f"Measured by this harness ({kind}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"git {commit}:"), "", f"    {this_command()}", ""]


def this_command() -> str:
    """`python -m harness.compare …` as typed (shell-quoted)."""
    return shlex.join(["python", "-m", "harness.compare", *sys.argv[1:]])


def build_encoder_from(config: Mapping[str, Any]) -> Any:
    """The uncapped SparseEncoder of a composed model config (a run record's `config.model`)."""
    from omegaconf import OmegaConf

    from models import build_encoder

    return build_encoder(OmegaConf.create(dict(config)))


def compare(argv: Sequence[str]) -> Path:
    """The comparison report (first form of the module docstring); returns `comparison.md`."""
    own, rest = parse(argv, REPORT_KEYS)
    if rest:
        raise ValueError(f"unknown arguments {rest}; valid: {', '.join(REPORT_KEYS)}")
    if "results" not in own or "variants" not in own:
        raise ValueError("give results=<results root> and variants=A,B[,…]")
    alpha = number(own, "alpha", "0.05", float, 1e-6, 0.5)
    permutations = number(own, "permutations", "10000", int, 100)
    seed = number(own, "seed", "0", int, 0)
    n_examples = number(own, "examples", "2", int, 0)
    n_dims = number(own, "dims", "5", int, 1)
    label_docs = number(own, "label_docs", "48", int, 1)
    from models.inspect import load_explanations

    explanations = load_explanations(own["explanations"]) if own.get("explanations") else None
    overlap_dir = Path(own["overlap"]) if own.get("overlap") else None
    if overlap_dir is not None and not (overlap_dir / "overlap.json").is_file():
        raise FileNotFoundError(f"overlap={overlap_dir}: no overlap.json there")

    from harness.compare import analysis, report
    from harness.compare.variants import load_unit_tasks, select_variants

    variants = select_variants(Path(own["results"]), own["variants"].split(","))
    name = own.get("name") or "_vs_".join(v.record.get("config", "?") for v in variants)
    out = Path(own.get("out") or Path("reports") / name)
    out.mkdir(parents=True, exist_ok=True)
    units = analysis.common_units(variants)
    tasks = load_unit_tasks(variants, units)
    frame = analysis.per_query_table(variants, tasks, units)
    frame.drop(columns="domains").to_csv(out / "per_query.csv", index=False)

    md = ["# Comparison: " + " vs ".join(v.label for v in variants), "",
          *provenance_header("python -m harness.compare")]
    md += variants_section(variants, units, out)
    md += ["## Paired significance", "",
           (f"Per task: Fisher randomization test over queries (ranx, {permutations} random swaps, "
           f"two-sided, seed {seed}) and a 95% percentile-bootstrap interval of the mean paired "
           f"difference (scipy, {permutations} resamples), queries of a task's subsets weighted so "
           "the mean is mteb's main score; p (Holm) corrects across a table's task rows, `*` marks "
           f"p (Holm) <= {alpha}. The row 'mean over tasks' is the same test over the tasks' "
           "scores (n = tasks, uncorrected). Per-query nDCG@10: ranx on the harness's TREC run "
           "files and the task's qrels, checked equal to the harness's per-query file and each "
           "subset's mean to mteb's stored main score."), "",
           (f"With {len(tasks)} tasks, the smallest two-sided p the test over tasks can reach is "
            f"{min(1.0, 2 / 2 ** len(tasks)):.3g} (all sign patterns of the task differences), and "
            "its interval resamples only those tasks: read the 'mean over tasks' row with that "
            "in mind."), ""]
    a = variants[0]
    tables, unit_tables = [], []
    for b in variants[1:]:
        table = analysis.task_table(frame, a.label, b.label, permutations=permutations,
                                    seed=seed, alpha=alpha)
        stem = f"significance_{a.record.get('config')}_vs_{b.record.get('config')}"
        shown = report.display_task_table(table, f"A: {a.label}", f"B: {b.label}", permutations)
        md += [f"### B = {b.label} vs A = {a.label}", "",
               report.write_table(shown, out, stem), "", f"(`{stem}.csv/.tex/.md`)", ""]
        tables.append((a.label, b.label, table))
        units_frame = analysis.unit_table(frame, a.label, b.label, permutations=permutations,
                                          seed=seed, alpha=alpha)
        units_frame.assign(domains=units_frame.domains.map("/".join)).to_csv(
            out / f"units_{a.record.get('config')}_vs_{b.record.get('config')}.csv", index=False)
        unit_tables.append((b, units_frame))
    fig = report.save_figure(report.delta_figure(tables, alpha), out, "delta_by_task")
    md += [f"![Δ nDCG@10 per task]({fig})", "",
           ("*Δ nDCG@10 (B − A) per task and for the mean over tasks, 95% bootstrap intervals; "
           "filled: significant after Holm. Full variant names: see the variants table.*"), ""]
    md += wtl_section(a, unit_tables, out, alpha)
    md += crosslingual_section(frame, [v.label for v in variants], out)
    if overlap_dir is not None:
        md += overlap_section(overlap_dir, out)
    if n_examples:
        md += examples_section(variants, tasks, units, n_examples, n_dims, seed, explanations,
                               label_docs)
    path = out / "comparison.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def variants_section(variants: Sequence[Any], units: Sequence[Any], out: Path) -> list[str]:
    """The variants table and the harness commands that produced their results."""
    import pandas as pd

    from harness.compare.report import write_table

    rows, commands = [], {}
    for v in variants:
        runs = {v.computing_run(u)["run_id"]: v.computing_run(u) for u in units}
        commands.update({r["command"]: None for r in runs.values()})
        rows.append({"label": v.label, "variant (mteb name @ revision)": v.full_name,
                     "config": v.record.get("config"), "space": v.record.get("space"),
                     "top-k q/d": "{query}/{document}".format(**(v.record.get("top_k") or
                                                                {"query": "-", "document": "-"})),
                     "runs": ", ".join(sorted(runs))})
    table = write_table(pd.DataFrame(rows), out, "variants")
    n_tasks = len({u[0] for u in units})
    return ["## Variants", "", table, "",
            (f"Compared on the {len(units)} (task, split, subset) units of {n_tasks} tasks that "
            "every variant searched. Results produced by:"), "",
            *[f"    {c}" for c in commands], ""]


def wtl_section(a: Any, unit_tables: Sequence[tuple[Any, Any]], out: Path,
                alpha: float) -> list[str]:
    """Win/tie/loss per domain and per language (tables and one figure each)."""
    from harness.compare import analysis, report

    md = ["## Win / tie / loss per domain and language", "",
          ("Per (task, subset) unit: a paired randomization test over its queries, Holm-corrected "
          f"across all units of the pair; win/loss = B significantly better/worse at {alpha}, "
          "tie otherwise. A unit with several domains counts in each."), ""]
    for by in ("domain", "language"):
        summaries = []
        for b, units_frame in unit_tables:
            summary = analysis.win_tie_loss(units_frame, by)
            stem = f"wtl_{by}_{a.record.get('config')}_vs_{b.record.get('config')}"
            md += [f"### {by}: B = {b.label} vs A = {a.label}", "",
                   report.write_table(summary, out, stem), ""]
            summaries.append((f"{b.label}\nvs {a.label}", summary))
        fig = report.save_figure(report.wtl_figure(summaries, by), out, f"wtl_{by}")
        md += [f"![win/tie/loss per {by}]({fig})", "",
               f"*Units where B wins / ties / loses against A, per {by}.*", ""]
    return md


def crosslingual_section(frame: Any, labels: Sequence[str], out: Path) -> list[str]:
    """Score by (query language, document language) per variant, for cross-lingual tasks."""
    import pandas as pd

    from harness.compare import analysis, report

    grids = analysis.crosslingual_grid(frame)
    md = ["## Cross-lingual: score by (query language, document language)", ""]
    if not grids:
        return md + ["No compared task has a cross-lingual subset.", ""]
    for index, (task, grid) in enumerate(grids.items()):
        stem = f"crosslingual_{index}"
        table = grid.pivot_table(index=["query_lang", "doc_lang"], columns="variant",
                                 values="score").reindex(columns=list(labels)).reset_index()
        md += [f"### {task}", "", report.write_table(table, out, stem), ""]
        fig = report.save_figure(report.crosslingual_figure(task, grid, labels), out, stem)
        md += [f"![{task}]({fig})", "",
               (f"*Mean nDCG@10 per (query language, document language) of {task}, "
               f"{int(grid.n.iloc[0])} queries per cell; one panel per variant.*"), ""]
    pd.concat(grids.values()).to_csv(out / "crosslingual.csv", index=False)
    return md


def overlap_section(folder: Path, out: Path) -> list[str]:
    """The overlap measurement of `folder` (`overlap.md` written by the overlap command), its
    figure linked relative to the report folder `out`."""
    text = (folder / "overlap.md").read_text(encoding="utf-8")
    body = text.split("\n", 1)[1] if text.startswith("# ") else text
    return ["## Language-agnostic features (overlap of parallel texts)", "",
            f"From `{folder}` (its own command is stated there):", "",
            body.replace("](overlap.png)",
                         f"]({os.path.relpath(folder / 'overlap.png', out)})"), ""]


def examples_section(variants: Sequence[Any], tasks: Mapping[str, Any], units: Sequence[Any],
                     n: int, n_dims: int, seed: int, explanations: Mapping[int, str] | None,
                     label_docs: int) -> list[str]:
    """Sampled queries per task with every variant's top document and its top dimensions."""
    from harness.compare import examples as ex
    from harness.compare.report import examples_markdown
    from harness.runfiles import split_data

    judged, texts = {}, {}
    for unit in units:
        task_name, split, subset = unit
        judged[unit] = list(split_data(tasks[task_name], subset, split)["relevant_docs"])
        texts[unit] = ex.unit_texts(tasks[task_name], unit)
    picks = ex.sample_queries(units, judged, n, seed)
    examples = []
    for task_name, items in picks.items():
        for unit, qid in items:
            qrels = split_data(tasks[task_name], unit[2], unit[1])["relevant_docs"][qid]
            matches = []
            for v in variants:
                top = ex.top_document(v, unit, qid)
                matches.append(ex.Match(v.label, top[0] if top else None,
                                        qrels.get(top[0], 0) if top else None,
                                        top[1] if top else None))
            docs = {m.doc_id: texts[unit][1][m.doc_id] for m in matches if m.doc_id}
            examples.append(ex.Example(task_name, unit[1], unit[2], qid, texts[unit][0][qid],
                                       matches, docs))
    corpus = {t: ex.corpus_sample(tasks[t], [u for u in units if u[0] == t], label_docs, seed)
              for t in picks}
    notes = []
    for v in variants:
        if v.record.get("kind") == "bm25":
            notes.append(f"{v.label}: lexical (bm25s), no learned dimensions to show.")
            continue
        encoder = build_encoder_from(v.computing_run(units[0])["config"]["model"])
        ex.explain_matches(examples, encoder, v.label, n_dims=n_dims,
                           explanations=explanations if ex.is_latent_encoder(encoder) else None,
                           corpus=corpus)
        del encoder
        gc.collect()
    source = ("latent labels from the explanation file given" if explanations is not None else
              f"latents named by the tokens of a {label_docs}-document seeded sample of the "
              "task's corpus that activate them most (log(1 + relu(z)))")
    return ["## Examples: why the top document matched", "",
            (f"{n} sampled queries per task (seed {seed}); per variant its top-ranked document, "
            f"the qrels' judgment, and the {n_dims} dimensions with the largest q_j·d_j "
            "(`models.inspect.contributions`, uncapped vectors as encoded; share of q·d in "
            f"brackets). SPLADE dimensions are tokens; SPLARE: {source}."),
            *[f"{note}" for note in notes], "", examples_markdown(examples)]


def overlap_command(argv: Sequence[str]) -> Path:
    """The overlap measurement (second form of the module docstring); returns `overlap.md`."""
    own, overrides = parse(argv, OVERLAP_KEYS)
    models = [m for m in own.get("models", "splare_tiny,splade_tiny_llm").split(",") if m]
    n_pairs = number(own, "pairs", "40", int, 2)
    seed = number(own, "seed", "0", int, 0)
    languages = [x for x in own.get("languages", "de,es,zh").split(",") if x]
    from harness.compare.overlap import SOURCES, run_overlap

    sources = own.get("sources", ",".join(SOURCES)).split(",")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"sources {unknown} unknown; valid: {', '.join(SOURCES)}")
    from harness.config import compose_config
    from harness.offline import configure_offline
    from harness.paths import shared_data_root
    from harness.tasks.local import get_local_task

    configs = {m: compose_config([f"model={m}", *overrides]) for m in models}
    for m, cfg in configs.items():
        if cfg.model.kind == "bm25":
            raise ValueError(f"model={m}: BM25 has no pooled vectors to compare")
    configure_offline(next(iter(configs.values())).run.hub)
    root = shared_data_root()
    if root is None:
        raise FileNotFoundError("no shared data folder (set HARNESS_DATA_ROOT)")
    tasks = {s: get_local_task(s, root) for s in sources}
    # XQuAD subsets name languages `de`, Belebele's `deu_Latn`: measure each where it exists.
    subset_langs = sorted({lang for lang in languages} | {lang_code(lang) for lang in languages})
    out = Path(own.get("out") or "reports/overlap")
    out.mkdir(parents=True, exist_ok=True)

    import pandas as pd

    from harness.compare.report import overlap_figure, save_figure, write_table
    from harness.reports.variants import short_label
    from models.spec import ModelSpec

    frames = []
    for m, cfg in configs.items():
        spec = ModelSpec.from_config(cfg.model)
        encoder = build_encoder_from(cfg.model)
        label = short_label({**spec.record(),
                             "embed_dim": encoder.get_sentence_embedding_dimension()})
        encode = make_encode(encoder)
        frames.append(run_overlap({label: (encode, spec.top_k_document)}, tasks,
                                  subset_langs, n_pairs, seed).assign(config=m))
        del encoder
        gc.collect()
    table = pd.concat(frames, ignore_index=True)
    (out / "overlap.json").write_text(json.dumps(
        {"command": this_command(), "git": git_state(), "pairs": n_pairs, "seed": seed,
         "rows": table.to_dict(orient="records")}, indent=1) + "\n", encoding="utf-8")
    shown = table.assign(**{"parallel (95% CI)": [
        f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in zip(table.parallel, table.low, table.high,
                                                            strict=True)],
        "parallel − mismatched": table.parallel - table.mismatched})[
        ["model", "source", "language", "cut", "n", "parallel (95% CI)", "mismatched",
         "parallel − mismatched", "l0_pivot", "l0_translation"]]
    md = ["# Overlap of pooled vectors of parallel texts", "",
          *provenance_header("python -m harness.compare overlap"),
          ("overlap(u→v) = share of u's mass on the dimensions active in v; a pair's value is the "
          "mean of both directions, for an English document and its translation (document "
          "vectors, uncapped as pooled and cut to the variant's document top-k as searched). "
          "'mismatched' pairs document i with the translation of document i+1 (chance level). "
          "95% percentile-bootstrap interval over pairs (scipy). l0 = mean active dimensions "
          f"(English / translation). {n_pairs} pairs per (source, language), sampled with seed "
          f"{seed} from the local tasks' parallel documents."), "",
          write_table(shown, out, "overlap", floatfmt=".3f"), "",
          f"![overlap]({save_figure(overlap_figure(table), out, 'overlap')})", "",
          ("*Parallel-pair overlap (bars, 95% interval) and mismatched-pair level (black ticks); "
          "measured by this harness with the command above.*"), ""]
    path = out / "overlap.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def lang_code(lang: str) -> str:
    """Belebele's file language of a two-letter code (`de` -> `deu_Latn`), else `lang`."""
    return {"de": "deu_Latn", "en": "eng_Latn"}.get(lang, lang)


def make_encode(encoder: Any, batch_size: int = 8) -> Any:
    """texts -> `[n, dim]` scipy CSR of the encoder's uncapped document vectors (each distinct
    text encoded once: the English side recurs for every language)."""
    import numpy as np
    import scipy.sparse as sp

    seen: dict[str, sp.csr_matrix] = {}

    def encode(texts: Sequence[str]) -> sp.csr_matrix:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            vectors = encoder.encode_document(new, batch_size=batch_size,
                                              convert_to_sparse_tensor=True).coalesce().cpu()
            rows, cols = vectors.indices().numpy()
            matrix = sp.csr_matrix((vectors.values().float().numpy().astype(np.float64),
                                    (rows, cols)), shape=tuple(vectors.shape))
            seen.update((t, matrix.getrow(i)) for i, t in enumerate(new))
        return sp.vstack([seen[t] for t in texts], format="csr")

    return encode


def main() -> None:
    """CLI entry point."""
    argv = sys.argv[1:]
    with one_line_errors():
        if argv[:1] == ["overlap"]:
            print(overlap_command(argv[1:]))
        else:
            print(compare(argv))


if __name__ == "__main__":
    main()
