"""`python -m harness.plan [--tokens-per-second N] [--gpus N] [--chars-per-token X] [overrides]`.

What a model × benchmark sweep will cost, before spending it, without downloading any data:
per task the documents, queries, characters and estimated tokens, the total, the encoding hours
on 1 and N GPUs, and the size of the encoding cache at `run.cache_max_k`.

- Counts and characters: mteb's stored descriptive statistics of each eval split (per subset
  when the split has no totals); local tasks (embedded, data root, BEIR folders) are measured on
  their data, which is on disk.
- Tokens: characters / chars-per-token, each text capped at the model's `max_length`. With split
  statistics only the average is known: tokens = texts × min(average chars / cpt, max_length), an
  upper bound of the truncated count (the mean of a minimum is at most the minimum of the mean).
  Local tasks sum min(chars / cpt, max_length) text by text.
- Chars-per-token: measured with the model's own tokenizer when it loads offline, on the local
  tasks' texts or else on the embedded passages in the mteb tasks' languages; `--chars-per-token`
  replaces it; with neither, 4.0 is assumed and said.
- Hours: tokens / tokens-per-second / 3600 on one GPU, divided by N for N GPUs (linear scaling:
  encoding shards by task and by text). Tokens/s: `--tokens-per-second`, else
  `results/bench/encode.json` (`tokens_per_second`: a number, or one per model config name).
- Cache: a side with top-k k keeps cap = max(k, cache_max_k) entries per vector (0 = uncapped),
  stored as CSR: cap × (4-byte float32 value + 4-byte int32 index) + a 4-byte int32 row pointer
  per text (8-byte indices and pointers past 2**31 entries). An upper bound: a vector with fewer
  active dimensions keeps fewer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from harness.paths import REPO_ROOT

ASSUMED_CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English BPE text; stated when used
ENCODE_BENCH = REPO_ROOT / "results" / "bench" / "encode.json"
_SIDES = {"documents": ("num_documents", "documents_text_statistics"),
          "queries": ("num_queries", "queries_text_statistics")}


@dataclass(frozen=True)
class Side:
    """The texts of one side (documents or queries) of a task: count, characters, est. tokens."""

    texts: int
    chars: int
    tokens: float


@dataclass(frozen=True)
class TaskPlan:
    """One task of the plan; `source`: where the counts come from."""

    name: str
    source: str
    documents: Side
    queries: Side

    @property
    def tokens(self) -> float:
        return self.documents.tokens + self.queries.tokens


def side_blocks(split_stats: Mapping[str, Any], side: str) -> list[tuple[int, int]]:
    """`(texts, characters)` of one side of one split: the split's totals, else per subset."""
    count_key, text_key = _SIDES[side]

    def block(stats: Mapping[str, Any]) -> tuple[int, int] | None:
        text = stats.get(text_key) or {}
        chars = text.get("total_text_length")
        if chars is None:
            return None
        count = stats.get(count_key)
        if count is None and text.get("average_text_length"):
            count = round(chars / text["average_text_length"])
        return None if count is None else (int(count), int(chars))

    whole = block(split_stats)
    if whole is not None:
        return [whole]
    subsets = [block(s) for s in (split_stats.get("hf_subset_descriptive_stats") or {}).values()]
    if not subsets or None in subsets:
        raise ValueError(f"no {side} statistics in a split")
    return subsets


def capped_tokens(texts: int, chars: int, chars_per_token: float, max_length: int) -> float:
    """Tokens of `texts` texts of `chars` characters in all, each capped at `max_length`."""
    return texts * min(chars / texts / chars_per_token, max_length) if texts else 0.0


def mteb_task_plan(task: Any, chars_per_token: float, max_length: int) -> TaskPlan:
    """A plan row from mteb's stored statistics of `task`'s eval splits (no download)."""
    stats = task.metadata.descriptive_stats or {}
    missing = [s for s in task.metadata.eval_splits if s not in stats]
    if missing:
        raise ValueError(f"{task.metadata.name}: mteb has no statistics of split(s) {missing}")
    sides = {}
    for side in _SIDES:
        blocks = [b for split in task.metadata.eval_splits for b in side_blocks(stats[split], side)]
        sides[side] = Side(
            texts=sum(n for n, _ in blocks), chars=sum(c for _, c in blocks),
            tokens=sum(capped_tokens(n, c, chars_per_token, max_length) for n, c in blocks))
    return TaskPlan(task.metadata.name, "mteb stats", sides["documents"], sides["queries"])


def task_texts(task: Any) -> dict[str, list[str]]:
    """Every document and query text of a built local task, over its subsets and eval splits."""
    if not task.data_loaded:
        task.load_data()
    out: dict[str, list[str]] = {"documents": [], "queries": []}
    for subset in task.hf_subsets:
        for split in task.eval_splits:
            data = task.dataset[subset][split]
            out["documents"] += [_doc_text(row) for row in data["corpus"]]
            out["queries"] += list(data["queries"]["text"])
    return out


def _doc_text(row: Mapping[str, Any]) -> str:
    """A document as the search model reads it: `title text` when it has a title."""
    title = row.get("title") or ""
    return f"{title} {row['text']}" if title else row["text"]


def local_task_plan(task: Any, chars_per_token: float, max_length: int) -> TaskPlan:
    """A plan row measured on a local task's texts, each capped at `max_length` tokens."""
    texts = task_texts(task)
    sides = {side: Side(len(items), sum(map(len, items)),
                        sum(min(len(t) / chars_per_token, max_length) for t in items))
             for side, items in texts.items()}
    return TaskPlan(task.metadata.name, "local data", sides["documents"], sides["queries"])


def split_tasks(cfg: DictConfig) -> tuple[list[Any], list[Any]]:
    """The benchmark's tasks as (mteb tasks, built local tasks), `run.tasks` applied.

    mteb tasks are listed unsliced (slicing would download them); local tasks are built (and
    sliced as configured) from data on disk.
    """
    from harness.sweep import selected_task_names
    from harness.tasks import load_tasks, select_mteb_tasks

    chosen = set(selected_task_names(cfg))
    mteb_tasks = [t for t in select_mteb_tasks(cfg.benchmark) if t.metadata.name in chosen]
    local = OmegaConf.to_container(cfg.benchmark, resolve=True)
    local.update(mteb_benchmark=None, tasks=[])
    known = {t.metadata.name for t in mteb_tasks}
    only = [n for n in selected_task_names(cfg) if n not in known]
    return mteb_tasks, (load_tasks(local, only=only) if only else [])


def tokenizer_source(spec: Any) -> str | None:
    """Where the model's tokenizer loads from offline: a local folder or a cached hub id."""
    from models.build import resolve_path

    if spec.checkpoint:
        return resolve_path(spec.checkpoint)
    if spec.backbone is None:
        return None
    return resolve_path(spec.backbone.path) if spec.backbone.path else spec.backbone.id


def measure_chars_per_token(spec: Any, texts: Sequence[str]) -> tuple[float, str] | None:
    """Characters per token of `texts` with the model's tokenizer (no special tokens, no
    truncation), with a description; None when the tokenizer cannot be loaded offline."""
    from transformers import AutoTokenizer

    source = tokenizer_source(spec)
    if source is None:
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return None
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    n_tokens = sum(map(len, ids))
    n_chars = sum(map(len, texts))
    how = f"{tokenizer.__class__.__name__} of {source}: {n_chars} chars / {n_tokens} tokens"
    return n_chars / n_tokens, how


def sample_texts(local_tasks: Iterable[Any], mteb_tasks: Iterable[Any]) -> tuple[list[str], str]:
    """Texts to measure chars-per-token on: the local tasks', else the embedded passages in the
    mteb tasks' languages (those of the embedded task's languages; all of its default ones when
    none is)."""
    texts: list[str] = []
    names = []
    for task in local_tasks:
        sides = task_texts(task)
        texts += sides["documents"] + sides["queries"]
        names.append(task.metadata.name)
    if texts:
        return texts, ", ".join(names)
    from harness.tasks.local import get_local_task
    from harness.tasks.local_embedded import available_languages

    wanted = {lang for t in mteb_tasks for lang in t.metadata.languages}
    languages = sorted(wanted & set(available_languages()))
    options = {"languages": languages} if languages else {}
    task = get_local_task("EmbeddedMultilingualRetrieval", None, **options)
    sides = task_texts(task)
    label = ",".join(languages) if languages else "default languages"
    return sides["documents"] + sides["queries"], f"the embedded passages ({label})"


def bench_tokens_per_second(model_name: str, path: Path = ENCODE_BENCH) -> float | None:
    """Tokens/s measured by the encoding benchmark for `model_name`, when it recorded one."""
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("tokens_per_second")
    if isinstance(value, Mapping):
        value = value.get(model_name)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def cache_cap(top_k: int, cache_max_k: int) -> int:
    """Entries cached per vector of a side with top-k `top_k` (0 = uncapped), as the search model
    caches it."""
    return 0 if top_k == 0 or cache_max_k == 0 else max(top_k, cache_max_k)


def cache_bytes(texts: int, cap: int) -> int:
    """Upper bound of the CSR bytes of `texts` vectors of `cap` entries each (see module doc)."""
    entries = texts * cap
    width = 4 if entries < 2**31 else 8
    return entries * (4 + width) + (texts + 1) * width


def _positive(label: str, value: str, kind: type) -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or number <= 0:
        raise argparse.ArgumentTypeError(f"{label} must be a positive {kind.__name__}, got {value!r}")
    return number


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def plan_model(cfg: DictConfig, args: argparse.Namespace) -> tuple[pd.DataFrame, list[str]]:
    """The plan table of `cfg` (one row per task, then the total) and its explanation lines."""
    from models.spec import ModelSpec

    spec = ModelSpec.from_config(cfg.model)
    max_length = spec.backbone.max_length if spec.backbone else 512
    mteb_tasks, local_tasks = split_tasks(cfg)
    notes = []
    if args.chars_per_token:
        cpt, how = args.chars_per_token, "given (--chars-per-token)"
    else:
        texts, where = sample_texts(local_tasks, mteb_tasks)
        measured = measure_chars_per_token(spec, texts)
        if measured:
            cpt, how = measured[0], f"measured on {len(texts)} texts of {where} with {measured[1]}"
        else:
            cpt = ASSUMED_CHARS_PER_TOKEN
            how = "assumed (no tokenizer of this model loads offline; set --chars-per-token)"
    notes.append(f"chars/token: {cpt:.3f}, {how}; each text capped at max_length={max_length}")
    if cfg.benchmark.get("slice_queries") and mteb_tasks:
        notes.append("mteb tasks are planned unsliced (benchmark.slice_queries applies at run time)")
    rows, unplanned = [], []
    for task in mteb_tasks:
        try:
            rows.append(mteb_task_plan(task, cpt, max_length))
        except ValueError as err:
            unplanned.append(str(err))
    if unplanned:
        notes.append(f"not in the totals (no statistics): {'; '.join(unplanned)}")
    rows += [local_task_plan(t, cpt, max_length) for t in local_tasks]
    table = pd.DataFrame([{
        "task": r.name, "source": r.source, "documents": r.documents.texts,
        "queries": r.queries.texts, "doc chars": r.documents.chars, "query chars": r.queries.chars,
        "doc tokens": round(r.documents.tokens), "query tokens": round(r.queries.tokens),
        "tokens": round(r.tokens)} for r in rows])
    if table.empty:
        raise ValueError(f"benchmark '{cfg.benchmark.name}' selects no task")
    total = table.drop(columns=["task", "source"]).sum()
    table.loc[len(table)] = {"task": "TOTAL", "source": "", **total.to_dict()}

    if not spec.kind.encoder:
        notes.append(f"{spec.name} encodes nothing on a GPU (mteb's bm25s): no hours, no cache")
        return table, notes
    tps, tps_how = args.tokens_per_second, "given with --tokens-per-second"
    if tps is None:
        tps, tps_how = bench_tokens_per_second(spec.name), f"measured ({ENCODE_BENCH.name})"
    tokens = float(sum(r.tokens for r in rows))
    if tps:
        hours = tokens / tps / 3600
        notes.append(f"encoding at {tps:,.0f} tokens/s ({tps_how}): {hours:.2f} h on 1 GPU, "
                     f"{hours / args.gpus:.2f} h on {args.gpus} GPUs (linear scaling)")
    else:
        notes.append(f"encoding hours: no tokens/s measured for {spec.name} in {ENCODE_BENCH}; "
                     "give ARGS=--tokens-per-second N")
    max_k = int(cfg.run.get("cache_max_k", 0) or 0)
    caps = {"documents": cache_cap(spec.top_k_document, max_k),
            "queries": cache_cap(spec.top_k_query, max_k)}
    if 0 in caps.values():
        notes.append(f"cache: uncapped (run.cache_max_k={max_k}, top-k {spec.top_k_query}/"
                     f"{spec.top_k_document}): bounded by each vector's active dimensions only")
    else:
        n_docs = sum(r.documents.texts for r in rows)
        n_queries = sum(r.queries.texts for r in rows)
        size = cache_bytes(n_docs, caps["documents"]) + cache_bytes(n_queries, caps["queries"])
        notes.append(
            f"cache at run.cache_max_k={max_k}: documents keep {caps['documents']}, queries "
            f"{caps['queries']} entries; cap x (4 B value + 4 B index) + 4 B row pointer per "
            f"text -> at most {_human_bytes(size)} ({size:,} B)")
    return table, notes


def main(argv: Sequence[str] | None = None) -> int:
    from harness.cli import one_line_errors
    from harness.config import compose_config

    parser = argparse.ArgumentParser(prog="python -m harness.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-per-second", type=lambda v: _positive("--tokens-per-second", v, float))
    parser.add_argument("--gpus", type=lambda v: _positive("--gpus", v, int), default=8,
                        help="N for the N-GPU estimate (default 8)")
    parser.add_argument("--chars-per-token", type=lambda v: _positive("--chars-per-token", v, float))
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    models = [overrides.pop(i) for i, o in reversed(list(enumerate(overrides)))
              if o.startswith("model=")]
    names = [n for item in models for n in item.split("=", 1)[1].split(",")] or [None]
    with one_line_errors():
        for name in names:
            cfg = compose_config([*overrides, *([f"model={name}"] if name else [])])
            table, notes = plan_model(cfg, args)
            print(f"plan: {cfg.model.name} on {cfg.benchmark.name} ({len(table) - 1} task(s); "
                  "mteb tasks from mteb's statistics, local tasks measured; no download)")
            print(table.to_string(index=False))
            for note in notes:
                print(f"- {note}")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
