"""Encoding throughput: SPLARE-tiny (SAE latents) vs the vocabulary head on the same backbone.

Both encoders read the embedded Gemma-3-270M at the same layer and encode the same documents
of the embedded multilingual task in the same process, one after the other (warm-up batch
first, not timed). Writes `results/bench/encode.md`.

    python benchmarks/bench_encode.py [--docs 120] [--threads 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from harness.config import compose_config
from harness.paths import REPO_ROOT

MODELS = ("splare_tiny", "splade_tiny_llm")


def documents(n: int) -> list[str]:
    """The first `n` documents of the embedded task (all its languages, in subset order)."""
    from harness.tasks.local import get_local_task

    task = get_local_task("EmbeddedMultilingualRetrieval", None)
    task.load_data()
    texts: list[str] = []
    for subset in task.hf_subsets:
        corpus = task.dataset[subset]["test"]["corpus"]
        texts += [row["text"] for row in corpus]
    step = max(1, len(texts) // n)  # spread over languages
    return texts[::step][:n]


def measure(config: str, texts: list[str], batch_size: int) -> dict[str, float]:
    """Tokens/s and mean nnz of one model config on `texts` (uncapped encoder)."""
    import models

    cfg = compose_config([f"model={config}"]).model
    encoder = models.build_encoder(cfg)
    tokenizer = encoder.tokenizer
    max_length = int(cfg.backbone.max_length)
    n_tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])
    encoder.encode_document(texts[:batch_size], batch_size=batch_size, convert_to_sparse_tensor=True)
    start = time.perf_counter()
    emb = encoder.encode_document(texts, batch_size=batch_size, convert_to_sparse_tensor=True,
                                  show_progress_bar=True)
    seconds = time.perf_counter() - start
    nnz = emb.coalesce()._nnz() / len(texts)
    return {"tokens": n_tokens, "seconds": seconds, "tok_per_s": n_tokens / seconds,
            "dim": int(emb.shape[1]), "nnz_per_doc": nnz}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench" / "encode.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = documents(args.docs)
    rows = {name: measure(name, texts, args.batch_size) for name in MODELS}
    base = rows["splade_tiny_llm"]["tok_per_s"]
    lines = [
        "# Encoding throughput: latent (SAE) head vs vocabulary head, same backbone",
        "",
        (
            f"Command: `python benchmarks/bench_encode.py --docs {args.docs} --threads {args.threads} "
            f"--batch-size {args.batch_size}`  "
        ),
        (
            f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{args.threads} thread(s), fp32, CPU; {len(texts)} documents of "
            "EmbeddedMultilingualRetrieval (8 languages), encoded uncapped, same process, "
            "warm-up batch excluded."
        ),
        "",
        "| model | tokens | seconds | tokens/s | dims | nnz/doc (uncapped) | speed vs vocabulary head |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['tokens']} | {r['seconds']:.1f} | {r['tok_per_s']:.0f} | {r['dim']} | "
            f"{r['nnz_per_doc']:.0f} | {r['tok_per_s'] / base:.2f}x |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
