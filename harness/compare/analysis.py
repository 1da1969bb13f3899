"""Per-query scores of several variants, paired tables per task and per benchmark average,
win/tie/loss per domain and language, and the (query language, document language) grid.

All tables are pandas DataFrames; `harness.compare.report` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.compare.significance import (
    check_scores,
    holm,
    paired_test,
    per_query_scores,
    read_trec_run,
    unit_weights,
)
from harness.compare.variants import Unit, Variant
from harness.runfiles import split_data

#: Largest tolerated gap between a unit's mean per-query score and mteb's stored main score
#: (mteb rounds it to 5 decimals).
MAIN_SCORE_TOLERANCE = 1e-5


def common_units(variants: Sequence[Variant]) -> list[Unit]:
    """The (task, split, subset) units every variant searched, sorted."""
    shared = set(variants[0].units)
    for variant in variants[1:]:
        shared &= set(variant.units)
    if not shared:
        raise ValueError("the variants share no searched (task, split, subset): nothing to compare")
    return sorted(shared)


def unit_languages(task: Any, subset: str) -> tuple[str, str]:
    """(query language, document language) of a unit, mteb language tags, read from the task's
    `eval_langs` (of the subset, or the task's list) by
    `harness.tasks.local_data.query_document_languages`: two tags are (document, query), as mteb's
    MLQARetrieval / BelebeleRetrieval, the local XQuAD / Belebele subsets and a cross-lingual BEIR
    folder list them; one language is both."""
    from harness.tasks.local_data import query_document_languages

    langs = task.metadata.eval_langs
    return query_document_languages(langs[subset] if isinstance(langs, Mapping) else langs)


def language_label(query_lang: str, doc_lang: str) -> str:
    """`deu-Latn` for a monolingual unit, `eng→deu` (query→document) for a cross-lingual one."""
    if query_lang == doc_lang:
        return query_lang
    return f"{query_lang.split('-')[0]}→{doc_lang.split('-')[0]}"


def per_query_table(
    variants: Sequence[Variant], tasks: Mapping[str, Any], units: Sequence[Unit]
) -> pd.DataFrame:
    """Long table of per-query nDCG@10 (ranx, from the run files and the task's qrels; checked
    against the harness's per-query file and each unit's mean against mteb's main score).

    Columns: task, split, subset, query_lang, doc_lang, domains (tuple), qid, variant (label),
    score. One row per (variant, unit, judged query).
    """
    rows = []
    for unit in units:
        task_name, split, subset = unit
        task = tasks[task_name]
        qrels = split_data(task, subset, split)["relevant_docs"]
        query_lang, doc_lang = unit_languages(task, subset)
        domains = tuple(task.metadata.domains or ["unknown"])
        for variant in variants:
            where = f"{variant.label}: {task_name} {split}/{subset}"
            scores = per_query_scores(qrels, read_trec_run(variant.run_file(unit)))
            check_scores(scores, variant.per_query(unit)["per_query"], where)
            stored = variant.main_score(task_name).get((split, subset))
            mean = float(np.mean(list(scores.values())))
            if stored is None or abs(mean - stored) > MAIN_SCORE_TOLERANCE:
                raise ValueError(f"{where}: mean nDCG@10 {mean:.5f} != mteb main score {stored}")
            rows += [{"task": task_name, "split": split, "subset": subset,
                      "query_lang": query_lang, "doc_lang": doc_lang, "domains": domains,
                      "qid": qid, "variant": variant.label, "score": score}
                     for qid, score in scores.items()]
    return pd.DataFrame(rows)


def _paired_columns(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None,
                    permutations: int, seed: int) -> dict[str, Any]:
    result = paired_test(a, b, weights, permutations=permutations, seed=seed)
    return {"n": result.n, "A": result.mean_a, "B": result.mean_b, "delta": result.delta,
            "low": result.low, "high": result.high, "p": result.p,
            "q_wins": result.wins, "q_ties": result.ties, "q_losses": result.losses}


def _pair(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows of `frame` with A's and B's scores side by side (columns score_a, score_b)."""
    keys = ["task", "split", "subset", "qid"]
    left = frame[frame.variant == a].drop(columns="variant").rename(columns={"score": "score_a"})
    right = frame[frame.variant == b][keys + ["score"]].rename(columns={"score": "score_b"})
    return left.merge(right, on=keys, how="inner", validate="one_to_one")


def task_table(frame: pd.DataFrame, a: str, b: str, *, permutations: int, seed: int,
               alpha: float) -> pd.DataFrame:
    """B vs A per task (queries of all its units pooled with `unit_weights`) and the mean over
    tasks (a paired test over the tasks' scores), Holm-corrected across the task rows.

    Columns: task, n, A, B, delta, low, high, p, p_holm, significant, q_wins, q_ties, q_losses.
    The last row (task "mean over tasks") has n = number of tasks and its own, uncorrected test.
    """
    paired = _pair(frame, a, b)
    rows = []
    for task, group in paired.groupby("task", sort=True):
        weights = unit_weights((group.split + "/" + group.subset).tolist())
        rows.append({"task": task, **_paired_columns(group.score_a.to_numpy(),
                                                     group.score_b.to_numpy(), weights,
                                                     permutations, seed)})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table.p.to_numpy())
    mean = _paired_columns(table.A.to_numpy(), table.B.to_numpy(), None, permutations, seed)
    mean["q_wins"], mean["q_ties"], mean["q_losses"] = (
        int((table.B > table.A).sum()), int((table.B == table.A).sum()),
        int((table.B < table.A).sum()))
    table = pd.concat([table, pd.DataFrame([{"task": "mean over tasks", **mean,
                                             "p_holm": mean["p"]}])], ignore_index=True)
    table["significant"] = table.p_holm <= alpha
    return table


def unit_table(frame: pd.DataFrame, a: str, b: str, *, permutations: int, seed: int,
               alpha: float) -> pd.DataFrame:
    """B vs A per (task, split, subset), Holm-corrected across all units, with the outcome for B:
    `win` / `loss` when significant at `alpha` after correction, else `tie`.

    Columns: task, split, subset, language, domains, n, A, B, delta, low, high, p, p_holm,
    outcome, q_wins, q_ties, q_losses.
    """
    paired = _pair(frame, a, b)
    rows = []
    for (task, split, subset), group in paired.groupby(["task", "split", "subset"], sort=True):
        first = group.iloc[0]
        rows.append({"task": task, "split": split, "subset": subset,
                     "language": language_label(first.query_lang, first.doc_lang),
                     "domains": first.domains,
                     **_paired_columns(group.score_a.to_numpy(), group.score_b.to_numpy(), None,
                                       permutations, seed)})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table.p.to_numpy())
    significant = table.p_holm <= alpha
    table["outcome"] = np.where(~significant, "tie", np.where(table.delta > 0, "win", "loss"))
    return table


def win_tie_loss(units: pd.DataFrame, by: str) -> pd.DataFrame:
    """Counts of B's unit outcomes per `by` ("domain" or "language"); a unit with several domains
    counts once in each. Columns: <by>, win, tie, loss, units."""
    if by == "domain":
        exploded = units.explode("domains").rename(columns={"domains": "domain"})
    elif by == "language":
        exploded = units
    else:
        raise ValueError(f"win/tie/loss by 'domain' or 'language', got {by!r}")
    counts = exploded.groupby([by, "outcome"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=["win", "tie", "loss"], fill_value=0)
    counts["units"] = counts.sum(axis=1)
    return counts.reset_index()


def crosslingual_grid(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per task with at least one cross-lingual unit: mean score per (variant, query language,
    document language), columns task, variant, query_lang, doc_lang, score, n."""
    grids = {}
    for task, group in frame.groupby("task", sort=True):
        if not (group.query_lang != group.doc_lang).any():
            continue
        grids[task] = (group.groupby(["variant", "query_lang", "doc_lang"])
                       .score.agg(["mean", "size"])
                       .rename(columns={"mean": "score", "size": "n"}).reset_index()
                       .assign(task=task))
    return grids
