"""Inference memory of the pooling heads: peak memory of one 1024-token batch, before (the
out-of-place loop) and after (in-place relu / log1p / mask, models/pooling.py), same run.

Each head runs on random token states `[texts, tokens, d_in]` under `torch.no_grad()` with the
paper's widths (Llama Scope SAE: 131,072 TopK latents; Llama-3 LM head: 128,256 tokens) and its
config's `chunk_tokens` (SAE 1024, LM head 256); one child process per measurement
(benchmarks/memory_probe.py). Writes `results/bench/pooling_memory.md` and `.json`.

    python benchmarks/bench_pooling_memory.py [--texts 4] [--tokens 256] [--d-in 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import torch
from memory_probe import in_child, peak_mb, random_head, use_pooling

from harness.paths import REPO_ROOT

HEADS = {"sae": (131072, 1024), "lm_head": (128256, 256)}  # width, chunk_tokens
OUT = REPO_ROOT / "results" / "bench" / "pooling_memory"


def child(head: str, impl: str, texts: int, tokens: int, d_in: int) -> dict[str, float]:
    """Peak MB of one no-grad head forward over `texts` x `tokens` random states."""
    torch.set_num_threads(2)
    use_pooling(impl)
    width, chunk = HEADS[head]
    module = random_head(head, d_in, width, chunk).eval()
    hidden = torch.randn(texts, tokens, d_in, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(texts, tokens, dtype=torch.bool)
    features = {"token_embeddings": hidden, "attention_mask": mask.long(), "pooling_mask": mask}
    with torch.no_grad():
        module(dict(features))  # warm-up: lazy initialisation stays out of the measurement
        out: dict[str, torch.Tensor] = {}
        peak = peak_mb(lambda: out.update(module(dict(features))))
    return {"peak_mb": round(peak, 1), "checksum": float(out["sentence_embedding"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--child", nargs=2, metavar=("HEAD", "IMPL"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.texts, args.tokens, args.d_in)))
        return
    sizes = ["--texts", str(args.texts), "--tokens", str(args.tokens), "--d-in", str(args.d_in)]
    rows = []
    for head, (width, chunk) in HEADS.items():
        old = in_child(Path(__file__), [head, "old", *sizes])
        new = in_child(Path(__file__), [head, "new", *sizes])
        if abs(old["checksum"] - new["checksum"]) > 1e-3 * max(1.0, abs(old["checksum"])):
            raise SystemExit(f"{head}: old and new pooling disagree ({old} vs {new})")
        rows.append({"head": head, "width": width, "chunk_tokens": chunk, "old_mb": old["peak_mb"],
                     "new_mb": new["peak_mb"], "ratio": round(new["peak_mb"] / old["peak_mb"], 3)})
    command = "python benchmarks/bench_pooling_memory.py " + shlex.join(sys.argv[1:])
    machine = f"{platform.machine()}, torch {torch.__version__}, CPU, fp32"
    record = {"command": command.strip(), "machine": machine, "texts": args.texts,
              "tokens_per_text": args.tokens, "d_in": args.d_in, "rows": rows}
    OUT.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Pooling memory at inference: in-place relu / log1p / mask vs the out-of-place loop",
        "",
        f"Command: `{command.strip()}`  ",
        (f"Machine: {machine}. One batch of {args.texts} texts x {args.tokens} tokens "
        f"= {args.texts * args.tokens} tokens, random states of width {args.d_in}, head forward "
        "under `torch.no_grad()` (SAE encode or LM-head logits + pooling). Peak = resident-set "
        "high-water mark above the resident set before the call, one fresh process per cell; "
        "old and new give the same pooled vectors (checked)."),
        "",
        "| head | width | chunk_tokens | before (MB) | after (MB) | after / before |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['head']} | {r['width']} | {r['chunk_tokens']} | {r['old_mb']} | {r['new_mb']} | "
              f"{r['ratio']} |" for r in rows]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
