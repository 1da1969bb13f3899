"""Encoding by token budget, out-of-memory halving, several processes, bounded cache entries.

Every encoding is compared with an independent one: the encoder's own `encode_document` on one
text at a time (no padding), or the same batches in a single process (bit for bit). Uses the
trained BERT-tiny SPLADE bundled with `cognition` (offline).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from mteb.models import ModelMeta

from harness.search import SparseSearchModel
from harness.search.csr import top_k_rows, torch_sparse_to_csr
from harness.search.encode import encode_texts, ladder_floor, parse_devices, plan_batches

MAX_LENGTH = 32
WORDS = [
    "the", "wing", "boundary", "layer", "flow", "at", "supersonic", "speed", "heat", "transfer",
    "plate", "shock", "wave", "pressure", "on", "a", "cone", "laminar", "turbulent", "separation",
]


@pytest.fixture(scope="module")
def encoder():
    from sentence_transformers import SparseEncoder

    path = Path(importlib.util.find_spec("cognition").origin).parent / "model"
    model = SparseEncoder(str(path), device="cpu")
    model.max_seq_length = MAX_LENGTH
    return model


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """36 texts of 1 to 45 words (some truncated at MAX_LENGTH tokens), plus two blank ones."""
    rng = np.random.default_rng(0)
    out = [" ".join(rng.choice(WORDS, int(rng.integers(1, 45)))) for _ in range(36)]
    return [*out[:10], "", *out[10:], "   "]


@pytest.fixture(scope="module")
def unbatched(encoder, texts):
    """`[n, dim]` CSR: every non-blank text encoded alone by the encoder itself (no padding)."""
    rows = []
    for text in texts:
        out = encoder.encode_document([text], batch_size=1, convert_to_sparse_tensor=True)
        row = torch_sparse_to_csr(out)
        rows.append(row if text.strip() else row.multiply(0))
    import scipy.sparse as sp

    matrix = sp.vstack(rows, format="csr")
    matrix.eliminate_zeros()
    return matrix


def same_vectors(a, b, atol: float = 2e-5) -> None:
    """Same active dimensions per row and values equal to float32 rounding of padded batches."""
    assert a.shape == b.shape
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=atol)


def test_ladder_floor_is_the_largest_ladder_value_below():
    ladder = sorted({2**k for k in range(12)} | {3 * 2**k for k in range(11)})
    n = np.arange(1, 3000)
    expected = [max(v for v in ladder if v <= x) for x in n]
    assert ladder_floor(n).tolist() == expected


def test_plan_batches_cover_every_row_within_the_budget():
    rng = np.random.default_rng(1)
    lengths = np.concatenate([rng.integers(20, 60, 700), rng.integers(700, 1025, 40)])
    rng.shuffle(lengths)
    budget = 16 * 1024
    groups = plan_batches(lengths, budget)
    rows = np.concatenate([r for _, r in groups])
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every row exactly once
    assert np.all(np.diff(lengths[rows]) <= 0)  # longest first
    batches = [(b, r[i : i + b]) for b, r in groups for i in range(0, len(r), b)]
    for b, batch in batches:
        assert len(batch) * lengths[batch].max() <= budget
        assert b in ladder_floor(np.array([b]))  # a ladder size
    assert max(len(batch) for _, batch in batches) >= 256  # 20-60 tokens: hundreds to a batch
    assert all(len(batch) <= 16 for _, batch in batches if lengths[batch].max() >= 700)
    with pytest.raises(ValueError, match="exceeds the batch budget 512"):
        plan_batches(np.array([10, 600]), 512)


def test_token_budget_encoding_matches_unbatched_in_input_order(encoder, texts, unbatched):
    dim = unbatched.shape[1]
    out = encode_texts(encoder, "document", texts, dim, max_tokens=4 * MAX_LENGTH)
    same_vectors(out.matrix, unbatched)
    assert out.matrix[10].nnz == 0 and out.matrix[len(texts) - 1].nnz == 0  # blank texts
    expected_tokens = sum(
        len(ids)
        for ids in encoder.tokenizer(
            [t for t in texts if t.strip()], truncation=True, max_length=MAX_LENGTH
        )["input_ids"]
    )
    assert out.n_tokens == expected_tokens
    capped = encode_texts(encoder, "document", texts, dim, max_tokens=4 * MAX_LENGTH, cap=7)
    # same batches: the cap is exactly top-k of the uncapped rows
    assert capped.cap == 7 and (capped.matrix != top_k_rows(out.matrix, 7)).nnz == 0


def test_out_of_memory_halves_the_batch_and_gives_the_same_vectors(
    encoder, texts, unbatched, monkeypatch, caplog
):
    dim = unbatched.shape[1]
    plain = encode_texts(encoder, "document", texts, dim, max_tokens=16 * MAX_LENGTH)
    real = encoder.encode_document
    calls: list[int] = []

    def oom_on_first_big_batch(batch, **kwargs):
        calls.append(len(batch))
        if len(batch) > 8 and sum(c > 8 for c in calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(batch, **kwargs)

    monkeypatch.setattr(encoder, "encode_document", oom_on_first_big_batch)
    with caplog.at_level(logging.WARNING, logger="harness.search.encode"):
        out = encode_texts(encoder, "document", texts, dim, max_tokens=16 * MAX_LENGTH)
    notices = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    first_big = next(c for c in calls if c > 8)
    after = calls[calls.index(first_big) + 1 : calls.index(first_big) + 3]
    assert after == [first_big // 2, first_big - first_big // 2]  # halved, then retried
    same_vectors(out.matrix, plain.matrix)
    same_vectors(out.matrix, unbatched)


def side_dataset(texts: list[str]) -> Dataset:
    return Dataset.from_dict({"id": [f"d{i}" for i in range(len(texts))], "text": texts})


def make_model(encoder, cache: Path | None, top_k: int, **kwargs) -> SparseSearchModel:
    meta = ModelMeta.create_empty(
        overwrites={"name": f"test/encode-{top_k}", "revision": "r1", "model_type": ["sparse"]}
    )
    return SparseSearchModel(
        encoder, meta, top_k_query=top_k, top_k_document=top_k, backend={"name": "exact"},
        cache_dir=cache, stats_dir=None, show_progress=False, encoding_key="fixed-key", **kwargs,
    )


def test_multi_process_encoding_is_identical_to_one_process(
    encoder, texts, monkeypatch, caplog
):
    data = side_dataset(texts)
    where = {"task_name": "T", "subset": "default", "split": "test"}
    single = make_model(encoder, None, 0, max_tokens_per_batch=4 * MAX_LENGTH)
    expected = single.encodings(data, "document", **where)
    pooled = make_model(encoder, None, 0, max_tokens_per_batch=4 * MAX_LENGTH,
                        devices=["cpu", "cpu"])
    got = pooled.encodings(data, "document", **where)
    assert len(pooled._pool["processes"]) == 2
    assert np.array_equal(got.indptr, expected.indptr)
    assert np.array_equal(got.indices, expected.indices)
    assert np.array_equal(got.data, expected.data)  # bit for bit: the same batches

    # An out-of-memory error reported by the pool halves its batch size for the call.
    real = encoder.encode_document
    failed: list[int] = []

    def oom_once(batch, **kwargs):
        if kwargs.get("pool") is not None and kwargs["batch_size"] > 2 and not failed:
            failed.append(kwargs["batch_size"])
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(batch, **kwargs)

    monkeypatch.setattr(encoder, "encode_document", oom_once)
    with caplog.at_level(logging.WARNING, logger="harness.search.encode"):
        retried = encode_texts(encoder, "document", texts, got.shape[1],
                               max_tokens=4 * MAX_LENGTH, pool=pooled._pool)
    assert failed and any("pool worker at batch size" in r.getMessage() for r in caplog.records)
    same_vectors(retried.matrix, got)


def test_bounded_cache_serves_top_k_up_to_its_cap_and_re_encodes_above(
    encoder, texts, unbatched, tmp_path, monkeypatch
):
    data = side_dataset(texts)
    where = {"task_name": "T", "subset": "default", "split": "test"}
    real = encoder.encode_document
    calls: list[int] = []

    def counted(batch, **kwargs):
        if batch != ["dimension probe"]:
            calls.append(len(batch))
        return real(batch, **kwargs)

    monkeypatch.setattr(encoder, "encode_document", counted)
    cache = tmp_path / "cache"
    for top_k, encodes in ((10, True), (5, False), (12, False), (13, True), (0, True), (50, False)):
        calls.clear()
        model = make_model(encoder, cache, top_k, cache_max_k=12)
        got = model.encodings(data, "document", **where)
        assert bool(calls) == encodes, (top_k, calls)
        same_vectors(got, top_k_rows(unbatched, top_k))
    # entries: top-13 (13 > cache_max_k 12) replaced by an uncapped one, which serves any top-k
    (entry,) = cache.glob("*.npz")
    assert model.cache.load(entry.stem, len(texts), unbatched.shape[1], 50).cap == 0
    assert not list(cache.glob("*.lock"))


def test_bad_encoding_settings_fail_in_one_line(encoder, tmp_path):
    for devices, message in (
        (["cuda:7"], "'cuda:7' does not exist"),
        (["cpu", "gpu:0"], "'gpu:0' is not a torch device"),
        ([], "empty list"),
        ("all", "null, auto or a list"),
    ):
        with pytest.raises(ValueError, match=message):
            make_model(encoder, tmp_path, 5, devices=devices)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="auto: no visible CUDA device"):
            parse_devices("auto")
    with pytest.raises(ValueError, match=r"max_tokens_per_batch=31 must be an integer >= .* 32"):
        make_model(encoder, tmp_path, 5, max_tokens_per_batch=MAX_LENGTH - 1)
    with pytest.raises(ValueError, match="cache_max_k must be an integer >= 0"):
        make_model(encoder, tmp_path, 5, cache_max_k=-1)
    assert make_model(encoder, tmp_path, 5, batch_size=3).max_tokens_per_batch == 3 * MAX_LENGTH
