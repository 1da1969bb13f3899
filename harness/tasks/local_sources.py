"""Local versions of MTEB tasks built from the source files in the shared data folder.

Each `*_task(folder)` returns a task class (see `local_data.make_task_class`) whose data mirrors how
mteb builds the same-named hub task; where mteb has no such task (Cranfield, NPL) the construction
follows the collection's own documentation. Subsets, splits and main score (nDCG@10) follow mteb.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import mteb

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
    read_json,
    read_jsonl,
    read_text,
    require_files,
    source_revision,
)


def _squash(text: str) -> str:
    """Collapse line breaks and runs of spaces of the line-wrapped SMART/TREC collections."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- XQuAD

XQUAD_SPLIT = "validation"


def _xquad_paragraphs(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(context, [(question id, question)])] in file order for one SQuAD-v1.1 XQuAD file."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise LocalDataError(f"{path}: expected a SQuAD JSON object with a 'data' list")
    paragraphs, seen = [], set()
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            if not isinstance(para.get("context"), str) or not isinstance(para.get("qas"), list):
                raise LocalDataError(
                    f"{path}: article {a} paragraph {p}: missing 'context' or 'qas'"
                )
            qas = []
            for qa in para["qas"]:
                if not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
                    raise LocalDataError(
                        f"{path}: article {a} paragraph {p}: a question lacks 'id' or 'question'"
                    )
                if qa["id"] in seen:
                    raise LocalDataError(f"{path}: duplicate question id '{qa['id']}'")
                seen.add(qa["id"])
                qas.append((qa["id"], qa["question"]))
            paragraphs.append((para["context"], qas))
    return paragraphs


def _xquad_split(
    docs: list[tuple[str, list[tuple[str, str]]]],
    questions: list[tuple[str, list[tuple[str, str]]]],
) -> SplitTexts:
    """Queries from `questions`, corpus from the paragraphs of `docs` (parallel files), as mteb does:
    doc id = sha256 of the (stripped) paragraph, one query per distinct stripped question text
    (id = the last XQuAD id carrying that text), gain 1 for the question's own paragraph."""
    split = SplitTexts()
    question_ids = {q.strip(): qid for _, qas in questions for qid, q in qas}
    for (context, _), (_, qas) in zip(docs, questions, strict=True):
        text = context.strip()
        doc_id = hashlib.sha256(text.encode("utf-8")).hexdigest()
        split.corpus[doc_id] = {"title": "", "text": text}
        for _, question in qas:
            qid = question_ids[question.strip()]
            split.queries[qid] = question.strip()
            split.qrels.setdefault(qid, {})[doc_id] = 1
    return split


def xquad_task(folder: Path) -> type[LocalRetrievalTask]:
    """`LocalXQuADRetrieval`: question → paragraph, mirroring mteb's `XQuADRetrieval`.

    Subsets: one per language file present (`en`, `de`, … as mteb names them) plus cross-lingual
    pairs with English both ways, named `<document language>-<query language>` as mteb's
    BelebeleRetrieval names its pairs (`de-en`: German paragraphs, English questions). Files of
    different languages must be parallel (same articles, paragraphs and question ids).
    """
    require_files(folder, [], "LocalXQuADRetrieval")
    hub = mteb.get_task("XQuADRetrieval").metadata
    langs = [code for code in hub.eval_langs if (folder / f"xquad.{code}.json").is_file()]
    if not langs:
        raise LocalDataError(f"LocalXQuADRetrieval: {folder} holds no xquad.<lang>.json file")
    eval_langs = {code: hub.eval_langs[code] for code in langs}
    if "en" in langs:
        for code in langs:
            if code != "en":
                eval_langs[f"{code}-en"] = hub.eval_langs[code] + hub.eval_langs["en"]
                eval_langs[f"en-{code}"] = hub.eval_langs["en"] + hub.eval_langs[code]
    files = [folder / f"xquad.{code}.json" for code in langs]

    def build() -> Subsets:
        paras = {code: _xquad_paragraphs(folder / f"xquad.{code}.json") for code in langs}
        ref = langs[0]
        for code in langs[1:]:
            shape = [[qid for qid, _ in qas] for _, qas in paras[code]]
            if shape != [[qid for qid, _ in qas] for _, qas in paras[ref]]:
                raise LocalDataError(
                    f"{folder}: xquad.{code}.json and xquad.{ref}.json are not parallel "
                    "(different paragraphs or question ids)"
                )
        subsets: Subsets = {}
        for subset in eval_langs:
            doc_lang, _, query_lang = subset.partition("-")
            source = f"{folder} subset {subset}"
            split = _xquad_split(paras[doc_lang], paras[query_lang or doc_lang]).check(source)
            subsets[subset] = {XQUAD_SPLIT: split}
        return subsets

    meta = local_metadata(
        "LocalXQuADRetrieval",
        folder,
        source_revision(files),
        "XQuAD question → paragraph retrieval built from the local XQuAD files as mteb's "
        "XQuADRetrieval builds it, plus cross-lingual <document lang>-<query lang> subsets.",
        eval_langs,
        [XQUAD_SPLIT],
        base=hub,
    )
    return make_task_class(meta, build)


# --------------------------------------------------------------------------- Belebele

BELEBELE_SPLIT = "test"


def _belebele_rows(path: Path) -> list[tuple[str, str, list[str]]]:
    """[(passage url, passage text, [questions])] in file order."""
    rows = []
    for line, row in read_jsonl(path):
        try:
            url = row["metadata"]["extra"]["url"]
            questions = [item["question"] for item in row["items"]]
            text = row["text"]
        except (KeyError, TypeError):
            raise LocalDataError(
                f"{path}: line {line}: expected text, items[].question and metadata.extra.url"
            ) from None
        rows.append((url, text, questions))
    return rows


def _belebele_split(corpus_rows: list, question_rows: list, source: str) -> SplitTexts:
    """mteb's BelebeleRetrieval construction: doc `C<i>` per distinct passage link of the corpus
    language, query `Q<i>` per distinct question text of the query language, gain 1 for the passage
    the question was written for (matched across languages by link)."""
    split = SplitTexts()
    link_to_doc: dict[str, str] = {}
    for url, text, _ in corpus_rows:
        if url not in link_to_doc:
            link_to_doc[url] = f"C{len(link_to_doc)}"
            split.corpus[link_to_doc[url]] = {"title": "", "text": text}
    question_ids: dict[str, str] = {}
    for url, _, questions in question_rows:
        if url not in link_to_doc:
            raise LocalDataError(
                f"{source}: passage {url} has questions but no passage in the corpus language"
            )
        for question in questions:
            qid = question_ids.setdefault(question, f"Q{len(question_ids)}")
            split.queries[qid] = question
            split.qrels.setdefault(qid, {})[link_to_doc[url]] = 1
    return split.check(source)


def belebele_task(folder: Path) -> type[LocalRetrievalTask]:
    """`LocalBelebeleRetrieval`: question → passage, mirroring mteb's `BelebeleRetrieval`.

    Subsets are mteb's pairs (`eng_Latn-eng_Latn`, `deu_Latn-deu_Latn`, `deu_Latn-eng_Latn`,
    `eng_Latn-deu_Latn`, …: document language first, query language second) whose two languages
    both have a `<lang>.jsonl` file here.
    """
    require_files(folder, [], "LocalBelebeleRetrieval")
    hub = mteb.get_task("BelebeleRetrieval").metadata
    have = {p.stem for p in folder.glob("*.jsonl")}
    eval_langs = {
        pair: langs
        for pair, langs in hub.eval_langs.items()
        if all(lang.replace("-", "_") in have for lang in langs)
    }
    if not eval_langs:
        raise LocalDataError(
            f"LocalBelebeleRetrieval: {folder} holds no <lang>_<Script>.jsonl file"
        )
    used = sorted({lang.replace("-", "_") for langs in eval_langs.values() for lang in langs})

    def build() -> Subsets:
        rows = {lang: _belebele_rows(folder / f"{lang}.jsonl") for lang in used}
        subsets: Subsets = {}
        for pair, (doc_lang, query_lang) in eval_langs.items():
            split = _belebele_split(
                rows[doc_lang.replace("-", "_")],
                rows[query_lang.replace("-", "_")],
                f"{folder} subset {pair}",
            )
            subsets[pair] = {BELEBELE_SPLIT: split}
        return subsets

    meta = local_metadata(
        "LocalBelebeleRetrieval",
        folder,
        source_revision([folder / f"{lang}.jsonl" for lang in used]),
        "Belebele question → passage retrieval built from the local Belebele files as mteb's "
        "BelebeleRetrieval builds it (subset <document lang>-<query lang>).",
        eval_langs,
        [BELEBELE_SPLIT],
        base=hub,
    )
    return make_task_class(meta, build)


# --------------------------------------------------------------------------- LegalBench

LEGALBENCH_COLUMNS = ("bill_title", "bill_summary")


def legalbench_task(folder: Path) -> type[LocalRetrievalTask]:
    """`LocalLegalBenchCorporateLobbying`: bill title → bill summary, as mteb's hub data has it
    (340 queries = distinct titles, 319 documents = distinct stripped summaries, gain 1 for the
    title's own summary; company columns and labels are not used)."""
    require_files(folder, ["test.tsv"], "LocalLegalBenchCorporateLobbying")
    path = folder / "test.tsv"

    def build() -> Subsets:
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="\t")
        missing = [c for c in LEGALBENCH_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LocalDataError(f"{path}: line 1: header lacks column(s) {', '.join(missing)}")
        split = SplitTexts()
        doc_ids: dict[str, str] = {}
        query_ids: dict[str, str] = {}
        for row in reader:
            if row["bill_title"] is None or row["bill_summary"] is None:
                raise LocalDataError(f"{path}: line {reader.line_num}: row has too few columns")
            summary, title = row["bill_summary"].strip(), row["bill_title"].strip()
            did = doc_ids.setdefault(summary, f"D{len(doc_ids)}")
            split.corpus[did] = {"title": "", "text": summary}
            qid = query_ids.setdefault(title, f"Q{len(query_ids)}")
            split.queries[qid] = title
            split.qrels.setdefault(qid, {})[did] = 1
        return {"default": {"test": split.check(str(path))}}

    meta = local_metadata(
        "LocalLegalBenchCorporateLobbying",
        folder,
        source_revision([path]),
        "LegalBench corporate lobbying: bill title → bill summary, built from the local test.tsv "
        "as mteb's LegalBenchCorporateLobbying data is built.",
        ["eng-Latn"],
        base=mteb.get_task("LegalBenchCorporateLobbying").metadata,
    )
    return make_task_class(meta, build)


# --------------------------------------------------------------------------- Cranfield

CRANFIELD_FILES = ("cran.all.1400", "cran.qry", "cranqrel")
# cranqrel grades are Cleverdon's scale, 1 = complete answer … 4 = minimum interest, 5 = no interest.
# nDCG needs larger = better, so gain = 5 - grade: 1→4, 2→3, 3→2, 4→1, 5→0 (judged non-relevant).
CRANFIELD_GAIN = {1: 4, 2: 3, 3: 2, 4: 1, 5: 0}
_SMART_FIELD = re.compile(r"^\.([A-Z])\b\s*(.*)$")


def parse_smart(path: Path) -> list[tuple[int, str, dict[str, str]]]:
    """[(line, id, {field letter: text})] of a SMART file (`.I id`, then `.T/.A/.B/.W` fields).

    Everything after a record's `.W` belongs to `.W` (three Cranfield abstracts contain stray
    `.A/.B/.W` lines; their text is kept in the abstract, the marker lines dropped). A bare `.I`
    with no id and no fields (the files' last line) is ignored; one with fields is an error.
    """
    records: list[tuple[int, str, dict[str, list[str]]]] = []
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(read_text(path).splitlines(), start=1):
        line = raw.rstrip()
        marker = _SMART_FIELD.match(line)
        if marker and marker.group(1) == "I":
            fields = {}
            records.append((number, marker.group(2).strip(), fields))
            current = None
        elif marker and "W" not in fields:
            if not records:
                raise LocalDataError(f"{path}: line {number}: field before the first .I record")
            current = fields.setdefault(marker.group(1), [])
            if marker.group(2):
                current.append(marker.group(2))
        elif current is not None and not marker:
            current.append(line)
        elif marker is None and line.strip() and current is None:
            raise LocalDataError(f"{path}: line {number}: text outside any .T/.A/.B/.W field")
    out = []
    for number, rid, recfields in records:
        if not rid:
            if recfields:
                raise LocalDataError(f"{path}: line {number}: record without an id")
            continue
        out.append((number, rid, {k: _squash("\n".join(v)) for k, v in recfields.items()}))
    return out


def cranfield_task(folder: Path) -> type[LocalRetrievalTask]:
    """`LocalCranfield`: 1,400 aeronautics abstracts, 225 queries, graded qrels (see CRANFIELD_GAIN).

    Document text = the `.W` abstract (it starts with the title, so the title is not added again).
    Query ids are renumbered 1..225 in `cran.qry` file order, the numbering `cranqrel` uses.
    """
    require_files(folder, CRANFIELD_FILES, "LocalCranfield")

    def build() -> Subsets:
        split = SplitTexts()
        docs_path, query_path, qrels_path = (folder / name for name in CRANFIELD_FILES)
        for line, rid, fields in parse_smart(docs_path):
            add_unique(
                split.corpus,
                rid,
                {"title": "", "text": fields.get("W", "")},
                docs_path,
                line,
                "doc",
            )
        for n, (_, _, fields) in enumerate(parse_smart(query_path), start=1):
            split.queries[str(n)] = fields.get("W", "")
        judgments = Judgments(qrels_path)  # Cleverdon grades; conflicts are reported in them
        for line, raw in enumerate(read_text(qrels_path).splitlines(), start=1):
            parts = raw.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise LocalDataError(
                    f"{qrels_path}: line {line}: expected 'qid docid grade', got {raw!r}"
                )
            grade = parse_grade(parts[2], qrels_path, line)
            if grade not in CRANFIELD_GAIN:
                raise LocalDataError(
                    f"{qrels_path}: line {line}: grade {grade} outside Cleverdon's 1..5"
                )
            judgments.add(parts[0], parts[1], grade, line)
        split.qrels = {
            qid: {did: CRANFIELD_GAIN[g] for did, g in docs.items()}
            for qid, docs in judgments.done().items()
        }
        return {"default": {"test": split.check(str(qrels_path))}}

    meta = local_metadata(
        "LocalCranfield",
        folder,
        source_revision([folder / n for n in CRANFIELD_FILES]),
        "Cranfield 1400 aeronautics collection; qrels gain = 5 - Cleverdon grade (1 most relevant).",
        ["eng-Latn"],
        reference="http://ir.dcs.gla.ac.uk/resources/test_collections/cran/",
        category="t2t",
        domains=["Academic", "Written"],
        annotations_creators="expert-annotated",
        sample_creation="found",
        license="not specified",
    )
    return make_task_class(meta, build)


# --------------------------------------------------------------------------- Vaswani (NPL)

VASWANI_FILES = ("corpus/doc-text.trec", "query-text.trec", "qrels")
_TREC_DOC = re.compile(r"<DOC>(.*?)</DOC>", re.DOTALL)
_TREC_DOCNO = re.compile(r"<DOCNO>(.*?)</DOCNO>", re.DOTALL)
_TREC_TOP = re.compile(r"<top>(.*?)</top>", re.DOTALL)
_TREC_NUM = re.compile(r"<num>(.*?)</num>", re.DOTALL)
_TREC_TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)


def _blocks(pattern: re.Pattern, text: str) -> Iterator[tuple[int, re.Match]]:
    """(1-based line of the match start, match) for every match of `pattern`, in order."""
    line, pos = 1, 0
    for match in pattern.finditer(text):
        line += text.count("\n", pos, match.start())
        pos = match.start()
        yield line, match


def vaswani_task(folder: Path) -> type[LocalRetrievalTask]:
    """`LocalVaswani`: NPL physics abstracts (11,429 docs, 93 queries, binary qrels), TREC format."""
    require_files(folder, VASWANI_FILES, "LocalVaswani")

    def build() -> Subsets:
        split = SplitTexts()
        docs_path, query_path, qrels_path = (folder / name for name in VASWANI_FILES)
        text = read_text(docs_path)
        for line, match in _blocks(_TREC_DOC, text):
            docno = _TREC_DOCNO.search(match.group(1))
            if docno is None:
                raise LocalDataError(f"{docs_path}: line {line}: <DOC> without <DOCNO>")
            body = match.group(1)[docno.end() :]
            add_unique(
                split.corpus,
                docno.group(1).strip(),
                {"title": "", "text": _squash(body)},
                docs_path,
                line,
                "doc",
            )
        text = read_text(query_path)
        for line, match in _blocks(_TREC_TOP, text):
            num, title = _TREC_NUM.search(match.group(1)), _TREC_TITLE.search(match.group(1))
            if num is None or title is None:
                raise LocalDataError(f"{query_path}: line {line}: <top> without <num> or <title>")
            add_unique(
                split.queries,
                num.group(1).strip(),
                _squash(title.group(1)),
                query_path,
                line,
                "query",
            )
        judgments = Judgments(qrels_path)
        for line, raw in enumerate(read_text(qrels_path).splitlines(), start=1):
            parts = raw.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise LocalDataError(
                    f"{qrels_path}: line {line}: expected 'qid 0 docid rel', got {raw!r}"
                )
            judgments.add(parts[0], parts[2], parse_grade(parts[3], qrels_path, line), line)
        split.qrels = judgments.done()
        return {"default": {"test": split.check(str(qrels_path))}}

    meta = local_metadata(
        "LocalVaswani",
        folder,
        source_revision([folder / n for n in VASWANI_FILES]),
        "Vaswani / NPL collection of physics abstracts (TREC format copy from PyTerrier's fixtures).",
        ["eng-Latn"],
        reference="http://ir.dcs.gla.ac.uk/resources/test_collections/npl/",
        category="t2t",
        domains=["Academic", "Written"],
        annotations_creators="expert-annotated",
        sample_creation="found",
        license="not specified",
    )
    return make_task_class(meta, build)
