"""Any BEIR-format folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`) as a retrieval task.

A benchmark config lists them in `beir_folders`; each entry is a folder path (English queries and
documents) or a mapping `{path: …, query_language: deu-Latn, document_language: eng-Latn}` (mteb
language tags, each `eng-Latn` when left out). Queries and documents in different languages make
a cross-lingual task: its `eval_langs` are `[document language, query language]`, as mteb's
cross-lingual tasks list them (`harness.tasks.local_data.query_document_eval_langs`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.tasks.local_data import (
    Judgments,
    LocalDataError,
    LocalRetrievalTask,
    SplitTexts,
    Subsets,
    add_unique,
    check_language_tag,
    local_metadata,
    make_task_class,
    parse_grade,
    query_document_eval_langs,
    read_jsonl,
    read_text,
    require_files,
    source_revision,
)

_QRELS_HEADER = {"query-id", "query_id", "qid"}
#: The language of a BEIR folder's queries or documents when its entry names none.
DEFAULT_LANGUAGE = "eng-Latn"
_ENTRY_KEYS = ("path", "query_language", "document_language")


def beir_task_name(folder: Path | str) -> str:
    """`LocalBEIR-<folder name>`: the task name of a BEIR folder."""
    return f"LocalBEIR-{Path(folder).resolve().name}"


@dataclass(frozen=True)
class BeirFolder:
    """One `beir_folders` entry: the folder and the mteb language tags of its queries and documents."""

    path: Path
    query_language: str = DEFAULT_LANGUAGE
    document_language: str = DEFAULT_LANGUAGE

    @property
    def task_name(self) -> str:
        """`LocalBEIR-<folder name>`."""
        return beir_task_name(self.path)


def parse_beir_entry(entry: Any, where: str = "beir_folders entry") -> BeirFolder:
    """A `beir_folders` entry (a path, or a mapping with `path`, `query_language`,
    `document_language`) as a BeirFolder; a malformed entry or language tag fails in one line
    naming `where` and the bad value. Reads no file."""
    if isinstance(entry, str | os.PathLike):
        return BeirFolder(Path(entry))
    if not isinstance(entry, Mapping):
        raise ValueError(  # noqa: TRY004 (one-line config errors are ValueErrors)
            f"{where}={entry!r}: expected a folder path or a mapping with keys "
            f"{', '.join(_ENTRY_KEYS)}")
    unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(_ENTRY_KEYS)}")
    path = entry.get("path")
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ValueError(f"{where}.path={path!r}: expected a folder path")
    languages = {key: check_language_tag(entry[key], f"{where}.{key}")
                 for key in ("query_language", "document_language") if key in entry}
    return BeirFolder(Path(path), **languages)


def beir_folders(bench: Mapping) -> list[BeirFolder]:
    """The `beir_folders` of benchmark config `bench`, every entry checked (one-line errors naming
    `benchmark.beir_folders[<i>]` and the bad value) before any task is built."""
    return [parse_beir_entry(entry, f"benchmark.beir_folders[{i}]")
            for i, entry in enumerate(bench.get("beir_folders") or [])]


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
    query_language: str = DEFAULT_LANGUAGE,
    document_language: str = DEFAULT_LANGUAGE,
) -> type[LocalRetrievalTask]:
    """A task from a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`).

    Name `LocalBEIR-<folder name>` unless given; splits: `splits`, else `test` when present, else
    every qrels file; `query_language` / `document_language`: mteb language tags of the queries and
    documents (metadata `eval_langs` `[document, query]` when they differ, else `[language]`).
    Each split keeps the queries its qrels judge; every qrel must name a known query and document.
    """
    folder = Path(folder)
    eval_langs = query_document_eval_langs(
        check_language_tag(query_language, f"BEIR folder {folder}: query_language"),
        check_language_tag(document_language, f"BEIR folder {folder}: document_language"),
    )
    require_files(folder, ["corpus.jsonl", "queries.jsonl"], f"BEIR folder {folder}")
    found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
    if not found:
        raise LocalDataError(f"BEIR folder {folder}: no qrels/<split>.tsv file")
    chosen = list(splits) if splits else (["test"] if "test" in found else found)
    require_files(folder, [f"qrels/{s}.tsv" for s in chosen], f"BEIR folder {folder}")
    task_name = name or beir_task_name(folder)

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
        f"BEIR-format retrieval folder {folder}"
        + (f" (queries {query_language}, documents {document_language})."
           if len(eval_langs) == 2 else "."),
        eval_langs,
        chosen,
        category="t2t",
    )
    return make_task_class(meta, build)
