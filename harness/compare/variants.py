"""The variants of a results root, what each searched, and the tasks behind it.

A variant is one `<root>/results/<org__model>/<revision>/` folder with the harness's
`harness/variant.json`. Its searched units are the per-query files
`harness/queries/<Task>/<split>/<subset>.ndcg_at_10.json` (`harness.runfiles`); the run that
computed each unit is named in `provenance.json`, and that run's record holds the composed config,
whose `benchmark` rebuilds the task (qrels, texts, languages, domains) with `load_tasks`, as the
runner did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.reports.variants import short_labels
from harness.results import read_provenance
from harness.runfiles import QUERIES_DIR
from harness.runner import RECORD_SUBDIR, VARIANT_FILE

Unit = tuple[str, str, str]
"""(task name, split, subset)."""


@dataclass
class Variant:
    """One evaluated variant: its folder, `variant.json`, a short label
    (`harness.reports.variants.short_labels`) and its searched units."""

    folder: Path
    record: dict[str, Any]
    label: str = ""
    units: dict[Unit, Path] = field(default_factory=dict)

    @property
    def harness_dir(self) -> Path:
        """`<revision>/harness/`."""
        return self.folder / RECORD_SUBDIR

    @property
    def full_name(self) -> str:
        """`<model name> @ <revision>` (captions and tables)."""
        return f"{self.record.get('name')} @ {self.record.get('revision')}"

    def per_query(self, unit: Unit) -> dict[str, Any]:
        """The unit's per-query record (`{"per_query": {qid: nDCG@10}, "run_id": …, …}`)."""
        return json.loads(self.units[unit].read_text(encoding="utf-8"))

    def run_file(self, unit: Unit) -> Path:
        """The unit's TREC run file."""
        record = self.per_query(unit)
        if not record.get("trec_file"):
            raise ValueError(f"{self.full_name} {unit}: no TREC run file was written")
        return self.units[unit].parent / record["trec_file"]

    def computing_run(self, unit: Unit) -> dict[str, Any]:
        """The record of the run that computed `unit` (per `provenance.json`); fails in one line
        when the per-query file was written by another run (stale)."""
        task, split, subset = unit
        entry = read_provenance(self.harness_dir).get(f"{task}.json")
        run_id = (entry or {}).get("subsets", {}).get(f"{split}/{subset}")
        if run_id is None:
            raise ValueError(f"{self.full_name}: no provenance for {task} {split}/{subset}")
        written_by = self.per_query(unit).get("run_id")
        if written_by != run_id:
            raise ValueError(f"{self.full_name} {task} {split}/{subset}: per-query file of run "
                             f"{written_by}, scores of run {run_id} (stale run file)")
        path = self.harness_dir / "runs" / f"{run_id}.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def main_score(self, task: str) -> dict[tuple[str, str], float]:
        """`{(split, subset): main score}` of mteb's `<task>.json`."""
        data = json.loads((self.folder / f"{task}.json").read_text(encoding="utf-8"))
        return {(split, s["hf_subset"]): float(s["main_score"])
                for split, scores in data["scores"].items() for s in scores}


def find_variants(root: Path) -> list[Variant]:
    """Every variant folder under results root `root` (`<root>/results/*/*/harness/variant.json`)."""
    found = []
    for path in sorted(Path(root).glob(f"results/*/*/{RECORD_SUBDIR}/{VARIANT_FILE}")):
        folder = path.parent.parent
        variant = Variant(folder, json.loads(path.read_text(encoding="utf-8")))
        queries = variant.harness_dir / QUERIES_DIR
        for per_query in sorted(queries.glob("*/*/*.ndcg_at_10.json")):
            unit = (per_query.parent.parent.name, per_query.parent.name,
                    per_query.name.removesuffix(".ndcg_at_10.json"))
            variant.units[unit] = per_query
        found.append(variant)
    return found


def select_variants(root: Path, selectors: Sequence[str]) -> list[Variant]:
    """The variants named by `selectors`, in that order. A selector matches a variant's config name
    (`splare_tiny`), its model folder (`org__model`), its model name or `<config>@<revision prefix>`.

    Raises:
        ValueError: a selector matches no variant or several (one line, naming the candidates).
    """
    if not (Path(root) / "results").is_dir():
        raise FileNotFoundError(f"results={root}: no results/ folder inside (a harness results root)")
    if len(selectors) < 2:
        raise ValueError(f"variants= needs at least two variants, got {list(selectors)}")
    variants = find_variants(root)
    chosen = []
    for selector in selectors:
        name, _, revision = selector.partition("@")
        hits = [v for v in variants
                if name in (v.record.get("config"), v.folder.parent.name, v.record.get("name"))
                and str(v.record.get("revision", "")).startswith(revision)]
        if len(hits) != 1:
            known = ", ".join(f"{v.record.get('config')}@{v.record.get('revision')}"
                              for v in variants) or "none"
            what = "no variant" if not hits else f"{len(hits)} variants"
            raise ValueError(f"variant '{selector}' matches {what} in {root}; known: {known}")
        chosen.append(hits[0])
    for variant, label in zip(chosen, short_labels([v.record for v in chosen]), strict=True):
        variant.label = label
    return chosen


def load_unit_tasks(variants: Sequence[Variant], units: Sequence[Unit]) -> dict[str, Any]:
    """Task name -> the mteb task (data loaded), rebuilt from the benchmark config of the runs that
    computed `units`; every variant's run must have used the same benchmark config for a task."""
    from harness.tasks import load_tasks

    configs: dict[str, dict[str, Any]] = {}
    for task in sorted({u[0] for u in units}):
        seen = {}
        for variant in variants:
            for unit in (u for u in units if u[0] == task):
                bench = variant.computing_run(unit)["config"]["benchmark"]
                seen[json.dumps(bench, sort_keys=True)] = bench
        if len(seen) != 1:
            raise ValueError(f"{task}: the variants' runs used different benchmark configs")
        configs[task] = next(iter(seen.values()))
    tasks: dict[str, Any] = {}
    for key in {json.dumps(c, sort_keys=True) for c in configs.values()}:
        for task in load_tasks(json.loads(key)):
            if task.metadata.name in configs:
                if not task.data_loaded:
                    task.load_data()
                tasks[task.metadata.name] = task
    missing = sorted(set(configs) - set(tasks))
    if missing:
        raise ValueError(f"tasks {missing} are not in the benchmark config their runs recorded")
    return tasks
