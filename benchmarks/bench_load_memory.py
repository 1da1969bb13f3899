"""Host memory of loading a truncated decoder: weights straight to the device vs the old path.

A random Llama (default 8 layers, hidden 1024, 32k vocabulary, untied head, bfloat16, sharded
safetensors) is saved to a temporary folder and cut after layer 2, three ways, each in a fresh
child process (benchmarks/memory_probe.py: peak resident memory during the call, above the
resident memory just before it):

- `old`: the previous path, `CausalLMBackbone.from_pretrained` without a device (the truncated
  model is built whole in host memory), then `.to(device)`;
- `new`: `CausalLMBackbone.from_pretrained(..., device=device)` (`device_map`: each tensor is read
  from the memory-mapped shards and placed on the device);
- `whole`: the untruncated model loaded the old way (reference for "nothing above the read-out
  layer is read": the truncated loads should stay near (layer + 1) / n_layers of it plus the
  embeddings).

Each measurement covers the load and a first 4-token forward pass: the shards are memory-mapped,
and a weight counts in the resident set only once touched, as encoding will.

On a CPU-only machine the device is host memory, so `new` and `old` must come out about equal:
the gain of `new` needs an accelerator (`--device cuda:0`). Writes
`results/bench/load_memory.md` and `.json` (`load_peak_host_ram_ratio` = new / old).

    python benchmarks/bench_load_memory.py [--device cpu] [--layers 8] [--hidden 1024] [--layer 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from memory_probe import in_child, peak_mb

from harness.paths import REPO_ROOT

OUT = REPO_ROOT / "results" / "bench" / "load_memory"
WAYS = ("old", "new", "whole")


def save_checkpoint(folder: Path, n_layers: int, hidden: int) -> dict[str, float]:
    """A random bfloat16 Llama (head dim 64, 4 KV heads, MLP 2.75x) and a word tokenizer."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from tiny_models import save_word_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=hidden * 11 // 4,
        num_hidden_layers=n_layers, num_attention_heads=hidden // 64, num_key_value_heads=4,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="100MB")
    save_word_tokenizer(folder, ["the", "read", "out", "check"])
    sizes = {
        "checkpoint_mb": sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**20,
        "shards": len(list(folder.glob("*.safetensors"))),
    }
    return sizes


def child(way: str, folder: str, layer: int, device: str) -> dict[str, float]:
    """Peak host MB of one load (`way` in WAYS) plus a 4-token forward, and parameter MB."""
    import transformers
    from transformers import AutoModel

    from models.backbone import CausalLMBackbone

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    loaded: list[torch.nn.Module] = []

    def load() -> None:
        if way == "new":
            model = CausalLMBackbone.from_pretrained(
                folder, layer, dtype="bfloat16", bidirectional=False, device=device
            )
        elif way == "old":
            model = CausalLMBackbone.from_pretrained(
                folder, layer, dtype="bfloat16", bidirectional=False
            ).to(device)
        else:
            model = AutoModel.from_pretrained(folder, dtype=torch.bfloat16).to(device)
        base = model.model if isinstance(model, CausalLMBackbone) else model
        with torch.no_grad():
            base(input_ids=torch.tensor([[1, 4, 5, 6]], device=device))
        loaded.append(model)

    peak = peak_mb(load)
    params = sum(p.numel() * p.element_size() for p in loaded[0].parameters()) / 2**20
    return {"peak_mb": peak, "param_mb": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.way, args.folder, args.layer, args.device)))
        return
    if not 0 <= args.layer < args.layers:
        raise SystemExit(f"--layer={args.layer} must be in 0..{args.layers - 1}")
    command = "python benchmarks/bench_load_memory.py " + shlex.join(sys.argv[1:])
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = save_checkpoint(Path(tmp), args.layers, args.hidden)
        runs: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):  # interleaved, so drift hits every way alike
            for way in WAYS:
                runs[way].append(in_child(script, [
                    "--way", way, "--folder", tmp, "--layer", str(args.layer),
                    "--device", args.device,
                ]))
    peak = {way: statistics.median(r["peak_mb"] for r in runs[way]) for way in WAYS}
    params = {way: runs[way][0]["param_mb"] for way in WAYS}
    result = {
        "command": command,
        "machine": f"{platform.machine()}, torch {torch.__version__}, device {args.device}",
        "model": {"layers": args.layers, "hidden": args.hidden, "cut_after_layer": args.layer,
                  "dtype": "bfloat16", **sizes},
        "peak_host_mb": peak,
        "peak_host_mb_runs": {way: [r["peak_mb"] for r in runs[way]] for way in WAYS},
        "param_mb": params,
        "load_peak_host_ram_ratio": peak["new"] / peak["old"],
        "truncated_vs_whole_peak_ratio": peak["new"] / peak["whole"],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    OUT.with_suffix(".md").write_text(report(result, args.device))
    print(OUT.with_suffix(".md").read_text())


def report(result: dict, device: str) -> str:
    """The Markdown table of `result`."""
    model, peak, params = result["model"], result["peak_host_mb"], result["param_mb"]
    rows = {
        "old": "truncated, built in host memory, then `.to(device)`",
        "new": "truncated, `device_map` straight to the device",
        "whole": "all layers, old way (reference)",
    }
    lines = [
        "# Loading a truncated decoder: peak host memory",
        "",
        f"Command: `{result['command']}`  ",
        (f"Machine: {result['machine']}; median of {len(result['peak_host_mb_runs']['old'])} "
        "fresh child processes per way (peak resident memory during the load and a first "
        "4-token forward, above the resident memory just before them).  "),
        (f"Checkpoint: random Llama, {model['layers']} layers, hidden {model['hidden']}, "
        f"bfloat16, {model['checkpoint_mb']:.0f} MB in {model['shards']} safetensors shards; "
        f"cut after layer {model['cut_after_layer']}."),
        "",
        "| way | load | parameters MB | peak host MB | vs old |",
        "|---|---|---|---|---|",
    ]
    for way, what in rows.items():
        lines.append(f"| {way} | {what} | {params[way]:.0f} | {peak[way]:.0f} | "
                     f"{peak[way] / peak['old']:.2f}x |")
    lines += [
        "",
        (f"`load_peak_host_ram_ratio` (new / old) = {result['load_peak_host_ram_ratio']:.2f}; "
        f"truncated / whole = {result['truncated_vs_whole_peak_ratio']:.2f}."),
    ]
    if device == "cpu":
        lines += [
            "",
            ("The device here is host memory (no accelerator on this machine), so `new` cannot "
            "hold less than the weights it loads: the two paths should match, and the saving "
            "of `device_map` needs `--device cuda:0`. What this run does show is that nothing "
            "above the read-out layer is read: the truncated loads stay near their own "
            "parameter size, far below the whole model (tests/test_attention.py also records "
            "which tensors a load materialises)."),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
