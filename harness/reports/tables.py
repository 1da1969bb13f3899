"""Paper-shaped tables: reference rows from the paper, measured rows/columns, and deltas.

Scores are on the paper's 0-100 scale. A task's score is mteb's own aggregate (mean of the metric
over the splits and subsets present); a benchmark average is the mean over its tasks. An average
that misses tasks is marked "†" with a footnote "n/N tasks", a task that misses subsets "‡", a
measured number with caveats (zero-shot, sliced queries) "§".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from harness.reports.collect import ModelRun, subset_scores, task_score
from harness.reports.variants import paper_counterpart, top_k_text

PARTIAL, SUBSETS, CAVEAT = "†", "‡", "§"
#: Characters kept out of table keys (they name files and Markdown links).
_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A paper column: its label, how the paper names it, and the mteb tasks it averages."""

    label: str
    ref_benchmark: str
    ref_task: str
    metric: str
    mteb_benchmark: str | None
    task: str | None = None        # a single-task "benchmark" (averaged over its subsets)
    splits: tuple[str, ...] = ()

    def tasks(self) -> list[str]:
        """Task names averaged for this column ([] when mteb has no such task)."""
        if self.task:
            return [self.task]
        return retrieval_tasks(self.mteb_benchmark) if self.mteb_benchmark else []


ENG = BenchmarkSpec("MTEB(eng, v2)", "MTEB(eng, v2)", "AVERAGE(retrieval)", "ndcg_at_10", "MTEB(eng, v2)")
MULTI = BenchmarkSpec("MTEB(Multilingual, v2)", "MTEB(Multilingual, v2)", "AVERAGE(retrieval)",
                      "ndcg_at_10", "MTEB(Multilingual, v2)")
TABLE1 = (
    ENG, MULTI,
    BenchmarkSpec("Code", "Code", "AVERAGE(retrieval)", "ndcg_at_10", "MTEB(Code, v1)"),
    BenchmarkSpec("Medical", "Medical", "AVERAGE(retrieval)", "ndcg_at_10", "MTEB(Medical, v1)"),
    BenchmarkSpec("Law", "Law", "AVERAGE(retrieval)", "ndcg_at_10", "MTEB(Law, v1)"),
    BenchmarkSpec("ChemTEB", "ChemTEB", "AVERAGE(retrieval)", "ndcg_at_10", "ChemTEB"),
)
# XTREME-UP (MRR@10) has no task in this mteb version: its column only ever holds paper numbers.
TABLE3 = (ENG, MULTI, BenchmarkSpec("XTREME-UP", "XTREME-UP", "AVERAGE", "mrr_at_10", None))
MIRACL = BenchmarkSpec("MIRACL dev", "MIRACL dev", "AVERAGE", "ndcg_at_10", None,
                       task="MIRACLRetrieval", splits=("dev",))


@functools.cache
def retrieval_tasks(benchmark: str) -> list[str]:
    """The Retrieval task names of mteb benchmark `benchmark` (metadata only, nothing downloaded)."""
    import mteb

    return [t.metadata.name for t in mteb.get_benchmark(benchmark).tasks if t.metadata.type == "Retrieval"]


@functools.cache
def expected_subsets(task: str) -> frozenset[str] | None:
    """The hf_subsets mteb's registry lists for `task`; None for tasks outside the registry."""
    import mteb

    try:
        return frozenset(mteb.get_task(task).metadata.hf_subsets)
    except KeyError:
        return None


@dataclass
class Cell:
    """One table cell. `kind`: label | paper | leaderboard | measured | delta. `marks`: footnotes;
    `digits`: decimals shown; `qualifier`: a word the source puts before the number ("about")."""

    value: float | None = None
    text: str = ""
    kind: str = "label"
    marks: str = ""
    digits: int = 1
    qualifier: str = ""

    def display(self) -> str:
        """The cell as shown: "52.1†", "+0.4", "about 5", "–" for a missing number, or the label."""
        if self.kind == "label":
            return self.text
        if self.value is None:
            return "–"
        sign = "+" if self.kind == "delta" else ""
        number = f"{self.value:{sign},.{self.digits}f}" + self.marks
        return f"{self.qualifier} {number}" if self.qualifier else number


@dataclass
class Table:
    """A rendered-agnostic table: header, rows of cells, footnotes."""

    key: str
    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Add a footnote once."""
        if text not in self.notes:
            self.notes.append(text)


@dataclass
class Average:
    """A measured mean over the tasks a run covers, with what it misses."""

    value: float | None
    covered: int
    total: int
    missing: list[str]
    subset_partial: list[str]
    unit: str = "tasks"


def benchmark_average(run: ModelRun, spec: BenchmarkSpec) -> Average:
    """Mean over `spec`'s tasks of mteb's task score; partial coverage is recorded, not hidden."""
    tasks = spec.tasks()
    scores, missing, partial = [], [], []
    for task in tasks:
        result = run.results.get(task)
        score = task_score(result, spec.metric, spec.splits) if result is not None else None
        if score is None:
            missing.append(task)
            continue
        scores.append(score)
        expected = expected_subsets(task)
        if expected is not None and not expected <= set(result.hf_subsets):
            partial.append(f"{task} ({len(expected & set(result.hf_subsets))}/{len(expected)} subsets)")
    value = sum(scores) / len(scores) if scores else None
    return Average(value, len(scores), len(tasks), missing, partial)


def _measured_cell(table: Table, run: ModelRun, avg: Average, where: str) -> Cell:
    marks = ""
    if avg.value is not None and avg.covered < avg.total:
        marks += PARTIAL
        table.note(f"{PARTIAL} {run.label}, {where}: average over {avg.covered}/{avg.total} {avg.unit} "
                   f"(missing: {', '.join(avg.missing)}).")
    if avg.value is not None and avg.subset_partial:
        marks += SUBSETS
        table.note(f"{SUBSETS} {run.label}, {where}: task(s) with missing subsets: "
                   f"{', '.join(avg.subset_partial)}.")
    if avg.value is not None and run.variant.caveats:
        marks += CAVEAT
        table.note(f"{CAVEAT} {run.label}: {'; '.join(run.variant.caveats)}.")
    return Cell(avg.value, kind="measured", marks=marks)


def _task_cell(table: Table, run: ModelRun, task: str, metric: str) -> Cell:
    """A measured task score with ‡ (subsets missing vs mteb's registry) and § (caveats) marks."""
    result = run.results.get(task)
    value = task_score(result, metric) if result is not None else None
    if value is None:
        return Cell(None, kind="measured")
    marks = ""
    expected = expected_subsets(task)
    if expected is not None and not expected <= set(result.hf_subsets):
        marks += SUBSETS
        table.note(f"{SUBSETS} {run.label}, {task}: {len(expected & set(result.hf_subsets))}/"
                   f"{len(expected)} subsets.")
    if run.variant.caveats:
        marks += CAVEAT
        table.note(f"{CAVEAT} {run.label}: {'; '.join(run.variant.caveats)}.")
    return Cell(value, kind="measured", marks=marks)


def _delta(measured: Cell, paper: float | None) -> Cell:
    if measured.value is None or paper is None:
        return Cell(None, kind="delta")
    return Cell(measured.value - paper, kind="delta", marks=measured.marks.replace(CAVEAT, ""))


def _paper(reference: pd.DataFrame, table: int, model: str, setting: str | None,
           benchmark: str, task: str, metric: str) -> float | None:
    sel = ((reference["table"] == table) & (reference["model"] == model)
           & (reference["benchmark"] == benchmark) & (reference["task"] == task)
           & (reference["metric"] == metric))
    if setting is not None:
        sel &= reference["setting"] == setting
    values = reference.loc[sel, "value"]
    return float(values.iloc[0]) if len(values) else None


def _counterpart_note(table: Table, run: ModelRun, counterpart: tuple[str, str] | None) -> None:
    if counterpart:
        setting = f" ({counterpart[1]})" if counterpart[1] else ""
        table.note(f"Δ {run.label} = measured − paper {counterpart[0]}{setting}.")


def benchmark_table(reference: pd.DataFrame, runs: Sequence[ModelRun], table_no: int,
                    specs: Sequence[BenchmarkSpec], families: dict[str, str] | None = None) -> Table:
    """Model × benchmark averages (paper Tables 1 and 3): paper rows, then measured rows with Δ.

    A Δ column follows a benchmark only when some measured row has a paper counterpart value there.
    """
    families = families or {}
    ref = reference[reference["table"] == table_no]
    measured = [r for r in runs if any(t in r.results for s in specs for t in s.tasks())]
    counterparts = {r.name: paper_counterpart(r.variant, table_no, families.get(r.name)) for r in measured}
    averages = {(r.name, r.revision, s.label): benchmark_average(r, s) for r in measured for s in specs}

    def paper_value(run: ModelRun, spec: BenchmarkSpec) -> float | None:
        cp = counterparts[run.name]
        return None if cp is None else _paper(ref, table_no, cp[0], cp[1], spec.ref_benchmark,
                                               spec.ref_task, spec.metric)

    with_delta = [s for s in specs if any(
        averages[(r.name, r.revision, s.label)].value is not None and paper_value(r, s) is not None
        for r in measured)]
    header = ["Model", "Setting", "Source"]
    for spec in specs:
        header.append(spec.label + (" (MRR@10)" if spec.metric == "mrr_at_10" else ""))
        if spec in with_delta:
            header.append(f"Δ {spec.label}")
    title = {1: "Table 1: retrieval averages (nDCG@10) per benchmark",
             3: "Table 3: MTEB retrieval averages (nDCG@10) and XTREME-UP (MRR@10)"}.get(
        table_no, f"Table {table_no}")
    out = Table(key=f"table{table_no}", title=title, header=header)
    for (model, setting), rows in ref.groupby(["model", "setting"], sort=False):
        cells = [Cell(text=model), Cell(text=setting), Cell(text=f"paper, Table {table_no}")]
        for spec in specs:
            value = _paper(rows, table_no, model, setting, spec.ref_benchmark, spec.ref_task, spec.metric)
            cells.append(Cell(value, kind="paper"))
            if spec in with_delta:
                cells.append(Cell(text=""))
        out.rows.append(cells)
    for run in measured:
        cp = counterparts[run.name]
        cells = [Cell(text=run.label), Cell(text=f"top-k {_topk(run)}"), Cell(text="measured")]
        for spec in specs:
            where = spec.label
            cell = _measured_cell(out, run, averages[(run.name, run.revision, spec.label)], where)
            cells.append(cell)
            if spec in with_delta:
                cells.append(_delta(cell, paper_value(run, spec)))
        if any(spec in with_delta and paper_value(run, spec) is not None for spec in specs):
            _counterpart_note(out, run, cp)
        out.rows.append(cells)
    for spec in specs:
        if not spec.tasks():
            out.note(f"{spec.label}: no mteb task in this mteb version; paper numbers only.")
        elif spec.mteb_benchmark:
            out.note(f"{spec.label}: mean over the {len(spec.tasks())} Retrieval tasks of mteb "
                     f"benchmark '{spec.mteb_benchmark}'.")
    return out


def _topk(run: ModelRun) -> str:
    from harness.reports.variants import top_k_label

    return top_k_label(run.variant)


def per_task_table(reference: pd.DataFrame, runs: Sequence[ModelRun], table_no: int,
                   spec: BenchmarkSpec, families: dict[str, str] | None = None) -> Table:
    """Tasks × models (paper Tables 6 and 7): paper columns, measured columns, Δ columns, mean row."""
    families = families or {}
    ref = reference[reference["table"] == table_no]
    tasks = list(dict.fromkeys(ref["task"]))
    paper_models = list(dict.fromkeys(ref["model"]))
    measured = [r for r in runs if any(t in r.results for t in tasks)]
    counterparts = {r.name: paper_counterpart(r.variant, table_no, families.get(r.name)) for r in measured}
    header = ["Task", *[f"{m} (paper)" for m in paper_models]]
    for run in measured:
        header.append(run.label)
        if counterparts[run.name]:
            header.append(f"Δ {run.label}")
    out = Table(key=f"table{table_no}", header=header,
                title=f"Table {table_no}: {spec.label} retrieval tasks (nDCG@10)")
    for task in tasks:
        cells = [Cell(text=task)]
        cells += [Cell(_paper(ref, table_no, m, None, spec.ref_benchmark, task, spec.metric), kind="paper")
                  for m in paper_models]
        for run in measured:
            cell = _task_cell(out, run, task, spec.metric)
            cells.append(cell)
            if cp := counterparts[run.name]:
                cells.append(_delta(cell, _paper(ref, table_no, cp[0], None, spec.ref_benchmark, task,
                                                 spec.metric)))
        out.rows.append(cells)
    mean_row = [Cell(text="Mean of rows")]
    for m in paper_models:
        values = [_paper(ref, table_no, m, None, spec.ref_benchmark, t, spec.metric) for t in tasks]
        values = [v for v in values if v is not None]
        mean_row.append(Cell(sum(values) / len(values) if values else None, kind="paper"))
    for run in measured:
        scores = {t: task_score(run.results[t], spec.metric) for t in tasks if t in run.results}
        scores = {t: v for t, v in scores.items() if v is not None}
        avg = Average(sum(scores.values()) / len(scores) if scores else None, len(scores), len(tasks),
                      [t for t in tasks if t not in scores], [])
        cell = _measured_cell(out, run, avg, f"{spec.label} mean")
        mean_row.append(cell)
        if cp := counterparts[run.name]:
            # Δ of the mean is taken over the tasks this run has, against the paper on the same tasks.
            paper = [_paper(ref, table_no, cp[0], None, spec.ref_benchmark, t, spec.metric) for t in scores]
            same = Cell(avg.value, kind="measured", marks=cell.marks)
            ok = scores and None not in paper
            mean_row.append(_delta(same, sum(paper) / len(paper)) if ok else Cell(None, kind="delta"))
            _counterpart_note(out, run, cp)
            out.note("Δ of the mean row: the run's mean minus the paper's mean over the same tasks.")
    out.rows.append(mean_row)
    out.note(f"Rows: the {spec.label} Retrieval tasks as listed in the paper's Table {table_no}.")
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def language_table(reference: pd.DataFrame, runs: Sequence[ModelRun],
                   families: dict[str, str] | None = None, spec: BenchmarkSpec = MIRACL) -> Table:
    """Languages × models (paper Table 11, MIRACL dev): per-language paper and measured nDCG@10."""
    families = families or {}
    ref = reference[(reference["table"] == 11) & (reference["metric"] == spec.metric)]
    langs = [t for t in dict.fromkeys(ref["task"]) if t != "AVERAGE"]
    per_lang_models = list(dict.fromkeys(ref.loc[ref["task"] != "AVERAGE", "model"]))
    measured = [r for r in runs if spec.task in r.results]
    counterparts = {r.name: paper_counterpart(r.variant, 11, families.get(r.name)) for r in measured}
    header = ["Language", *[f"{m} (paper)" for m in per_lang_models]]
    for run in measured:
        header.append(run.label)
        if counterparts[run.name]:
            header.append(f"Δ {run.label}")
    out = Table(key="table11", header=header,
                title=f"Table 11: {spec.label} per language (nDCG@10; measured: mteb {spec.task}, split dev)")
    scores = {r.name + r.revision: subset_scores(r.results[spec.task], spec.metric, spec.splits) for r in measured}
    for lang in [*langs, "AVERAGE"]:
        cells = [Cell(text="Average" if lang == "AVERAGE" else lang)]
        cells += [Cell(_paper(ref, 11, m, None, spec.ref_benchmark, lang, spec.metric), kind="paper")
                  for m in per_lang_models]
        for run in measured:
            got = scores[run.name + run.revision]
            if lang == "AVERAGE":
                present = [got[g] for g in langs if g in got]
                cell = _measured_cell(out, run, Average(_mean(present), len(present), len(langs),
                                                        [g for g in langs if g not in got], [], "languages"), spec.label)
            else:
                cell = Cell(got.get(lang), kind="measured",
                            marks=CAVEAT if lang in got and run.variant.caveats else "")
                if cell.marks:
                    out.note(f"{CAVEAT} {run.label}: {'; '.join(run.variant.caveats)}.")
            cells.append(cell)
            if cp := counterparts[run.name]:
                cells.append(_delta(cell, _paper(ref, 11, cp[0], None, spec.ref_benchmark, lang, spec.metric)))
                _counterpart_note(out, run, cp)
        out.rows.append(cells)
    return out


def language_average_table(reference: pd.DataFrame, runs: Sequence[ModelRun],
                           families: dict[str, str] | None = None, spec: BenchmarkSpec = MIRACL) -> Table:
    """Every paper model of Table 11 with its MIRACL dev average, then measured rows with Δ."""
    families = families or {}
    ref = reference[(reference["table"] == 11) & (reference["task"] == "AVERAGE")]
    langs = [t for t in dict.fromkeys(reference.loc[reference["table"] == 11, "task"]) if t != "AVERAGE"]
    out = Table(key="table11_averages", header=["Model", "Source", f"{spec.label} average", "Δ"],
                title=f"Table 11 (averages): {spec.label}, nDCG@10 averaged over {len(langs)} languages")
    for _, row in ref.iterrows():
        out.rows.append([Cell(text=row["model"]), Cell(text="paper, Table 11"),
                         Cell(row["value"], kind="paper"), Cell(text="")])
    for run in (r for r in runs if spec.task in r.results):
        got = subset_scores(run.results[spec.task], spec.metric, spec.splits)
        present = [got[g] for g in langs if g in got]
        cell = _measured_cell(out, run, Average(_mean(present), len(present), len(langs),
                                                [g for g in langs if g not in got], [], "languages"),
                              spec.label)
        cp = paper_counterpart(run.variant, 11, families.get(run.name))
        paper = _paper(ref, 11, cp[0], None, spec.ref_benchmark, "AVERAGE", spec.metric) if cp else None
        if paper is not None:
            _counterpart_note(out, run, cp)
        out.rows.append([Cell(text=run.label), Cell(text="measured"), cell, _delta(cell, paper)])
    return out


def measured_task_table(runs: Sequence[ModelRun], exclude: set[str], key: str = "measured_tasks") -> Table | None:
    """Tasks × models for measured tasks the paper tables do not list (e.g. the local tasks).

    Scores are each task's main score; the last row is the mean over the table's tasks, marked
    "†" for a model that misses some of them. None when no such task was measured.
    """
    tasks = sorted({t for r in runs for t in r.results if t not in exclude})
    measured = [r for r in runs if any(t in r.results for t in tasks)]
    if not tasks:
        return None
    out = Table(key=key, header=["Task", *[r.label for r in measured]],
                title="Measured tasks outside the paper's tables (main score, mostly nDCG@10)")
    for task in tasks:
        cells = [Cell(text=task)]
        for run in measured:
            cells.append(_task_cell(out, run, task, "main_score"))
        out.rows.append(cells)
    mean_row = [Cell(text="Mean over tasks")]
    for run in measured:
        got = {t: task_score(run.results[t], "main_score") for t in tasks if t in run.results}
        got = {t: v for t, v in got.items() if v is not None}
        mean_row.append(_measured_cell(out, run, Average(_mean(list(got.values())), len(got), len(tasks),
                                                         [t for t in tasks if t not in got], []),
                                       "mean over tasks"))
    out.rows.append(mean_row)
    out.note("No paper number exists for these tasks: every value here is measured.")
    return out


def measured_language_tables(runs: Sequence[ModelRun], exclude: set[str]) -> list[Table]:
    """Per-subset (per-language) tables for measured multi-subset tasks outside the paper tables."""
    tables = []
    tasks = sorted({t for r in runs for t, res in r.results.items()
                    if t not in exclude and len(res.hf_subsets) > 1})
    for task in tasks:
        measured = [r for r in runs if task in r.results]
        per_run = {r.label: subset_scores(r.results[task], "main_score") for r in measured}
        subsets = sorted({s for got in per_run.values() for s in got})
        out = Table(key="languages_" + _FILE_UNSAFE.sub("_", task).strip("_"), header=["Subset", *per_run],
                    title=f"{task} per subset (main score)")
        for subset in subsets:
            out.rows.append([Cell(text=subset), *[Cell(got.get(subset), kind="measured")
                                                  for got in per_run.values()]])
        row = [Cell(text="Task score (mteb)")]
        for run in measured:
            got = per_run[run.label]
            expected = sorted(expected_subsets(task) or subsets)
            avg = Average(task_score(run.results[task], "main_score"), len(got), len(expected),
                          [s for s in expected if s not in got], [], "subsets")
            row.append(_measured_cell(out, run, avg, task))
        out.rows.append(row)
        out.note("Task score: mteb's aggregate (mean over the subsets and splits present).")
        tables.append(out)
    return tables


#: Efficiency columns: `<Task>.efficiency.json` statistic, header, decimals shown, unit scale.
EFFICIENCY_COLUMNS = (
    ("avg_nnz_query", "nnz query", 1, 1.0),
    ("avg_nnz_document", "nnz document", 1, 1.0),
    ("flops", "FLOPS", 2, 1.0),
    ("search_ms_per_query", "Search ms/query", 3, 1.0),
    ("index_bytes", "Index MiB", 2, 2.0 ** -20),
    ("encode_tokens_per_s", "Encode tok/s", 0, 1.0),
)


def _distinct(values: Sequence[object]) -> str:
    """The distinct known values, in order, joined by ", " ("–" when none is known)."""
    return ", ".join(dict.fromkeys(str(v) for v in values if v is not None)) or "–"


def efficiency_table(runs: Sequence[ModelRun]) -> Table | None:
    """Models × search cost (mean over the tasks of each run's `<Task>.efficiency.json`): backend,
    top-k, nnz, FLOPS, search ms/query, index size and encoding speed. A mean over fewer tasks
    than the run measured is marked †. None when no run has an efficiency file."""
    measured = [r for r in runs if r.efficiency]
    if not measured:
        return None
    out = Table(key="efficiency", header=["Model", "Source", "Backend", "Top-k (q/d)", "Tasks",
                                          *[header for _, header, _, _ in EFFICIENCY_COLUMNS]],
                title="Efficiency: search cost per model, mean over tasks (measured)")
    for run in measured:
        stats = [run.efficiency[t] for t in sorted(run.efficiency)]
        top_k = [top_k_text(s.get("top_k_query"), s.get("top_k_document")) for s in stats]
        cells = [Cell(text=run.label), Cell(text="measured"),
                 Cell(text=_distinct([s.get("backend") for s in stats])), Cell(text=_distinct(top_k)),
                 Cell(text=str(len(stats)))]
        tasks = sorted(run.results)
        for key, _, digits, scale in EFFICIENCY_COLUMNS:
            got = {t: run.efficiency[t][key] * scale for t in tasks if key in run.efficiency.get(t, {})}
            missing = [t for t in tasks if t not in got]
            avg = Average(_mean(list(got.values())), len(got), len(tasks), missing, [])
            cells.append(replace(_measured_cell(out, run, avg, "efficiency"), digits=digits))
        out.rows.append(cells)
        commands = dict.fromkeys(r.command for r in run.records if r.command)
        out.note(f"{run.label}: `<Task>.efficiency.json` written by the search layer in "
                 + ("; ".join(f"`{c}`" for c in commands) or "a run without a record") + ".")
    out.note("Each number is the mean over the run's tasks of the task's mean over its subsets and splits; "
             "FLOPS = expected shared active dimensions per (query, document) pair; Index MiB = 2^20 bytes; "
             "Encode tok/s = tokens over seconds of documents and queries together.")
    return out
