"""`SparseSearchModel`: mteb's `SearchProtocol` for any sentence-transformers SparseEncoder.

`index` encodes the corpus once (cached, capped at `cache_max_k` per vector so that every top-k
up to it reuses the entry), prunes it to the document top-k and builds
the backend index; `search` encodes the queries the same way, prunes them to the query top-k and
either searches the whole corpus (exact or Seismic) or, for Reranking / InstructionReranking
tasks (`top_ranked`), scores only each query's candidates by sparse dot products. Every query id
gets an entry in the output (an empty dict when nothing matches). Sparse all the way: CSR in,
CSR out, memory O(nnz).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from mteb._create_dataloaders import _retrieval_texts
from mteb.models import ModelMeta
from mteb.types import PromptType

from . import stats
from .backends import BackendConfig, SearchIndex
from .csr import Encoded, top_k_rows
from .encode import encode_texts, parse_devices
from .encoding_cache import EncodingCache, content_hash, encoder_digest
from .exact import ExactIndex, TopK, pair_scores

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import (
        CorpusDatasetType,
        EncodeKwargs,
        QueryDatasetType,
        RetrievalOutputType,
        TopRankedDocumentsType,
    )
    from sentence_transformers import SparseEncoder

logger = logging.getLogger(__name__)

#: Depth of the Seismic-vs-exact agreement reported in the efficiency statistics.
RECALL_DEPTH = 10
#: Default `cache_max_k`: entries cached per vector (above every top-k of the paper's sweeps).
CACHE_MAX_K = 1024


def is_reranking(task_metadata: TaskMetadata) -> bool:
    """Reranking and InstructionReranking tasks hand `top_ranked` candidates to `search`."""
    return "Reranking" in task_metadata.type


def topk_to_results(
    top: TopK, query_ids: Sequence[str], doc_ids: Sequence[str]
) -> RetrievalOutputType:
    """mteb's output `{query_id: {doc_id: score}}` from `[n_queries, k]` results; every id present."""
    results: RetrievalOutputType = {}
    for row, qid in enumerate(query_ids):
        hits = top.doc_idx[row]
        n = int(np.count_nonzero(hits >= 0))
        results[qid] = {
            doc_ids[d]: float(s) for d, s in zip(hits[:n], top.scores[row, :n], strict=True)
        }
    return results


def recall_vs(reference: TopK, approx: TopK, depth: int) -> float:
    """Mean |approx ∩ reference| / |reference| of the top-`depth` lists, over queries with hits."""
    values = []
    for ref_row, app_row in zip(
        reference.doc_idx[:, :depth], approx.doc_idx[:, :depth], strict=True
    ):
        ref = set(ref_row[ref_row >= 0].tolist())
        if ref:
            values.append(len(ref & set(app_row[app_row >= 0].tolist())) / len(ref))
    return float(np.mean(values)) if values else 1.0


@dataclass
class _Side:
    """Encodings of one side (documents or queries) of a (task, subset, split), top-k applied."""

    ids: list[str]
    matrix: sp.csr_matrix
    encode: dict[str, Any]


@dataclass
class _Indexed:
    """State between `index` and `search` for one (task, subset, split)."""

    task_name: str
    subset: str
    split: str
    docs: _Side
    index: SearchIndex | None


class SparseSearchModel:
    """mteb `SearchProtocol` around a SparseEncoder (dot-product similarity).

    Args:
        encoder: an uncapped SparseEncoder; its `encode_query` / `encode_document` are used.
        meta: the mteb ModelMeta of this variant (its name carries the top-k).
        top_k_query: active dimensions kept per query (0 = no cap).
        top_k_document: active dimensions kept per document (0 = no cap).
        backend: the `cfg.search` node, `name` (exact | seismic) plus parameters.
        cache_dir: folder of the encoding cache, or None for no cache.
        stats_dir: folder for `<task_name>.efficiency.json`, or None for no statistics file.
        batch_size: with `max_tokens_per_batch` None, the budget is batch_size x the encoder's
            max length (today's fixed batch at full length; mteb's `encode_kwargs` are not used).
        show_progress: show encoding progress bars.
        encoding_key: identity of the encoder's uncapped encodings (`models.encoding_key(spec)`);
            None hashes the loaded encoder's weights instead.
        devices: `run.devices`: None (the encoder's own device), `auto` (every visible GPU) or a
            list such as `["cuda:0", "cuda:1"]`; two or more encode through
            sentence-transformers' multi-process pool.
        max_tokens_per_batch: batch budget in padded tokens (texts sorted by length), at least
            the encoder's max length; None = batch_size x max length.
        cache_max_k: entries kept per cached vector: a side with top-k k is cached with its
            max(k, cache_max_k) largest entries (uncapped when k or cache_max_k is 0), so any
            later top-k up to that reuses the entry and a larger one re-encodes.
    """

    def __init__(
        self,
        encoder: SparseEncoder,
        meta: ModelMeta,
        *,
        top_k_query: int,
        top_k_document: int,
        backend: Mapping[str, Any],
        cache_dir: Path | None,
        stats_dir: Path | None,
        batch_size: int = 32,
        show_progress: bool = True,
        encoding_key: str | None = None,
        devices: Sequence[str] | str | None = None,
        max_tokens_per_batch: int | None = None,
        cache_max_k: int = CACHE_MAX_K,
    ):
        for label, value in (("top_k.query", top_k_query), ("top_k.document", top_k_document)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{label} must be an integer >= 0 (0 = no cap), got {value!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not isinstance(cache_max_k, int) or isinstance(cache_max_k, bool) or cache_max_k < 0:
            raise ValueError(
                f"run.cache_max_k must be an integer >= 0 (0 = no cap), got {cache_max_k!r}"
            )
        max_length = int(encoder.max_seq_length)
        if max_tokens_per_batch is None:
            max_tokens_per_batch = batch_size * max_length
        elif not isinstance(max_tokens_per_batch, int) or max_tokens_per_batch < max_length:
            raise ValueError(
                f"run.max_tokens_per_batch={max_tokens_per_batch!r} must be an integer >= the "
                f"model's max length {max_length} (a full-length text must fit in a batch)"
            )
        similarity = getattr(encoder, "similarity_fn_name", "dot")
        if similarity != "dot":
            raise ValueError(
                f"sparse search scores by dot product; the encoder uses {similarity!r}"
            )
        self.encoder = encoder
        self._dim: int | None = None
        self._meta = meta
        self.top_k_query = top_k_query
        self.top_k_document = top_k_document
        self.backend = BackendConfig.parse(backend)
        self.cache = EncodingCache(Path(cache_dir)) if cache_dir is not None else None
        self.stats_dir = Path(stats_dir) if stats_dir is not None else None
        self.batch_size = batch_size
        self.max_tokens_per_batch = int(max_tokens_per_batch)
        self.cache_max_k = cache_max_k
        self.devices = parse_devices(devices)
        if self.devices is not None and len(self.devices) == 1:
            encoder.to(self.devices[0])
        self._pool: dict[str, Any] | None = None
        self.show_progress = show_progress
        self._encoding_key = encoding_key
        self._identity: dict[str, Any] | None = None
        self._indexed: _Indexed | None = None

    @property
    def mteb_model_meta(self) -> ModelMeta:
        """Metadata of the model variant (name includes the top-k)."""
        return self._meta

    @property
    def dim(self) -> int:
        """Width of the sparse vectors, read from the encoder's output on a probe text.

        (`get_embedding_dimension()` reports the backbone width for SPLADE pooling without an
        explicit size, so the encoder's output shape is the only reliable source.)
        """
        if self._dim is None:
            probe = self.encoder.encode_document(
                ["dimension probe"],
                convert_to_tensor=True,
                convert_to_sparse_tensor=True,
                save_to_cpu=True,
                show_progress_bar=False,
            )
            self._dim = int(probe.shape[-1])
        return self._dim

    def identity(self) -> dict[str, Any]:
        """What makes two encodings interchangeable: the encoding key (never the top-k or the
        search backend) and the truncation length."""
        if self._identity is None:
            self._identity = {
                "key": self._encoding_key or encoder_digest(self.encoder),
                "max_seq_length": getattr(self.encoder, "max_seq_length", None),
            }
        return self._identity

    def _encode_pool(self) -> dict[str, Any] | None:
        """sentence-transformers' multi-process pool on `devices` (two or more), started once and
        stopped when this model is collected or the interpreter exits."""
        if self.devices is None or len(self.devices) < 2:
            return None
        if self._pool is None:
            self._pool = self.encoder.start_multi_process_pool(self.devices)
            weakref.finalize(self, self.encoder.stop_multi_process_pool, self._pool)
        return self._pool

    def _encode(
        self,
        side: str,
        ids: list[str],
        texts: list[str],
        top_k: int,
        task_name: str,
        subset: str,
        split: str,
    ) -> tuple[Encoded, bool]:
        """Encodings `[len(texts), dim]` of one side serving `top_k`, from the cache if possible.

        With a cache, encoding happens under the entry's lock: a job that finds it held waits, then
        reads what the holder wrote (or takes over a stale lock and encodes).
        """
        key = None
        if self.cache is not None:
            key = self.cache.key(
                identity=self.identity(),
                task=task_name,
                subset=subset,
                split=split,
                side=side,
                content=content_hash(ids, texts),
                dim=self.dim,
            )
            hit = self.cache.load(key, len(texts), self.dim, top_k)
            if hit is not None:
                logger.info("%s %s/%s %ss: cached encodings", task_name, subset, split, side)
                return hit, True
            with self.cache.lock(key):
                hit = self.cache.load(key, len(texts), self.dim, top_k)
                if hit is not None:
                    logger.info("%s %s/%s %ss: encoded by another job", task_name, subset, split, side)
                    return hit, True
                cap = 0 if top_k == 0 or self.cache_max_k == 0 else max(top_k, self.cache_max_k)
                encoded = self._encode_texts(side, texts, cap, task_name, subset, split)
                self.cache.save(
                    key,
                    encoded,
                    {"model": self._meta.name, "task": task_name, "subset": subset,
                     "split": split, "side": side},
                )
            return encoded, False
        return self._encode_texts(side, texts, top_k, task_name, subset, split), False

    def _encode_texts(
        self, side: str, texts: list[str], cap: int, task_name: str, subset: str, split: str
    ) -> Encoded:
        return encode_texts(
            self.encoder,
            side,
            texts,
            self.dim,
            max_tokens=self.max_tokens_per_batch,
            cap=cap,
            pool=self._encode_pool(),
            show_progress=self.show_progress,
            desc=f"Encoding {side}s ({task_name} {subset}/{split})",
        )

    def _side(self, side: str, dataset: Any, task_name: str, subset: str, split: str) -> _Side:
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        prompt_type = PromptType.query if side == "query" else PromptType.document
        top_k = self.top_k_query if side == "query" else self.top_k_document
        ids = [str(i) for i in dataset["id"]]
        texts = _retrieval_texts(dataset, prompt_type)
        encoded, from_cache = self._encode(side, ids, texts, top_k, task_name, subset, split)
        return _Side(
            ids,
            top_k_rows(encoded.matrix, top_k),
            stats.encode_summary(len(ids), encoded.n_tokens, encoded.seconds, from_cache),
        )

    def encodings(
        self, dataset: Any, side: str, *, task_name: str, subset: str, split: str
    ) -> sp.csr_matrix:
        """The vectors `search` uses for an mteb corpus or query dataset: `[n_rows, dim]` CSR, top-k applied.

        Goes through the encoding cache, so after a run it costs no encoding.
        """
        return self._side(side, dataset, task_name, subset, split).matrix

    def index(
        self,
        corpus: CorpusDatasetType,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        encode_kwargs: EncodeKwargs,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Encode the corpus (title + text, as mteb joins them) and build the backend index.

        Reranking tasks only need the document vectors, so no inverted index is built for them.
        """
        docs = self._side("document", corpus, task_metadata.name, hf_subset, hf_split)
        index = None if is_reranking(task_metadata) else self.backend.build(docs.matrix)
        self._indexed = _Indexed(task_metadata.name, hf_subset, hf_split, docs, index)

    def search(
        self,
        queries: QueryDatasetType,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        top_k: int,
        encode_kwargs: EncodeKwargs,
        top_ranked: TopRankedDocumentsType | None = None,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> RetrievalOutputType:
        """Top-`top_k` documents per query (or the best of its `top_ranked` candidates)."""
        state = self._indexed
        where = (task_metadata.name, hf_subset, hf_split)
        if state is None or (state.task_name, state.subset, state.split) != where:
            raise RuntimeError(f"search() for {where} called before index() for it")
        q = self._side("query", queries, *where)
        entry: dict[str, Any] = {}
        began = time.perf_counter()
        if top_ranked is not None:
            results, n_pairs = self._rerank(q, state.docs, top_ranked, top_k)
            search_seconds = time.perf_counter() - began
            entry.update(mode="rerank", backend="pairs", pairs_scored=n_pairs, index_bytes=None)
        else:
            if state.index is None:
                state.index = self.backend.build(state.docs.matrix)
            top = state.index.search(q.matrix, top_k)
            search_seconds = time.perf_counter() - began
            results = topk_to_results(top, q.ids, state.docs.ids)
            entry.update(
                mode="full",
                backend=self.backend.name,
                backend_params=self.backend.params,
                index_bytes=state.index.nbytes,
                index_build_seconds=state.index.build_seconds,
            )
            if self.backend.name == "seismic" and self.backend.params["recall_vs_exact"]:
                exact = ExactIndex(state.docs.matrix, num_threads=0).search(q.matrix, RECALL_DEPTH)
                entry[f"recall_at_{RECALL_DEPTH}_vs_exact"] = recall_vs(exact, top, RECALL_DEPTH)
        missing = set(q.ids) - set(results)
        assert not missing, f"query ids missing from the search output: {sorted(missing)[:5]}"
        if self.stats_dir is not None:
            entry.update(
                subset=hf_subset,
                split=hf_split,
                model=self._meta.name,
                top_k={"query": self.top_k_query, "document": self.top_k_document},
                n_documents=len(state.docs.ids),
                n_queries=len(q.ids),
                dim=self.dim,
                avg_nnz_query=stats.avg_nnz(q.matrix),
                avg_nnz_document=stats.avg_nnz(state.docs.matrix),
                flops=stats.flops(q.matrix, state.docs.matrix),
                encode={"documents": state.docs.encode, "queries": q.encode},
                search_seconds=search_seconds,
                search_ms_per_query=1000 * search_seconds / max(len(q.ids), 1),
            )
            stats.write_entry(self.stats_dir, task_metadata.name, entry)
        self._indexed = None
        return results

    @staticmethod
    def _rerank(
        q: _Side, docs: _Side, top_ranked: TopRankedDocumentsType, top_k: int
    ) -> tuple[RetrievalOutputType, int]:
        """Score each query's candidates only; returns the results and the number of pairs scored."""
        row_of = {doc_id: row for row, doc_id in enumerate(docs.ids)}
        q_rows: list[int] = []
        d_rows: list[int] = []
        for q_row, qid in enumerate(q.ids):
            for doc_id in top_ranked.get(qid, ()):
                if doc_id not in row_of:
                    raise ValueError(
                        f"top_ranked candidate {doc_id!r} of query {qid!r} is not in the corpus"
                    )
                q_rows.append(q_row)
                d_rows.append(row_of[doc_id])
        scores = pair_scores(q.matrix, docs.matrix, np.array(q_rows), np.array(d_rows))
        results: RetrievalOutputType = {qid: {} for qid in q.ids}
        start = 0
        for qid in q.ids:
            n = len(top_ranked.get(qid, ()))
            cand = np.array(d_rows[start : start + n], dtype=np.int64)
            cand_scores = scores[start : start + n]
            start += n
            best = np.argsort(-cand_scores, kind="stable")[:top_k]
            results[qid] = {docs.ids[cand[i]]: float(cand_scores[i]) for i in best}
        return results, len(q_rows)
