"""Encoding benchmarks; results in `results/bench/encode.json` (+ `encode.md`, rendered from it).

Sections (each run updates its own entry; the others are kept):

- `latent_vs_vocab`: SPLARE-tiny (SAE latents) vs the vocabulary head on the same Gemma-3-270M
  backbone, same documents of the embedded task, same process.
- `token_budget`: documents/s of token-budget batching (`harness.search.encode`, texts sorted by
  length, `run.max_tokens_per_batch` = 16 x max length) against today's fixed batch of 16
  (sentence-transformers' `encode_document(batch_size=16)`), interleaved repetitions in one
  process, on Cranfield documents (mixed lengths). Headline: `token_budget_speedup`.
- `cache_bytes`: bytes per document of an encoding-cache entry, uncapped vs `run.cache_max_k`
  (1024), SPLARE-tiny on Cranfield documents. Headline: `cache_bytes_ratio` (bounded / uncapped).
- `paper_geometry` (`--paper-geometry`): random-weight models of the paper's shapes (SPLARE-7B,
  SPLARE-2B, SPLADE-Llama): tokens/s, peak device memory, the SAE-plus-pooling overhead over the
  bare truncated forward, parameter bytes on the device with and without the SAE decoder.

`load_peak_host_ram_ratio` is copied from `results/bench/load_memory.json` when that file exists.

    python benchmarks/bench_encode.py [--only latent_vs_vocab,token_budget,cache_bytes]
    python benchmarks/bench_encode.py --paper-geometry
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import compose_config
from harness.paths import REPO_ROOT, shared_data_root

OUT = REPO_ROOT / "results" / "bench"
SECTIONS = ("latent_vs_vocab", "token_budget", "cache_bytes")


def machine() -> str:
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", CPU"
    return (f"{platform.processor() or platform.machine()}{gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s)")


def build(config: str):
    """(encoder, model config) of `conf/model/<config>.yaml`, uncapped."""
    import models

    cfg = compose_config([f"model={config}"]).model
    return models.build_encoder(cfg), cfg


def embedded_documents(n: int) -> list[str]:
    """`n` documents of the embedded task, spread over its 8 languages."""
    from harness.tasks.local import get_local_task

    task = get_local_task("EmbeddedMultilingualRetrieval", None)
    task.load_data()
    texts: list[str] = []
    for subset in task.hf_subsets:
        texts += [row["text"] for row in task.dataset[subset]["test"]["corpus"]]
    return texts[:: max(1, len(texts) // n)][:n]


def cranfield_documents(n: int) -> list[str]:
    """`n` Cranfield documents (title + text, as mteb joins them), spread over the collection."""
    from mteb._create_dataloaders import _retrieval_texts
    from mteb.types import PromptType

    from harness.tasks.local import get_local_task

    root = shared_data_root()
    if root is None:
        raise FileNotFoundError("no shared datasets folder: set HARNESS_DATA_ROOT")
    task = get_local_task("LocalCranfield", root)
    task.load_data()
    docs = _retrieval_texts(task.dataset["default"]["test"]["corpus"], PromptType.document)
    return docs[:: max(1, len(docs) // n)][:n]


def latent_vs_vocab(args) -> dict[str, Any]:
    """Tokens/s and nnz of SPLARE-tiny vs the vocabulary head on the same backbone."""
    texts = embedded_documents(args.docs)
    rows = {}
    for name in ("splare_tiny", "splade_tiny_llm"):
        encoder, cfg = build(name)
        lengths = encoder.tokenizer(texts, truncation=True, max_length=int(cfg.backbone.max_length))
        n_tokens = sum(len(ids) for ids in lengths["input_ids"])
        encoder.encode_document(texts[:8], batch_size=8)  # warm-up
        began = time.perf_counter()
        emb = encoder.encode_document(texts, batch_size=8, convert_to_sparse_tensor=True)
        seconds = time.perf_counter() - began
        rows[name] = {"tokens": n_tokens, "seconds": seconds, "tok_per_s": n_tokens / seconds,
                      "dim": int(emb.shape[1]), "nnz_per_doc": emb.coalesce()._nnz() / len(texts)}
        del encoder
    base = rows["splade_tiny_llm"]["tok_per_s"]
    lines = [
        (f"{len(texts)} documents of EmbeddedMultilingualRetrieval (8 languages), fp32, batch 8, "
        "uncapped, same process, warm-up batch excluded."),
        "",
        "| model | tokens | seconds | tokens/s | dims | nnz/doc (uncapped) | speed vs vocabulary head |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['tokens']} | {r['seconds']:.1f} | {r['tok_per_s']:.0f} | {r['dim']} | "
        f"{r['nnz_per_doc']:.0f} | {r['tok_per_s'] / base:.2f}x |"
        for name, r in rows.items()
    ]
    return {"title": "Latent (SAE) head vs vocabulary head, same backbone", "rows": rows,
            "lines": lines}


def token_budget(args) -> dict[str, Any]:
    """Docs/s of token-budget batches vs a fixed batch of 16, interleaved, same vectors."""
    from harness.search.csr import torch_sparse_to_csr
    from harness.search.encode import encode_texts, plan_batches, token_lengths

    encoder, _ = build(args.budget_model)
    texts = cranfield_documents(args.docs)
    max_length = int(encoder.max_seq_length)
    budget = 16 * max_length
    lengths = token_lengths(encoder, "document", texts)
    dim = int(encoder.encode_document(["probe"], convert_to_sparse_tensor=True).shape[1])
    fixed, budgeted = [], []
    for _ in range(args.repeats):
        began = time.perf_counter()
        old = torch_sparse_to_csr(encoder.encode_document(
            texts, batch_size=16, convert_to_sparse_tensor=True, save_to_cpu=True))
        fixed.append(time.perf_counter() - began)
        began = time.perf_counter()
        new = encode_texts(encoder, "document", texts, dim, max_tokens=budget).matrix
        budgeted.append(time.perf_counter() - began)
    same_dims = bool(np.array_equal(old.indices, new.indices))
    max_diff = float(abs(old - new).max())
    sizes = [len(rows[i : i + b]) for b, rows in plan_batches(lengths, budget)
             for i in range(0, len(rows), b)]
    speedup = min(fixed) / min(budgeted)
    lines = [
        (f"Model `{args.budget_model}` (max length {max_length}), {len(texts)} Cranfield documents "
        f"(LocalCranfield, every {max(1, 1400 // len(texts))}th; {lengths.min()}-{lengths.max()} "
        f"tokens, mean {lengths.mean():.0f}), fp32, {args.repeats} interleaved repetitions in one "
        f"process, best of each. Token budget {budget} = 16 x max length, i.e. the same peak "
        f"padded batch as 16 full-length texts; {len(sizes)} batches of {min(sizes)}-{max(sizes)} "
        f"texts (vs {int(np.ceil(len(texts) / 16))} of 16)."),
        "",
        "| batching | seconds (best) | all repetitions | docs/s | speed-up |",
        "|---|---|---|---|---|",
        (f"| fixed batch 16 (today) | {min(fixed):.2f} | {', '.join(f'{s:.2f}' for s in fixed)} | "
        f"{len(texts) / min(fixed):.1f} | 1.00x |"),
        (f"| token budget {budget} | {min(budgeted):.2f} | "
        f"{', '.join(f'{s:.2f}' for s in budgeted)} | {len(texts) / min(budgeted):.1f} | "
        f"{speedup:.2f}x |"),
        "",
        (f"Same vectors: identical active dimensions {same_dims}, largest value difference "
        f"{max_diff:.1e} (padding differs between the two batchings)."),
    ]
    return {"title": "Batching by token budget vs today's fixed batch", "model": args.budget_model,
            "n_docs": len(texts), "budget": budget, "fixed_seconds": fixed,
            "budget_seconds": budgeted, "token_budget_speedup": speedup,
            "same_active_dims": same_dims, "max_abs_diff": max_diff, "lines": lines}


def cache_bytes(args) -> dict[str, Any]:
    """Cache-entry bytes per document, uncapped vs capped at `run.cache_max_k` (same encoding)."""
    from harness.search.csr import Encoded, top_k_rows
    from harness.search.encode import encode_texts
    from harness.search.encoding_cache import EncodingCache
    from harness.search.model import CACHE_MAX_K

    encoder, cfg = build(args.cache_model)
    texts = cranfield_documents(args.cache_docs)
    dim = int(encoder.encode_document(["probe"], convert_to_sparse_tensor=True).shape[1])
    full = encode_texts(encoder, "document", texts, dim,
                        max_tokens=16 * int(encoder.max_seq_length), show_progress=True)
    doc_k = int(cfg.top_k.document)
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        cache = EncodingCache(Path(folder))
        for label, cap in (("uncapped", 0), (f"cache_max_k={CACHE_MAX_K}", CACHE_MAX_K),
                           (f"top-k {doc_k} (the index)", doc_k)):
            matrix = top_k_rows(full.matrix, cap)
            path = cache.save(label.replace(" ", "_"), Encoded(matrix, full.n_tokens,
                                                                 full.seconds, cap), {})
            sizes[label] = {"bytes_per_doc": path.stat().st_size / len(texts),
                            "nnz_per_doc": matrix.nnz / len(texts)}
    base = sizes["uncapped"]["bytes_per_doc"]
    ratio = sizes[f"cache_max_k={CACHE_MAX_K}"]["bytes_per_doc"] / base
    lines = [
        (f"Model `{args.cache_model}` ({dim} latents), {len(texts)} Cranfield documents "
        "(LocalCranfield), one encoding, saved as cache entries (`EncodingCache.save`, npz: "
        "float32 values, int32 column ids, int64 row pointers, header)."),
        "",
        "| entry | nnz/doc | bytes/doc | vs uncapped |",
        "|---|---|---|---|",
    ]
    lines += [f"| {label} | {s['nnz_per_doc']:.0f} | {s['bytes_per_doc']:.0f} | "
              f"{s['bytes_per_doc'] / base:.3f} |" for label, s in sizes.items()]
    return {"title": "Bounded encoding cache: bytes per document", "model": args.cache_model,
            "n_docs": len(texts), "sizes": sizes, "cache_bytes_ratio": ratio, "lines": lines}


#: Llama-3.1-8B geometry; the paper's models cut it after a layer (0-based) and add a head.
LLAMA_8B = {"hidden": 4096, "intermediate": 14336, "heads": 32, "kv_heads": 8, "vocab": 128256}
D_SAE = 131072  # Llama Scope 32x residual SAE (JumpReLU)
PAPER_MODELS = {"SPLARE-7B": ("sae", 26), "SPLARE-2B": ("sae", 6), "SPLADE-Llama": ("vocab", 31)}
#: On a CPU, widths (hidden, MLP, heads, vocabulary, latents) are divided by this; layers are kept.
CPU_SCALE = 16


def word_tokenizer():
    """A word-level tokenizer (ids < 8) that prepends BOS: only the read-out probe needs text."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", "the", "a", "of"])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                       special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="right")


def paper_encoder(name: str, scale: int, device: str, dtype: torch.dtype):
    """Random-weight SparseEncoder of a paper model (`PAPER_MODELS`), widths divided by `scale`.

    The backbone is built on `device` in `dtype` directly; the SAE is built on the host and
    moved by the encoder (so its decoder stays on the host, as `SaeLatentPooling` keeps it).
    """
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sentence_transformers import SparseEncoder
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    from models.backbone import CausalLMBackbone
    from models.sae_pooling import SaeLatentPooling
    from models.vocab_head import VocabLogitsPooling

    kind, layer = PAPER_MODELS[name]
    heads = max(1, LLAMA_8B["heads"] // scale)
    config = LlamaConfig(
        hidden_size=LLAMA_8B["hidden"] // scale, intermediate_size=LLAMA_8B["intermediate"] // scale,
        num_hidden_layers=layer + 1, num_attention_heads=heads,
        num_key_value_heads=max(1, LLAMA_8B["kv_heads"] // scale),
        head_dim=LLAMA_8B["hidden"] // scale // heads, vocab_size=LLAMA_8B["vocab"] // scale,
        max_position_embeddings=8192, rope_theta=500000.0, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, tie_word_embeddings=False, tie_last_hidden_states=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            lm = LlamaForCausalLM(config) if kind == "vocab" else None
            body = lm.model if lm is not None else LlamaModel(config)
    finally:
        torch.set_default_dtype(default)
    backbone = CausalLMBackbone(body, word_tokenizer(), layer, max_seq_length=1024,
                                bidirectional=False, final_norm=kind == "vocab")
    if kind == "vocab":
        head = VocabLogitsPooling.from_causal_lm(lm.lm_head, lm.config, tied=False,
                                                 chunk_tokens=256)
    else:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=config.hidden_size, d_sae=D_SAE // scale,
                                            dtype=str(dtype).removeprefix("torch."), device="cpu"))
        with torch.no_grad():
            sae.threshold.fill_(0.5)  # a sparse code on random weights
        head = SaeLatentPooling(sae, chunk_tokens=1024)
    return SparseEncoder(modules=[backbone, head], device=device)


def device_bytes(encoder, device: str) -> tuple[int, int]:
    """(parameter bytes on `device`, the same if the whole SAE were moved there too)."""
    on, off = 0, 0
    for p in encoder.parameters():
        if p.device.type == torch.device(device).type:
            on += p.nbytes
        else:
            off += p.nbytes
    head = encoder[1]
    if device == "cpu" and hasattr(head, "sae") and head.decoder_stays_on_host():
        # host = device: count the decoder as what a GPU run keeps off the device
        off = head.sae.W_dec.nbytes
        on -= off
    return on, on + off


def timed_forwards(modules, batch: int, length: int, vocab: int, device: str, repeats: int):
    """[(best seconds, peak device bytes or None)] of each module on the same `[batch, length]`
    random ids, the modules run in turn (interleaved) `repeats` times after a warm-up round."""
    ids = torch.randint(4, vocab, (batch, length), device=device)
    ids[:, 0] = 1  # BOS
    features = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    cuda = device.startswith("cuda")
    times: list[list[float]] = [[] for _ in modules]
    peaks: list[int | None] = [None for _ in modules]
    for _ in range(repeats + 1):  # the first round warms up
        for i, module in enumerate(modules):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            began = time.perf_counter()
            with torch.inference_mode():
                module(dict(features))
            if cuda:
                torch.cuda.synchronize()
                peaks[i] = torch.cuda.max_memory_allocated()
            times[i].append(time.perf_counter() - began)
    return [(min(t[1:]), peak) for t, peak in zip(times, peaks, strict=True)]


def paper_geometry() -> dict[str, Any]:
    """Tokens/s, peak memory and head overhead of the paper's shapes (random weights)."""
    import gc

    gpu = torch.cuda.is_available()
    device = "cuda:0" if gpu else "cpu"
    scale, dtype = (1, torch.bfloat16) if gpu else (CPU_SCALE, torch.float32)
    shapes = {"documents": (16, 1024), "queries": (400, 40)} if gpu else {
        "documents": (1, 1024), "queries": (25, 40)}
    repeats = 3 if gpu else 2
    rows = {}
    for name in PAPER_MODELS:
        began = time.perf_counter()
        encoder = paper_encoder(name, scale, device, dtype)
        build_s = time.perf_counter() - began
        on, whole = device_bytes(encoder, device)
        vocab = LLAMA_8B["vocab"] // scale
        row: dict[str, Any] = {"build_seconds": build_s, "device_param_bytes": on,
                               "device_param_bytes_whole_sae": whole,
                               "layers": PAPER_MODELS[name][1] + 1,
                               "dim": encoder[1].get_embedding_dimension()}
        for side, (batch, length) in shapes.items():
            (bare, bare_peak), (full, peak) = timed_forwards(
                [encoder[0], encoder], batch, length, vocab, device, repeats)
            row[side] = {"batch": batch, "length": length, "tok_per_s": batch * length / full,
                         "bare_tok_per_s": batch * length / bare, "overhead": full / bare - 1,
                         "peak_bytes": peak, "bare_peak_bytes": bare_peak}
        rows[name] = row
        del encoder
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()
    setting = (f"bf16 on {torch.cuda.get_device_name(0)}, full Llama-3.1-8B widths" if gpu else
               f"CPU fp32, every width / {CPU_SCALE} (hidden {LLAMA_8B['hidden'] // CPU_SCALE}, "
               f"MLP {LLAMA_8B['intermediate'] // CPU_SCALE}, {LLAMA_8B['heads'] // CPU_SCALE} heads "
               f"of 128, vocabulary {LLAMA_8B['vocab'] // CPU_SCALE}, {D_SAE // CPU_SCALE} latents), "
               "all layers; compare ratios, not absolute speeds")
    gib = 2**30
    lines = [
        (f"Random weights, no download: Llama-3.1-8B geometry cut after layer 26 + JumpReLU SAE "
        f"(SPLARE-7B), cut after layer 6 + SAE (SPLARE-2B), all 32 layers + LM head "
        f"(SPLADE-Llama, logits in chunks of 256 tokens). {setting}. Documents: "
        f"{shapes['documents'][0]} x {shapes['documents'][1]} tokens per batch; queries: "
        f"{shapes['queries'][0]} x {shapes['queries'][1]}. Best of {repeats} after a warm-up. "
        "Overhead = encoder forward / bare truncated forward - 1 (SAE or LM head + max-log1p "
        "pooling). Parameter bytes on the device: with the SAE decoder kept on the host "
        "(`SaeLatentPooling._apply`) vs moving the whole SAE."),
        "",
        ("| model | layers | dims | docs tok/s | docs overhead | docs peak GiB | queries tok/s | "
        "queries overhead | queries peak GiB | params on device GiB (decoder on host / whole SAE) |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        d, q = r["documents"], r["queries"]

        def peak(x):
            return f"{x['peak_bytes'] / gib:.1f}" if x["peak_bytes"] is not None else "n/a (CPU)"

        lines.append(
            f"| {name} | {r['layers']} | {r['dim']} | {d['tok_per_s']:.0f} | "
            f"{100 * d['overhead']:+.1f}% | {peak(d)} | {q['tok_per_s']:.0f} | "
            f"{100 * q['overhead']:+.1f}% | {peak(q)} | {r['device_param_bytes'] / gib:.2f} / "
            f"{r['device_param_bytes_whole_sae'] / gib:.2f} |"
        )
    return {"title": "Paper geometry: SPLARE-7B, SPLARE-2B, SPLADE-Llama (random weights)",
            "gpu": gpu, "scale": scale, "rows": rows, "lines": lines}


def write(results: dict[str, Any]) -> None:
    """Merge `results` (sections) into encode.json, re-render encode.md from the whole file."""
    path = OUT / "encode.json"
    data = json.loads(path.read_text()) if path.exists() else {"sections": {}}
    data["sections"].update(results)
    sections = data["sections"]
    load = OUT / "load_memory.json"
    load_ratio = None
    if load.exists():
        load_ratio = json.loads(load.read_text()).get("load_peak_host_ram_ratio")
    data["token_budget_speedup"] = sections.get("token_budget", {}).get("token_budget_speedup")
    data["cache_bytes_ratio"] = sections.get("cache_bytes", {}).get("cache_bytes_ratio")
    data["load_peak_host_ram_ratio"] = load_ratio
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    md = ["# Encoding benchmarks", "", "Headline figures (`results/bench/encode.json`):", ""]
    for key, value in (("token_budget_speedup", data["token_budget_speedup"]),
                       ("cache_bytes_ratio", data["cache_bytes_ratio"]),
                       ("load_peak_host_ram_ratio", load_ratio)):
        source = "results/bench/load_memory.json" if key.startswith("load") else "this benchmark"
        shown = f"{value:.3f}" if isinstance(value, float) else f"null (no figure from {source} yet)"
        md.append(f"- `{key}`: {shown}")
    for name in (*SECTIONS, "paper_geometry"):
        if name in sections:
            s = sections[name]
            md += ["", f"## {s['title']}", "", f"Command: `{s['command']}`  ",
                   f"Machine: {s['machine']}", "", *s["lines"]]
    (OUT / "encode.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--paper-geometry", action="store_true",
                        help="only the paper-geometry benchmark (bf16 on a GPU, scaled on CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", type=int, default=48, help="documents per throughput run")
    parser.add_argument("--budget-docs", type=int, default=300)
    parser.add_argument("--budget-model", default="splade_tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-docs", type=int, default=300)
    parser.add_argument("--cache-model", default="splare_tiny")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_encode.py " + shlex.join(sys.argv[1:])
    results: dict[str, Any] = {}
    if args.paper_geometry:
        results["paper_geometry"] = paper_geometry()
    else:
        only = [s for s in args.only.split(",") if s]
        unknown = sorted(set(only) - set(SECTIONS))
        if unknown:
            raise SystemExit(f"--only: unknown section(s) {unknown}; choose from {SECTIONS}")
        for name in only:
            section_args = argparse.Namespace(**vars(args))
            if name == "token_budget":
                section_args.docs = args.budget_docs
            results[name] = {"latent_vs_vocab": latent_vs_vocab, "token_budget": token_budget,
                             "cache_bytes": cache_bytes}[name](section_args)
            results[name].update(command=command.strip(), machine=machine())
            write({name: results[name]})  # each section is kept as soon as it is measured
        return
    for section in results.values():
        section.update(command=command.strip(), machine=machine())
    write(results)


if __name__ == "__main__":
    main()
