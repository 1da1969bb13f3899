"""Any BEIR-format folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`) as a retrieval task."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.tasks.local_data import (
    Judgments,
    LocalDataError,
    LocalRetrievalTask,
    SplitTexts,
    Subsets,
    add_unique,
    local_metadata,
    make_task_class,
    parse_grade,
    read_jsonl,
    read_text,
    require_files,
    source_revision,
)

_QRELS_HEADER = {"query-id", "query_id", "qid"}


def _beir_texts(path: Path, kind: str, with_title: bool) -> dict:
    """id -> text (queries) or id -> {"title", "text"} (corpus) from a BEIR JSON-lines file."""
    table: dict = {}
    for line, row in read_jsonl(path):
        rid = row.get("_id", row.get("id"))
        if rid is None or not isinstance(row.get("text"), str):
            raise LocalDataError(f"{path}: line {line}: expected '_id' and a string 'text'")
        title = row.get("title") or ""
        value = {"title": str(title), "text": row["text"]} if with_title else row["text"]
        add_unique(table, str(rid), value, path, line, kind)
    return table


def _beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: grade} from `qrels/<split>.tsv` (optional header 'query-id corpus-id score')."""
    judgments = Judgments(path)
    for line, raw in enumerate(read_text(path).splitlines(), start=1):
        parts = raw.split("\t") if "\t" in raw else raw.split()
        if not raw.strip() or (line == 1 and parts[0].strip().lower() in _QRELS_HEADER):
            continue
        if len(parts) != 3:
            raise LocalDataError(
                f"{path}: line {line}: expected 'query-id<TAB>corpus-id<TAB>score', got {raw!r}"
            )
        qid, did = parts[0].strip(), parts[1].strip()
        judgments.add(qid, did, parse_grade(parts[2].strip(), path, line), line)
    return judgments.done()


def beir_task_class(
    folder: Path,
    name: str | None = None,
    splits: Sequence[str] | None = None,
    languages: Sequence[str] = ("eng-Latn",),
) -> type[LocalRetrievalTask]:
    """A task from a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`).

    Name `LocalBEIR-<folder name>` unless given; splits: `splits`, else `test` when present, else
    every qrels file; `languages`: mteb language tags of the data. Each split keeps the queries its
    qrels judge; every qrel must name a known query and document.
    """
    folder = Path(folder)
    require_files(folder, ["corpus.jsonl", "queries.jsonl"], f"BEIR folder {folder}")
    found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
    if not found:
        raise LocalDataError(f"BEIR folder {folder}: no qrels/<split>.tsv file")
    chosen = list(splits) if splits else (["test"] if "test" in found else found)
    require_files(folder, [f"qrels/{s}.tsv" for s in chosen], f"BEIR folder {folder}")
    task_name = name or f"LocalBEIR-{folder.resolve().name}"

    def build() -> Subsets:
        corpus = _beir_texts(folder / "corpus.jsonl", "doc", with_title=True)
        queries = _beir_texts(folder / "queries.jsonl", "query", with_title=False)
        out: dict[str, SplitTexts] = {}
        for split_name in chosen:
            path = folder / "qrels" / f"{split_name}.tsv"
            qrels = _beir_qrels(path)
            unknown = [q for q in qrels if q not in queries]
            if unknown:
                raise LocalDataError(
                    f"{path}: qrels name query id '{unknown[0]}' missing from queries.jsonl"
                )
            split = SplitTexts(corpus=corpus, queries={q: queries[q] for q in qrels}, qrels=qrels)
            out[split_name] = split.check(str(path))
        return {"default": out}

    files = [folder / "corpus.jsonl", folder / "queries.jsonl"] + [
        folder / "qrels" / f"{s}.tsv" for s in chosen
    ]
    meta = local_metadata(
        task_name,
        folder,
        source_revision(files),
        f"BEIR-format retrieval folder {folder}.",
        list(languages),
        chosen,
        category="t2t",
    )
    return make_task_class(meta, build)
