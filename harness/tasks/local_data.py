"""Building blocks of the local retrieval tasks: strict readers, the in-memory split, the task class.

Every reader fails with a one-line `LocalDataError` naming the file (and line, where there is one)
before anything is encoded: missing files, invalid UTF-8, malformed JSON, duplicate ids, qrels
that point to unknown ids, non-integer grades, two different grades for the same (query, document).
A judgment repeated with the same grade (common in collections assembled from several assessment
rounds) is kept once and counted in a one-line notice. Empty or whitespace-only texts are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

logger = logging.getLogger(__name__)


class LocalDataError(ValueError):
    """A local data file is missing or malformed; the message is one line naming file and line."""


@dataclass
class SplitTexts:
    """One (subset, split) of a retrieval task as plain Python: what mteb's `RetrievalSplitData` holds.

    corpus: doc id -> {"title": str, "text": str}; queries: query id -> text;
    qrels: query id -> {doc id: integer gain} (gain > 0 relevant, 0 judged non-relevant).
    """

    corpus: dict[str, dict[str, str]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    def check(self, source: str) -> SplitTexts:
        """Fail when a qrel names a query or document that is not in the split; returns self."""
        for qid, docs in self.qrels.items():
            if qid not in self.queries:
                raise LocalDataError(
                    f"{source}: qrels name query id '{qid}' that has no query text"
                )
            for did in docs:
                if did not in self.corpus:
                    raise LocalDataError(
                        f"{source}: qrels of query '{qid}' name unknown doc id '{did}'"
                    )
        return self

    def to_mteb(self) -> dict[str, Any]:
        """The split in mteb's `RetrievalSplitData` layout (datasets with id/title/text and id/text)."""
        corpus = Dataset.from_dict(
            {
                "id": list(self.corpus),
                "title": [d.get("title", "") for d in self.corpus.values()],
                "text": [d["text"] for d in self.corpus.values()],
            }
        )
        queries = Dataset.from_dict({"id": list(self.queries), "text": list(self.queries.values())})
        qrels = {qid: dict(docs) for qid, docs in self.qrels.items()}
        return {"corpus": corpus, "queries": queries, "relevant_docs": qrels, "top_ranked": None}


Subsets = dict[str, dict[str, "SplitTexts | Mapping[str, Any]"]]
"""subset name -> split name -> data (SplitTexts, or a ready mteb `RetrievalSplitData` dict),
the shape of `AbsTaskRetrieval.dataset`."""


def require_files(folder: Path, names: Sequence[str], what: str) -> None:
    """Fail in one line when `folder` or any of `names` (relative paths) is missing."""
    if not folder.is_dir():
        raise LocalDataError(f"{what}: data folder {folder} does not exist")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise LocalDataError(f"{what}: {folder} is missing {', '.join(missing)}")


def read_text(path: Path) -> str:
    """The whole file as text; invalid UTF-8 fails naming the file and the line of the bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise LocalDataError(
            f"{path}: line {line}: invalid UTF-8 (byte 0x{data[err.start]:02x})"
        ) from None


def read_json(path: Path) -> Any:
    """One JSON document; syntax errors name the file and line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise LocalDataError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise LocalDataError(f"{path}: line {number}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise LocalDataError(f"{path}: line {number}: expected a JSON object")
        yield number, row


def parse_grade(value: str, path: Path, line: int) -> int:
    """An integer relevance grade; anything else ('1.5', 'yes', '') fails naming file and line."""
    try:
        return int(value)
    except ValueError:
        raise LocalDataError(
            f"{path}: line {line}: relevance grade '{value}' is not an integer"
        ) from None


def add_unique(table: dict, key: str, value: Any, path: Path, line: int, kind: str) -> None:
    """Insert `key` once; a second occurrence fails naming file, line and the duplicate id."""
    if key in table:
        raise LocalDataError(f"{path}: line {line}: duplicate {kind} id '{key}'")
    table[key] = value


class Judgments:
    """The qrels of one file, read line by line: query id -> {doc id: grade}.

    A (query, document) judged twice with the same grade is kept once and counted (`repeats`);
    two different grades fail naming the file, both lines and both grades.
    """

    def __init__(self, path: Path):
        self.path = path
        self.qrels: dict[str, dict[str, int]] = {}
        self.repeats = 0
        self._line: dict[tuple[str, str], int] = {}

    def add(self, qid: str, did: str, grade: int, line: int) -> None:
        """Record `grade` for (qid, did) read at `line`."""
        docs = self.qrels.setdefault(qid, {})
        if did not in docs:
            docs[did] = grade
            self._line[qid, did] = line
        elif docs[did] == grade:
            self.repeats += 1
        else:
            raise LocalDataError(
                f"{self.path}: line {line}: query {qid} doc {did} graded {grade}, but "
                f"{docs[did]} at line {self._line[qid, did]}"
            )

    def done(self) -> dict[str, dict[str, int]]:
        """The qrels; logs the one-line notice when identical judgments were repeated."""
        if self.repeats:
            logger.warning(
                "%s: %d identical duplicate judgment(s) kept once", self.path, self.repeats
            )
        return self.qrels


def source_revision(paths: Iterable[Path], salt: str = "") -> str:
    """Content hash of the source files (16 hex digits): the task's `dataset.revision`."""
    digest = hashlib.sha256(salt.encode())
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class LocalRetrievalTask(AbsTaskRetrieval):
    """An mteb retrieval task whose data is built in memory by `build` (no hub access).

    Subclasses are made by `make_task_class`; `metadata` must stay a class attribute because
    `AbsTask.unload_data` drops instance-level metadata. The data is built (and validated) when the
    task is created, so bad input fails before any encoding; after mteb unloads it, `load_data`
    rebuilds it from the same source.
    """

    build: ClassVar[Callable[[], Subsets]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.load_data()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Fill `self.dataset[subset][split]` with mteb `RetrievalSplitData` built from the source."""
        if self.data_loaded:
            return
        subsets = type(self).build()
        # a ready dict is copied: mteb reassigns its keys while evaluating
        self.dataset = {
            subset: {
                split: data.to_mteb() if isinstance(data, SplitTexts) else dict(data)
                for split, data in splits.items()
            }
            for subset, splits in subsets.items()
        }
        self.data_loaded = True


def make_task_class(
    metadata: TaskMetadata, build: Callable[[], Subsets]
) -> type[LocalRetrievalTask]:
    """A `LocalRetrievalTask` subclass named after `metadata.name`, building its data with `build`.

    `build` returns subset -> split -> SplitTexts, with the subsets of `metadata.eval_langs`
    (or "default") and the splits of `metadata.eval_splits`.
    """

    def checked_build() -> Subsets:
        subsets = build()
        expected = set(metadata.hf_subsets)
        if set(subsets) != expected:
            raise LocalDataError(
                f"{metadata.name}: built subsets {sorted(subsets)} differ from metadata {sorted(expected)}"
            )
        for subset, splits in subsets.items():
            for split in metadata.eval_splits:
                if split not in splits:
                    raise LocalDataError(
                        f"{metadata.name}: subset '{subset}' has no split '{split}'"
                    )
        return subsets

    return type(
        re.sub(r"\W", "_", metadata.name),
        (LocalRetrievalTask,),
        {"metadata": metadata, "build": staticmethod(checked_build), "__module__": __name__},
    )


def local_metadata(
    name: str,
    folder: Path | str,
    revision: str,
    description: str,
    eval_langs: Sequence[str] | Mapping[str, Sequence[str]],
    eval_splits: Sequence[str] = ("test",),
    base: TaskMetadata | None = None,
    **extra: Any,
) -> TaskMetadata:
    """TaskMetadata of a local task: copied from the hub task `base` when given (same main score,
    domains, licence, citation), with the local name, source folder and content revision."""
    fields: dict[str, Any] = base.model_dump() if base is not None else {}
    fields.update(
        name=name,
        description=description,
        dataset={"path": str(folder), "revision": revision},
        eval_langs={k: list(v) for k, v in eval_langs.items()}
        if isinstance(eval_langs, Mapping)
        else list(eval_langs),
        eval_splits=list(eval_splits),
        type="Retrieval",
        main_score="ndcg_at_10",
    )
    if base is not None:
        fields["adapted_from"] = [base.name]
    fields.update(extra)
    return TaskMetadata.model_validate(fields)


# ---- languages of a (sub)set: mteb tags, the cross-lingual convention in one place ---------------

_LANGUAGE_TAG = re.compile(r"^[a-z]{3}-[A-Z][a-z]{3}$")


def check_language_tag(value: Any, where: str) -> str:
    """`value` if it is an mteb language tag `<ISO 639-3>-<ISO 15924>` that mteb knows
    (`deu-Latn`); else a one-line ValueError `<where>=<value>: …` naming the bad value."""
    from mteb.languages.check_language_code import check_language_code

    if not isinstance(value, str) or not _LANGUAGE_TAG.match(value):
        raise ValueError(f"{where}={value!r}: not an mteb language tag "
                         "'<ISO 639-3>-<ISO 15924>' such as deu-Latn")
    try:
        check_language_code(value)
    except ValueError as err:
        reason = str(err).split(",")[0].splitlines()[0]  # drop mteb's path to its code lists
        raise ValueError(f"{where}={value!r}: {reason}") from None
    return value


def query_document_eval_langs(query_language: str, document_language: str) -> list[str]:
    """mteb `eval_langs` of a (sub)set whose queries are in `query_language` and documents in
    `document_language`: `[document, query]` when they differ, as mteb's MLQARetrieval and
    BelebeleRetrieval list (context, question) and the local XQuAD / Belebele subsets do; one tag
    when they are the same."""
    if query_language == document_language:
        return [query_language]
    return [document_language, query_language]


def query_document_languages(tags: Sequence[str]) -> tuple[str, str]:
    """(query language, document language) of one (sub)set's `eval_langs` entry, the inverse of
    `query_document_eval_langs`: two tags are (document, query); any other count is read as one
    language for both (its first tag)."""
    tags = list(tags)
    if len(tags) == 2:
        return tags[1], tags[0]
    return tags[0], tags[0]
