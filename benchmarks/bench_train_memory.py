"""Training memory: peak memory of one training step at 1x, 2x and 4x the tokens per text, with
the old pooling (every chunk's graph kept by autograd) and the new one (models/pooling.py:
arg-max kept, chunks recomputed in backward), same run.

A step is what the trainer does per batch: encode queries and positives through a LoRA'd random
Llama (2 layers, hidden `--d-in`) and a frozen head of the paper's width (Llama Scope TopK SAE,
131,072 latents; or a 128,256-token LM head), the recipe's loss (`harness.train.losses.build_loss`:
in-batch contrastive at tau, FLOPS on both sides), backward, one AdamW step on the LoRA weights.
`pool` cells measure the head alone (forward + backward from states that require grad), the part
that the new path bounds. One fresh child process per cell (benchmarks/memory_probe.py).
Writes `results/bench/train_memory.md` and `.json` (`old_mb` / `new_mb`: the SAE head's training
step at 1x, 2x, 4x).

    python benchmarks/bench_train_memory.py [--pairs 4] [--tokens 32] [--chunk-tokens 128]
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

HEADS = {"sae": 131072, "lm_head": 128256}  # width
MULTIPLIERS = (1, 2, 4)
OUT = REPO_ROOT / "results" / "bench" / "train_memory"
SMALL_VOCAB = 512


def _encoder(head: str, d_in: int, chunk_tokens: int):
    """SparseEncoder: random 2-layer Llama (bidirectional, LoRA r=8 on q/v) -> frozen `head`."""
    from sentence_transformers import SparseEncoder
    from tokenizers import Tokenizer
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    from harness.train.model import add_lora, lora_config
    from models.backbone import CausalLMBackbone

    torch.manual_seed(0)
    vocab = HEADS[head] if head == "lm_head" else SMALL_VOCAB
    config = LlamaConfig(vocab_size=vocab, hidden_size=d_in, intermediate_size=2 * d_in,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, bos_token_id=1, pad_token_id=0,
                         tie_last_hidden_states=False)  # read the raw residual stream
    words = {"<pad>": 0, "<bos>": 1, "<unk>": 2}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(tok_models.WordLevel(words, unk_token="<unk>")),
        bos_token="<bos>", pad_token="<pad>", unk_token="<unk>",
    )
    backbone = CausalLMBackbone(LlamaModel(config), tokenizer, layer=1, bidirectional=True)
    encoder = SparseEncoder(modules=[backbone, random_head(head, d_in, HEADS[head], chunk_tokens)])
    add_lora(encoder, lora_config(8, 8.0, 0.0, ["q_proj", "v_proj"]))
    return encoder, vocab


def child(head: str, impl: str, scope: str, pairs: int, tokens: int, d_in: int, chunk: int) -> dict:
    """Peak MB of one training step (`scope=step`) or of the head's forward + backward (`pool`)."""
    from harness.train.losses import build_loss

    torch.set_num_threads(2)
    use_pooling(impl)
    encoder, vocab = _encoder(head, d_in, chunk)
    generator = torch.Generator().manual_seed(1)

    def features() -> dict[str, torch.Tensor]:
        ids = torch.randint(3, vocab, (pairs, tokens), generator=generator)
        ids[:, 0] = 1
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    batch = [features(), features()]
    if scope == "pool":
        pooling = encoder[1]
        hidden = torch.randn(2 * pairs, tokens, d_in, generator=generator, requires_grad=True)
        mask = torch.ones(2 * pairs, tokens, dtype=torch.bool)

        def step() -> None:
            out = pooling({"token_embeddings": hidden, "attention_mask": mask.long(),
                           "pooling_mask": mask})
            out["sentence_embedding"].sum().backward()
            hidden.grad = None
    else:
        loss = build_loss(encoder, 50.0, distill=False, lambda_query=1e-4, lambda_document=1e-4)
        optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            total = sum(loss([dict(f) for f in batch], None).values())
            total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: optimizer state and lazy initialisation stay out of the measurement
    return {"peak_mb": round(peak_mb(step), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="queries per batch (+ as many positives)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per text at 1x")
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--child", nargs=4, metavar=("HEAD", "IMPL", "SCOPE", "MULT"))
    args = parser.parse_args()
    if args.child:
        head, impl, scope, mult = args.child
        print(json.dumps(child(head, impl, scope, args.pairs, args.tokens * int(mult), args.d_in,
                               args.chunk_tokens)))
        return
    sizes = ["--pairs", str(args.pairs), "--tokens", str(args.tokens), "--d-in", str(args.d_in),
             "--chunk-tokens", str(args.chunk_tokens)]
    heads: dict[str, dict[str, list[float]]] = {}
    for head in HEADS:
        cells: dict[str, list[float]] = {}
        for scope, prefix in (("step", ""), ("pool", "pool_")):
            for impl in ("old", "new"):
                cells[f"{prefix}{impl}_mb"] = [
                    in_child(Path(__file__), [head, impl, scope, str(m), *sizes])["peak_mb"]
                    for m in MULTIPLIERS
                ]
                print(head, scope, impl, cells[f"{prefix}{impl}_mb"], flush=True)
        heads[head] = cells
    command = ("python benchmarks/bench_train_memory.py " + shlex.join(sys.argv[1:])).strip()
    machine = f"{platform.machine()}, torch {torch.__version__}, CPU, fp32"
    tokens = [args.tokens * m for m in MULTIPLIERS]
    record = {
        "command": command, "machine": machine, "multipliers": list(MULTIPLIERS),
        "tokens_per_text": tokens, "pairs": args.pairs, "texts_per_step": 2 * args.pairs,
        "d_in": args.d_in, "chunk_tokens": args.chunk_tokens, "widths": HEADS,
        "old_mb": heads["sae"]["old_mb"], "new_mb": heads["sae"]["new_mb"], "heads": heads,
    }
    OUT.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Training memory: memory-bounded pooling (new) vs every chunk's graph kept (old)",
        "",
        f"Command: `{command}`  ",
        (f"Machine: {machine}. Step = {args.pairs} queries + {args.pairs} positives through a "
        f"random 2-layer Llama (hidden {args.d_in}, bidirectional, LoRA r=8) and a frozen head, "
        f"contrastive + FLOPS loss, backward, AdamW step; `chunk_tokens={args.chunk_tokens}`. "
        "Head only = the head's forward + backward from states that require grad. Peak = "
        "resident-set high-water mark above the resident set before the step (after one "
        "warm-up step), one fresh process per cell."),
        "",
        "| head (width) | measured | tokens/text | old (MB) | new (MB) | new / old |",
        "|---|---|---|---|---|---|",
    ]
    for head, cells in heads.items():
        for scope, prefix in (("training step", ""), ("head only", "pool_")):
            for i, n in enumerate(tokens):
                old, new = cells[f"{prefix}old_mb"][i], cells[f"{prefix}new_mb"][i]
                ratio = f"{new / old:.3f}" if old > 0 else ""
                lines.append(f"| {head} ({HEADS[head]}) | {scope} | {n} | {old} | {new} | {ratio} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
