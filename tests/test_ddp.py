"""Multi-process training (DDP over gloo, two CPU processes) through the documented command,
`torchrun --nproc_per_node 2 -m harness.train ...`, against single-process training at the same
global batch and seed, over one epoch: the logged loss curves agree within 1e-5 (relative), and
the adapters within 1e-4.

The run is KL distillation (a per-query loss, so the mean over the global batch is the mean of
the per-process means) with the FLOPS weights at 0: FLOPS is a batch statistic, computed per
process under DDP as in the stack's SPLADE trainers, so it would differ by design.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import _save_tiny_gemma, _save_tiny_sae

from harness.paths import REPO_ROOT

TOLERANCE = 1e-5  # relative; float reduction order is all that differs
PAIRS = [("cat", "red"), ("dog", "blue"), ("bird", "green"), ("boat", "red"), ("car", "blue"),
         ("tree", "green"), ("house", "red"), ("river", "blue"), ("sun", "green"), ("moon", "red"),
         ("rain", "blue"), ("road", "green"), ("sea", "red"), ("mat", "blue"), ("cat", "green"),
         ("dog", "red")]
#: 16 rows, no text shared between rows (the no-duplicates sampler then keeps the shuffled order,
#: so both runs see the same global batches): 4 steps of a global batch of 4, one epoch
MORE_ROWS = [
    {"query": f"{noun} {colour}", "positive": f"the {colour} {noun} sat",
     "negatives": [f"a {colour} {noun} ran", f"the {noun} {colour} sang"],
     "scores": [8.0 - i % 3, float(i % 4) - 1.0, float(i % 5) - 2.0]}
    for i, (noun, colour) in enumerate(PAIRS)
]


def _command(assets: dict[str, Path], out: Path) -> list[str]:
    return [
        "-m", "harness.train", "train=smoke", "model=splare_tiny",
        "model.backbone.id=null", f"model.backbone.path={assets['lm']}", "model.backbone.layer=1",
        "model.backbone.device=cpu", "model.backbone.max_length=16",
        "model.sae.release=null", "model.sae.id=null", f"model.sae.path={assets['sae']}",
        "model.sae.fallback=null", "data=jsonl", f"data.path={assets['jsonl']}", "data.negatives=2",
        "train.batch_size=4", "train.steps=4", "train.lr=1e-3", "train.lora.r=4",
        "train.max_length=16", "train.logging_steps=1", "train.warmup_ratio=0.0",
        "train.flops.query=0", "train.flops.document=0", "train.hub=offline",
        f"train.output_dir={out}",
    ]


def _run(args: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HARNESS_DEBUG": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(folder: Path) -> list[float]:
    lines = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process_training(tmp_path):
    assets = {"lm": _save_tiny_gemma(tmp_path / "lm"), "sae": _save_tiny_sae(tmp_path / "sae"),
              "jsonl": tmp_path / "train.jsonl"}
    assets["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in MORE_ROWS))
    _run(_command(assets, tmp_path / "single"))
    _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
          *_command(assets, tmp_path / "ddp")])
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["processes"] == 2
    single, ddp = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    print("single-process loss:", single, "\nDDP (2 x gloo) loss:", ddp)
    assert len(single) == len(ddp) == 4
    assert len({round(x, 3) for x in single}) > 1  # the curve moves
    assert ddp == pytest.approx(single, rel=TOLERANCE)
    from safetensors.torch import load_file

    first = load_file(str(tmp_path / "single" / "adapter_model.safetensors"))
    second = load_file(str(tmp_path / "ddp" / "adapter_model.safetensors"))
    for name, weight in first.items():
        torch.testing.assert_close(second[name], weight, rtol=1e-4, atol=1e-6)
