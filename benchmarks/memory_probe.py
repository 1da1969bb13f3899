"""Shared by the memory benchmarks: peak resident memory of one call in a fresh process, the
pre-change pooling loop (the baseline), and in-memory random SPLARE / SPLADE-LLM encoders.

Peak memory is the process's resident-set high-water mark (`VmHWM`, reset through
`/proc/self/clear_refs`) during the call, minus the resident memory just before it: what the call
adds on top of the loaded weights and inputs. Every measurement runs in its own child process
with `MALLOC_MMAP_THRESHOLD_=65536`, so freed tensors go back to the OS and one measurement
cannot inherit another's heap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def peak_mb(fn: Callable[[], Any]) -> float:
    """MB the resident set grows to while `fn()` runs, above the resident set just before it."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def in_child(script: Path, args: list[str]) -> dict[str, Any]:
    """Run `python <script> --child <args>` in a fresh process; its last stdout line is JSON."""
    env = {**os.environ, **MALLOC_ENV}
    proc = subprocess.run([sys.executable, str(script), "--child", *args], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def old_max_log1p_pool(hidden, mask, encode, dim, chunk_tokens, params=()) -> torch.Tensor:
    """The pooling loop before models/pooling.py (commit 474ecf6), verbatim: per-chunk
    out-of-place relu / log1p / mask, every chunk's graph kept by autograd."""
    batch, n_tokens, _ = hidden.shape
    step = max(1, chunk_tokens // max(batch, 1))
    pooled = torch.zeros(batch, dim, dtype=torch.float32, device=hidden.device)
    for start in range(0, n_tokens, step):
        chunk_mask = mask[:, start : start + step]
        if not bool(chunk_mask.any()):
            continue
        scores = encode(hidden[:, start : start + step])
        weights = torch.log1p(torch.relu(scores.float())) * chunk_mask.unsqueeze(-1)
        pooled = torch.maximum(pooled, weights.amax(dim=1))
    return pooled


def use_pooling(impl: str) -> None:
    """Make both heads pool with `impl`: `new` (models.pooling) or `old` (the baseline above)."""
    import models.sae_pooling
    import models.vocab_head
    from models.pooling import max_log1p_pool

    fn = {"new": max_log1p_pool, "old": old_max_log1p_pool}[impl]
    models.sae_pooling.max_log1p_pool = fn
    models.vocab_head.max_log1p_pool = fn


def random_head(head: str, d_in: int, width: int, chunk_tokens: int) -> torch.nn.Module:
    """A frozen random head: `sae` = TopK SAE (k=64, Llama Scope's family) with `width` latents,
    `lm_head` = an untied LM head over a `width`-token vocabulary."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from models.sae_pooling import SaeLatentPooling
    from models.vocab_head import VocabLogitsPooling

    torch.manual_seed(0)
    if head == "sae":
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=width, k=64,
                                    metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post")))
        return SaeLatentPooling(sae, chunk_tokens=chunk_tokens)
    weight = torch.nn.Parameter(torch.randn(width, d_in) / d_in**0.5, requires_grad=False)
    return VocabLogitsPooling(weight, width, d_in, chunk_tokens=chunk_tokens)
