"""Local retrieval tasks: counts against the source files, mteb mirroring, validation, BEIR, slices."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import mteb
import pytest
from mteb.cache import ResultCache

from harness.paths import shared_data_root
from harness.tasks import local_embedded
from harness.tasks.local import (
    LOCAL_TASKS,
    LocalDataError,
    beir_task,
    embedded_training_pairs,
    get_local_task,
    slice_task,
)
from harness.tasks.local_embedded import (
    DEFAULT_DOCS_PER_LANGUAGE,
    DEFAULT_LANGUAGES,
    EMBEDDED_NAME,
    EVAL_POOL,
    dataset_build_root,
)

DATA = shared_data_root()
needs_data = pytest.mark.skipif(DATA is None, reason="no shared data root (HARNESS_DATA_ROOT)")


def split_of(task, subset: str = "default", split: str | None = None) -> dict:
    return task.dataset[subset][split or task.eval_splits[0]]


def counts(task, subset: str = "default") -> tuple[int, int, int]:
    """(documents, queries, qrels entries) of one subset."""
    data = split_of(task, subset)
    return (
        len(data["corpus"]),
        len(data["queries"]),
        sum(len(v) for v in data["relevant_docs"].values()),
    )


def bm25_main_scores(task, tmp_path: Path) -> dict[str, float]:
    """nDCG@10 per subset of mteb's BM25 baseline on `task` (mteb.evaluate end to end)."""
    model = mteb.get_model("mteb/baseline-bm25s")
    result = mteb.evaluate(model, [task], cache=ResultCache(tmp_path), overwrite_strategy="always")
    (task_result,) = result.task_results
    return {s["hf_subset"]: s["main_score"] for s in task_result.scores[task.eval_splits[0]]}


# ------------------------------------------------------------------ registry and one-line errors


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="unknown local task 'Nope'") as err:
        get_local_task("Nope", None)
    assert all(name in str(err.value) for name in LOCAL_TASKS)
    assert "\n" not in str(err.value)


def test_missing_data_root_names_the_setting():
    with pytest.raises(LocalDataError, match="HARNESS_DATA_ROOT or the benchmark's data_root"):
        get_local_task("LocalCranfield", None)


def test_local_names_never_shadow_hub_tasks():
    hub = {t.metadata.name for t in mteb.get_tasks()}
    assert not hub & set(LOCAL_TASKS)
    assert all(n.startswith("Local") or n == EMBEDDED_NAME for n in LOCAL_TASKS)


# ------------------------------------------------------------------ real data: counts and mirroring


def _hub_stats(name: str, split: str, subset: str | None) -> dict:
    stats = mteb.get_task(name).metadata.descriptive_stats[split]
    return stats["hf_subset_descriptive_stats"][subset] if subset else stats


@needs_data
def test_xquad_counts_match_source_and_mteb_stats():
    task = get_local_task("LocalXQuADRetrieval", DATA)
    langs = ["ar", "de", "en", "es", "hi", "ru", "zh"]
    assert set(task.hf_subsets) == set(langs) | {f"{x}-en" for x in langs if x != "en"} | {
        f"en-{x}" for x in langs if x != "en"
    }
    source = {}
    for lang in langs:
        raw = json.loads((DATA / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        paras = [p for a in raw["data"] for p in a["paragraphs"]]
        source[lang] = (len(paras), {q["question"].strip() for p in paras for q in p["qas"]})
    for subset in task.hf_subsets:
        doc_lang, _, query_lang = subset.partition("-")
        n_docs, questions = source[doc_lang][0], source[query_lang or doc_lang][1]
        assert counts(task, subset) == (n_docs, len(questions), len(questions))
    for lang in langs:  # mteb's published statistics of XQuADRetrieval, text for text
        hub = _hub_stats("XQuADRetrieval", "validation", lang)
        data = split_of(task, lang)
        assert len(data["queries"]) == hub["queries_text_statistics"]["unique_texts"]
        assert (
            sum(map(len, data["queries"]["text"]))
            == hub["queries_text_statistics"]["total_text_length"]
        )
        assert (
            sum(map(len, data["corpus"]["text"]))
            == hub["documents_text_statistics"]["total_text_length"]
        )


@needs_data
def test_xquad_cross_lingual_pairs_paragraphs_by_position():
    task = get_local_task("LocalXQuADRetrieval", DATA)
    de, de_en = split_of(task, "de"), split_of(task, "de-en")
    # German documents, English questions: each question's relevant German paragraph is the one the
    # German version of the same question id points to (ids are shared across XQuAD languages).
    en_raw = json.loads((DATA / "xquad" / "xquad.en.json").read_text(encoding="utf-8"))
    en_ids = {q["id"] for a in en_raw["data"] for p in a["paragraphs"] for q in p["qas"]}
    shared = [qid for qid in de_en["relevant_docs"] if qid in de["relevant_docs"]]
    assert len(shared) > 1000 and set(de_en["relevant_docs"]) <= en_ids
    assert all(de_en["relevant_docs"][q] == de["relevant_docs"][q] for q in shared)
    assert list(de_en["corpus"]["id"]) == list(de["corpus"]["id"])


@needs_data
def test_belebele_counts_and_subsets_mirror_mteb():
    task = get_local_task("LocalBelebeleRetrieval", DATA)
    assert sorted(task.hf_subsets) == sorted(
        ["eng_Latn-eng_Latn", "deu_Latn-deu_Latn", "deu_Latn-eng_Latn", "eng_Latn-deu_Latn"]
    )
    rows = {
        lang: [
            json.loads(line)
            for line in (DATA / "belebele" / f"{lang}.jsonl").open(encoding="utf-8")
        ]
        for lang in ("eng_Latn", "deu_Latn")
    }
    for subset in task.hf_subsets:
        doc_lang, query_lang = subset.split("-")
        n_questions = len({i["question"] for r in rows[query_lang] for i in r["items"]})
        assert counts(task, subset) == (len(rows[doc_lang]), n_questions, n_questions)
        hub = _hub_stats("BelebeleRetrieval", "test", subset)
        data = split_of(task, subset)
        assert (
            sum(map(len, data["corpus"]["text"]))
            == hub["documents_text_statistics"]["total_text_length"]
        )
        assert len(data["queries"]) == hub["queries_text_statistics"]["unique_texts"]
    # deu_Latn-eng_Latn = German passages, English questions (mteb's order: corpus, then query)
    cross = split_of(task, "deu_Latn-eng_Latn")
    assert cross["corpus"]["text"][0] == rows["deu_Latn"][0]["text"]
    assert cross["queries"]["text"][0] == rows["eng_Latn"][0]["items"][0]["question"]
    assert cross["relevant_docs"][cross["queries"]["id"][0]] == {"C0": 1}


@needs_data
def test_legalbench_counts_match_source_and_mteb_stats():
    task = get_local_task("LocalLegalBenchCorporateLobbying", DATA)
    with (DATA / "legalbench_corporate_lobbying" / "test.tsv").open(
        encoding="utf-8", newline=""
    ) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    titles = {r["bill_title"].strip() for r in rows}
    summaries = {r["bill_summary"].strip() for r in rows}
    assert counts(task) == (len(summaries), len(titles), len(titles)) == (319, 340, 340)
    hub = _hub_stats("LegalBenchCorporateLobbying", "test", None)
    data = split_of(task)
    assert (
        sum(map(len, data["queries"]["text"]))
        == hub["queries_text_statistics"]["total_text_length"]
    )
    assert (
        sum(map(len, data["corpus"]["text"]))
        == hub["documents_text_statistics"]["total_text_length"]
    )


@needs_data
def test_cranfield_counts_and_inverted_grades():
    task = get_local_task("LocalCranfield", DATA)
    folder = DATA / "cranfield"
    doc_ids = re.findall(
        r"^\.I (\d+)\s*$", (folder / "cran.all.1400").read_text(), flags=re.MULTILINE
    )
    n_queries = len(
        re.findall(r"^\.I \d+\s*$", (folder / "cran.qry").read_text(), flags=re.MULTILINE)
    )
    qrel_lines = [
        line.split() for line in (folder / "cranqrel").read_text().splitlines() if line.strip()
    ]
    assert counts(task) == (len(doc_ids), n_queries, len(qrel_lines)) == (1400, 225, 1837)
    qrels = split_of(task)["relevant_docs"]
    for qid, did, grade in qrel_lines:  # Cleverdon 1 (complete answer) gets the largest gain
        assert qrels[qid][did] == {"1": 4, "2": 3, "3": 2, "4": 1}[grade]
    queries = dict(
        zip(split_of(task)["queries"]["id"], split_of(task)["queries"]["text"], strict=True)
    )
    assert queries["1"].startswith("what similarity laws must be obeyed")  # file id 001
    assert queries["225"].startswith(
        "what design factors can be used to control lift-drag"
    )  # file id 365


@needs_data
def test_vaswani_counts_match_source():
    task = get_local_task("LocalVaswani", DATA)
    folder = DATA / "vaswani_npl"
    n_docs = (folder / "corpus" / "doc-text.trec").read_text().count("<DOCNO>")
    n_queries = (folder / "query-text.trec").read_text().count("<num>")
    n_qrels = sum(1 for line in (folder / "qrels").read_text().splitlines() if line.strip())
    assert counts(task) == (n_docs, n_queries, n_qrels) == (11429, 93, 2083)


@needs_data
def test_bm25_evaluates_a_real_local_task(tmp_path):
    scores = bm25_main_scores(get_local_task("LocalLegalBenchCorporateLobbying", DATA), tmp_path)
    assert 0.5 < scores["default"] <= 1.0  # titles share many words with their own summary


# ------------------------------------------------------------------ Cranfield grade mapping on a tiny copy


def write_smart(folder: Path, qrels: str) -> None:
    folder.mkdir()
    (folder / "cran.all.1400").write_text(
        ".I 1\n.T\nwing flow\n.A\nx\n.B\ny\n.W\nwing flow .\n  stray marker follows\n.A\nkept text\n"
        ".I 2\n.T\nshock\n.A\n\n.B\n\n.W\nshock waves .\n.I\n"
    )
    (folder / "cran.qry").write_text(".I 007\r\n.W\r\nwing flow\r\n.I 012\r\n.W\r\nshock\r\n.I\r\n")
    (folder / "cranqrel").write_text(qrels)


def test_cranfield_parser_on_tiny_copy(tmp_path):
    write_smart(tmp_path / "cranfield", "1 1 1\n1 2 4\n2 2 5\n")
    task = get_local_task("LocalCranfield", tmp_path)
    data = split_of(task)
    assert dict(zip(data["queries"]["id"], data["queries"]["text"], strict=True)) == {
        "1": "wing flow",
        "2": "shock",
    }
    assert data["corpus"]["text"][0] == "wing flow . stray marker follows kept text"
    assert data["relevant_docs"] == {"1": {"1": 4, "2": 1}, "2": {"2": 0}}


def test_cranfield_grade_outside_scale_fails(tmp_path):
    write_smart(tmp_path / "cranfield", "1 1 1\n1 2 6\n")
    with pytest.raises(LocalDataError, match=r"cranqrel: line 2: grade 6 outside"):
        get_local_task("LocalCranfield", tmp_path)


def test_cranfield_identical_duplicate_kept_conflict_fails(tmp_path, caplog):
    write_smart(tmp_path / "cranfield", "1 1 1\n1 2 4\n1 1 1\n2 2 5\n2 2 5\n")
    with caplog.at_level("INFO"):
        task = get_local_task("LocalCranfield", tmp_path)
    assert split_of(task)["relevant_docs"] == {"1": {"1": 4, "2": 1}, "2": {"2": 0}}
    (notice,) = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert notice.endswith("cranqrel: 2 identical duplicate judgment(s) kept once")
    (tmp_path / "conflict").mkdir()
    write_smart(tmp_path / "conflict" / "cranfield", "1 1 1\n1 2 4\n1 2 3\n")
    # the message names the file's own (Cleverdon) grades, not the gains derived from them
    with pytest.raises(LocalDataError, match=r"cranqrel: line 3: query 1 doc 2 graded 3, but 4 at line 2$"):
        get_local_task("LocalCranfield", tmp_path / "conflict")


def write_vaswani(folder: Path, qrels: str) -> None:
    (folder / "corpus").mkdir(parents=True)
    (folder / "corpus" / "doc-text.trec").write_text(
        "<DOC>\n<DOCNO>1</DOCNO>\nwave guides\n</DOC>\n<DOC>\n<DOCNO>2</DOCNO>\nplasma\n</DOC>\n"
    )
    (folder / "query-text.trec").write_text(
        "<top>\n<num>1</num><title>\nwaves\n</title>\n</top>\n"
    )
    (folder / "qrels").write_text(qrels)


def test_vaswani_identical_duplicate_kept_conflict_fails(tmp_path, caplog):
    write_vaswani(tmp_path / "vaswani_npl", "1 0 1 1\n1 0 1 1\n1 0 2 0\n")
    with caplog.at_level("INFO"):
        task = get_local_task("LocalVaswani", tmp_path)
    assert split_of(task)["relevant_docs"] == {"1": {"1": 1, "2": 0}}
    assert sum("1 identical duplicate judgment(s)" in r.getMessage() for r in caplog.records) == 1
    write_vaswani(tmp_path / "bad" / "vaswani_npl", "1 0 1 1\n\n1 0 1 0\n")
    with pytest.raises(LocalDataError, match=r"qrels: line 3: query 1 doc 1 graded 0, but 1 at line 1$"):
        get_local_task("LocalVaswani", tmp_path / "bad")


# ------------------------------------------------------------------ BEIR folders


def write_beir(
    folder: Path, corpus: list[dict], queries: list[dict], qrels: str, split: str = "test"
) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8"
    )
    (folder / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8"
    )
    return folder


CORPUS = [
    {"_id": "a", "title": "", "text": "zorblax zorblax quimbly"},
    {"_id": "b", "title": "frundle", "text": "zorblax plimsy wexter"},
    {"_id": "c", "text": "glabber trintle vosk"},
    {"_id": "d", "text": "   "},
]
QUERIES = [
    {"_id": "q1", "text": "quimbly"},
    {"_id": "q2", "text": "frundle"},
    {"_id": "q3", "text": "trintle"},
    {"_id": "q4", "text": "zorblax"},
    {"_id": "q5", "text": "unjudged"},
]
QRELS = "q1\ta\t1\nq2\tb\t1\nq3\tc\t1\nq4\tb\t1\nq4\tc\t0\n"


def test_beir_round_trip_and_bm25_scores(tmp_path):
    folder = write_beir(tmp_path / "tiny", CORPUS, QUERIES, QRELS)
    task = beir_task(folder)
    assert task.metadata.name == "LocalBEIR-tiny" and task.eval_splits == ["test"]
    data = split_of(task)
    assert (
        list(data["corpus"]["id"]) == ["a", "b", "c", "d"]
        and data["corpus"]["title"][1] == "frundle"
    )
    assert list(data["queries"]["id"]) == ["q1", "q2", "q3", "q4"]  # q5 is judged in no split
    assert data["relevant_docs"]["q4"] == {"b": 1, "c": 0}
    assert data["corpus"]["text"][3] == "   "  # whitespace-only text is kept, not rejected
    # q1-q3 name a term of their document only: rank 1. q4's term is twice in `a` (same length):
    # its relevant `b` ranks 2nd, nDCG@10 = 1/log2(3). Mean over the 4 judged queries:
    expected = (3 + 1 / 1.584962500721156) / 4
    assert bm25_main_scores(task, tmp_path / "results")["default"] == pytest.approx(
        expected, abs=1e-4
    )


def test_beir_identical_duplicate_judgment_is_counted_not_rejected(tmp_path, caplog):
    folder = write_beir(tmp_path / "dup", CORPUS, QUERIES, QRELS + "q1\ta\t1\nq4\tc\t0\n")
    with caplog.at_level("INFO"):
        task = beir_task(folder)
    assert split_of(task)["relevant_docs"] == split_of(
        beir_task(write_beir(tmp_path / "clean", CORPUS, QUERIES, QRELS))
    )["relevant_docs"]
    notices = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].endswith("test.tsv: 2 identical duplicate judgment(s) kept once")


def test_beir_name_override_and_explicit_split(tmp_path):
    folder = write_beir(tmp_path / "x", CORPUS, QUERIES, QRELS, split="dev")
    task = beir_task(folder, name="LocalBEIR-custom")
    assert task.metadata.name == "LocalBEIR-custom" and task.eval_splits == ["dev"]


def test_beir_entries_carry_languages_and_bare_paths_stay_english(tmp_path):
    from omegaconf import OmegaConf

    from harness.sweep import benchmark_task_names, job_benchmark
    from harness.tasks import load_tasks

    plain = write_beir(tmp_path / "plain", CORPUS, QUERIES, QRELS)
    cross = write_beir(tmp_path / "cross", CORPUS, QUERIES, QRELS)
    german = write_beir(tmp_path / "german", CORPUS, QUERIES, QRELS)
    entries = [str(plain),
               {"path": str(cross), "query_language": "deu-Latn", "document_language": "eng-Latn"},
               {"path": str(german), "query_language": "deu-Latn",
                "document_language": "deu-Latn"}]
    bench = {"name": "b", "beir_folders": entries}
    tasks = load_tasks(OmegaConf.create(bench))  # entries as Hydra hands them over
    langs = {t.metadata.name: t.metadata.eval_langs for t in tasks}
    assert langs == {"LocalBEIR-plain": ["eng-Latn"],
                     "LocalBEIR-cross": ["eng-Latn", "deu-Latn"],  # [document, query], as mteb
                     "LocalBEIR-german": ["deu-Latn"]}
    before = beir_task(plain).metadata  # a bare path: exactly the task of before (English)
    assert tasks[0].metadata.model_dump() == before.model_dump()
    assert "queries deu-Latn, documents eng-Latn" in tasks[1].metadata.description
    assert benchmark_task_names(bench) == list(langs)
    cfg = OmegaConf.create({"benchmark": bench,
                            "run": {"tasks_per_job": 1, "shard": 1, "tasks": None}})
    shard, names = job_benchmark(cfg)
    assert names == ["LocalBEIR-cross"] and list(shard.beir_folders) == [entries[1]]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "x", "query_language": "de"},
         r"benchmark.beir_folders\[0\].query_language='de': not an mteb language tag"),
        ({"path": "x", "document_language": "xxx-Latn"},
         r"benchmark.beir_folders\[0\].document_language='xxx-Latn': Invalid language code: xxx$"),
        ({"path": "x", "document_language": "deu-Lain"},
         r"document_language='deu-Lain': Invalid script code: Lain$"),
        ({"path": "x", "languages": ["deu-Latn"]}, r"unknown key\(s\) \['languages'\]"),
        ({"query_language": "deu-Latn"}, r"benchmark.beir_folders\[0\].path=None"),
        (3, r"benchmark.beir_folders\[0\]=3: expected a folder path or a mapping"),
    ],
)
def test_bad_beir_entries_fail_in_one_line_before_any_task(tmp_path, entry, message):
    from harness.sweep import benchmark_task_names
    from harness.tasks import load_tasks

    # the data task would need a data root: the entry fails before it is looked for
    bench = {"name": "b", "data_tasks": ["LocalCranfield"], "data_root": str(tmp_path / "none"),
             "beir_folders": [entry]}
    for call in (load_tasks, benchmark_task_names):
        with pytest.raises(ValueError, match=message) as info:
            call(bench)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="query_language='de'"):
        beir_task(write_beir(tmp_path / "y", CORPUS, QUERIES, QRELS), query_language="de")


# ------------------------------------------------------------------ validation: one line, file and line


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "message"),
    [
        (
            CORPUS + [{"_id": "a", "text": "again"}],
            QUERIES,
            QRELS,
            r"corpus.jsonl: line 5: duplicate doc id 'a'",
        ),
        (
            CORPUS,
            QUERIES + [{"_id": "q2", "text": "x"}],
            QRELS,
            r"queries.jsonl: line 6: duplicate query id 'q2'",
        ),
        (
            CORPUS,
            QUERIES,
            QRELS + "q9\ta\t1\n",
            r"test.tsv: qrels name query id 'q9' missing from queries",
        ),
        (
            CORPUS,
            QUERIES,
            QRELS + "q1\tzz\t1\n",
            r"test.tsv: qrels of query 'q1' name unknown doc id 'zz'",
        ),
        (
            CORPUS,
            QUERIES,
            "q1\ta\t1.5\n",
            r"test.tsv: line 2: relevance grade '1.5' is not an integer",
        ),
        (
            CORPUS,
            QUERIES,
            "q1\ta\tyes\n",
            r"test.tsv: line 2: relevance grade 'yes' is not an integer",
        ),
        (
            CORPUS,
            QUERIES,
            "q1\ta\t1\nq2\tb\t1\nq1\ta\t2\n",
            r"test.tsv: line 4: query q1 doc a graded 2, but 1 at line 2$",
        ),
        (
            [{"_id": "a"}],
            QUERIES,
            QRELS,
            r"corpus.jsonl: line 1: expected '_id' and a string 'text'",
        ),
    ],
)
def test_beir_validation_errors(tmp_path, corpus, queries, qrels, message):
    folder = write_beir(tmp_path / "bad", corpus, queries, qrels)
    with pytest.raises(LocalDataError, match=message) as err:
        beir_task(folder)
    assert "\n" not in str(err.value)


def test_missing_files_are_listed(tmp_path):
    folder = write_beir(tmp_path / "m", CORPUS, QUERIES, QRELS)
    (folder / "queries.jsonl").unlink()
    with pytest.raises(LocalDataError, match=r"is missing queries.jsonl"):
        beir_task(folder)
    with pytest.raises(LocalDataError, match=r"does not exist"):
        beir_task(tmp_path / "absent")
    (tmp_path / "cranfield").mkdir()
    (tmp_path / "cranfield" / "cran.qry").write_text(".I 1\n.W\nq\n")
    with pytest.raises(LocalDataError, match=r"is missing cran.all.1400, cranqrel"):
        get_local_task("LocalCranfield", tmp_path)


def test_invalid_utf8_names_file_and_line(tmp_path):
    folder = write_beir(tmp_path / "u", CORPUS, QUERIES, QRELS)
    raw = (folder / "corpus.jsonl").read_bytes().splitlines(keepends=True)
    raw[2] = raw[2].replace(b"glabber", b"gl\xffbber")
    (folder / "corpus.jsonl").write_bytes(b"".join(raw))
    with pytest.raises(LocalDataError, match=r"corpus.jsonl: line 3: invalid UTF-8 \(byte 0xff\)"):
        beir_task(folder)


def test_invalid_json_names_file_and_line(tmp_path):
    folder = write_beir(tmp_path / "j", CORPUS, QUERIES, QRELS)
    with (folder / "queries.jsonl").open("a") as f:
        f.write("{not json}\n")
    with pytest.raises(LocalDataError, match=r"queries.jsonl: line 6: invalid JSON"):
        beir_task(folder)


def test_empty_texts_evaluate_without_crash(tmp_path):
    corpus = [
        {"_id": "a", "text": ""},
        {"_id": "b", "text": "vosk trintle"},
        {"_id": "c", "text": " \t "},
    ]
    queries = [{"_id": "q1", "text": "vosk"}, {"_id": "q2", "text": "   "}]
    folder = write_beir(tmp_path / "e", corpus, queries, "q1\tb\t1\nq2\ta\t1\n")
    scores = bm25_main_scores(beir_task(folder), tmp_path / "results")
    assert 0.5 <= scores["default"] <= 1.0  # q1 is found at rank 1; q2 cannot be matched


# ------------------------------------------------------------------ slices


def test_slice_is_deterministic_and_keeps_relevant_docs(tmp_path):
    corpus = [{"_id": f"d{i}", "text": f"word{i} common"} for i in range(60)]
    queries = [{"_id": f"q{i}", "text": f"word{i}"} for i in range(20)]
    qrels = "".join(f"q{i}\td{i}\t1\nq{i}\td{i + 20}\t2\n" for i in range(20))
    task = beir_task(write_beir(tmp_path / "s", corpus, queries, qrels))
    small = slice_task(task, 5, seed=3, n_docs=12)
    again = slice_task(beir_task(tmp_path / "s"), 5, seed=3, n_docs=12, rename=True)
    data = split_of(small)
    assert small.metadata.name == "LocalBEIR-s"
    assert small.metadata.revision == f"{task.metadata.revision}+slice_5q_seed3_12d"
    assert again.metadata.name == "LocalBEIR-s (slice_5q_seed3_12d)"
    assert again.metadata.adapted_from == ["LocalBEIR-s"]
    assert len(data["queries"]) == 5 and len(data["corpus"]) == 12
    assert list(data["queries"]["id"]) == list(split_of(again)["queries"]["id"])
    assert list(data["corpus"]["id"]) == list(split_of(again)["corpus"]["id"])
    kept_docs = set(data["corpus"]["id"])
    assert all(set(d) <= kept_docs for d in data["relevant_docs"].values())
    assert slice_task(task, 50) is task  # nothing to drop: the task itself
    scores = bm25_main_scores(small, tmp_path / "results")  # a slice evaluates like any task
    assert 0.0 < scores["default"] <= 1.0


# ------------------------------------------------------------------ embedded task


def test_embedded_task_counts_construction_and_determinism():
    task = get_local_task(EMBEDDED_NAME, None)
    assert task.hf_subsets == list(DEFAULT_LANGUAGES)
    root = dataset_build_root()
    for lang in DEFAULT_LANGUAGES:
        assert counts(task, lang) == (DEFAULT_DOCS_PER_LANGUAGE,) * 3
        source = " ".join((root / lang / f"{lang}.txt").read_text(encoding="utf-8").split())
        data = split_of(task, lang)
        docs = dict(zip(data["corpus"]["id"], data["corpus"]["text"], strict=True))
        for qid, query in zip(data["queries"]["id"], data["queries"]["text"], strict=True):
            (doc_id,) = data["relevant_docs"][qid]
            # query and document are consecutive text of the same passage, and disjoint
            assert query.strip() and docs[doc_id].strip() and query not in docs[doc_id]
            assert query + docs[doc_id] in source or f"{query} {docs[doc_id]}" in source
    first = [list(split_of(task, lang)["queries"]["text"]) for lang in DEFAULT_LANGUAGES]
    local_embedded.ranked_passages.cache_clear()
    rebuilt = get_local_task(EMBEDDED_NAME, None)
    assert [list(split_of(rebuilt, lang)["queries"]["text"]) for lang in DEFAULT_LANGUAGES] == first
    assert rebuilt.metadata.dataset == task.metadata.dataset


def test_embedded_options_and_errors():
    task = get_local_task(EMBEDDED_NAME, None, languages=["deu", "jpn"], docs_per_language=10)
    assert task.hf_subsets == ["deu", "jpn"] and task.metadata.eval_langs["jpn"] == ["jpn-Jpan"]
    assert counts(task, "jpn") == (10, 10, 10)
    with pytest.raises(LocalDataError, match=r"unknown language\(s\) \['xxx'\]; valid: ara"):
        get_local_task(EMBEDDED_NAME, None, languages=["xxx"])
    with pytest.raises(LocalDataError, match=r"docs_per_language must be an integer in 1..100"):
        get_local_task(EMBEDDED_NAME, None, docs_per_language=EVAL_POOL + 1)


def test_training_pairs_are_disjoint_from_any_evaluation_cap():
    pairs = embedded_training_pairs(DEFAULT_LANGUAGES, n=200)
    assert len(pairs) == 200 == len(set(pairs))
    assert pairs == embedded_training_pairs(DEFAULT_LANGUAGES, n=200)
    largest = get_local_task(EMBEDDED_NAME, None, docs_per_language=EVAL_POOL)
    eval_texts = {
        text
        for lang in DEFAULT_LANGUAGES
        for col in (
            split_of(largest, lang)["queries"]["text"],
            split_of(largest, lang)["corpus"]["text"],
        )
        for text in col
    }
    every = embedded_training_pairs(DEFAULT_LANGUAGES)
    assert not {text for pair in every for text in pair} & eval_texts
    # round-robin interleaving keeps the first pairs balanced over languages
    first = embedded_training_pairs(["eng", "deu"], n=10)
    assert Counter(q in {p[0] for p in embedded_training_pairs(["eng"])} for q, _ in first) == {
        True: 5,
        False: 5,
    }
    with pytest.raises(LocalDataError, match=r"n must be an integer in 1\.\."):
        embedded_training_pairs(["deu"], n=10**6)
