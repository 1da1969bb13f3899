"""Entry locks: jobs never encode the same entry twice at once, and a killed holder's lock is
recovered (the survivor or a rerun finishes, the entry is never corrupt)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness.paths import REPO_ROOT
from harness.search.lock import FileLock

CHILD = r'''
import logging, os, sys, time
from pathlib import Path
from datasets import Dataset
from mteb.models import ModelMeta
from sentence_transformers import SparseEncoder
from harness.search import SparseSearchModel

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
model_dir, cache, log, go, pause = sys.argv[1:6]
encoder = SparseEncoder(model_dir, device="cpu")
encoder.max_seq_length = 24
real = encoder.encode_document

def logged(batch, **kwargs):
    if batch != ["dimension probe"]:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {len(batch)}\n")
        time.sleep(float(pause))
    return real(batch, **kwargs)

encoder.encode_document = logged
texts = [f"text {i} about the flow over a wing at speed {i}" for i in range(12)]
meta = ModelMeta.create_empty(overwrites={"name": "t/lock", "revision": "r", "model_type": ["sparse"]})
model = SparseSearchModel(encoder, meta, top_k_query=8, top_k_document=8, backend={"name": "exact"},
                          cache_dir=Path(cache), stats_dir=None, show_progress=False,
                          encoding_key="lock-test", max_tokens_per_batch=48)
print("ready", file=sys.stderr, flush=True)
while not Path(go).exists():
    time.sleep(0.1)
data = Dataset.from_dict({"id": [str(i) for i in range(12)], "text": texts})
model.encodings(data, "document", task_name="T", subset="default", split="test")
print("done", file=sys.stderr, flush=True)
'''


def _wait_for(predicate, what: str, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_stale_locks_are_recovered_and_live_ones_waited_for(tmp_path: Path):
    path = tmp_path / "entry.lock"
    # a dead holder on this host: broken at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "nonce": "a"}))
    with FileLock(path, poll=0.05) as lock:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists() and lock._record is None

    # a holder on another host: waited for while it beats, broken once its mtime is old
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "nonce": "b"}))
    got = threading.Event()

    def take():
        with FileLock(path, stale_after=2.0, heartbeat=0.5, poll=0.05):
            got.set()

    thread = threading.Thread(target=take)
    thread.start()
    time.sleep(1.0)
    assert not got.is_set()  # fresh foreign lock: waiting
    os.utime(path, (time.time() - 10, time.time() - 10))
    thread.join(timeout=10)
    assert got.is_set() and not path.exists()

    # the holder's heartbeat keeps its lock fresh past stale_after
    with FileLock(path, stale_after=1.0, heartbeat=0.2):
        time.sleep(1.5)
        assert time.time() - path.stat().st_mtime < 1.0
    with pytest.raises(ValueError, match="heartbeat"):
        FileLock(path, stale_after=1.0, heartbeat=2.0)


def test_racing_jobs_encode_once_and_a_killed_holder_is_taken_over(tmp_path: Path):
    model_dir = Path(importlib.util.find_spec("cognition").origin).parent / "model"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cache, log = tmp_path / "cache", tmp_path / "calls.log"
    go_victim, go = tmp_path / "go_victim", tmp_path / "go"
    log.touch()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}

    def start(name: str, go: Path, pause: float) -> tuple[subprocess.Popen, Path]:
        err = tmp_path / f"{name}.err"
        args = [sys.executable, str(script), str(model_dir), str(cache), str(log), str(go),
                str(pause)]
        return subprocess.Popen(args, stderr=err.open("w"), env=env, cwd=REPO_ROOT), err

    def calls() -> list[list[str]]:
        return [line.split() for line in log.read_text().splitlines()]

    # all three load at once; the victim starts first and blocks inside its first batch
    victim, victim_err = start("victim", go_victim, 600.0)
    racers = [start(f"racer{i}", go, 0.2) for i in range(2)]
    try:
        _wait_for(lambda: all("ready" in e.read_text() for e in [victim_err, *(e for _, e in racers)]),
                  "children loaded")
        go_victim.touch()
        _wait_for(lambda: any(int(p) == victim.pid for p, _ in calls()), "victim encoding")
        go.touch()
        _wait_for(lambda: all("waiting for" in e.read_text() for _, e in racers), "racers wait")
        assert not list(cache.glob("*.npz"))  # nothing written while the holder encodes
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for proc, err in racers:
            proc.wait(timeout=240)
            assert proc.returncode == 0, err.read_text()[-2000:]
    finally:
        for proc in [victim, *(p for p, _ in racers)]:
            if proc.poll() is None:
                proc.kill()
    encoders = {int(p) for p, _ in calls()} - {victim.pid}
    assert len(encoders) == 1  # exactly one survivor encoded; the other read its entry
    errs = [e.read_text() for _, e in racers]
    assert sum("removing stale lock" in e for e in errs) >= 1
    assert sum("encoded by another job" in e for e in errs) == 1
    assert not list(cache.glob("*.lock")) and not list(cache.glob(".*tmp"))

    # a rerun resumes: the entry is complete and valid, nothing is encoded again
    from datasets import Dataset
    from mteb.models import ModelMeta
    from sentence_transformers import SparseEncoder

    from harness.search import SparseSearchModel
    from harness.search.csr import top_k_rows, torch_sparse_to_csr

    encoder = SparseEncoder(str(model_dir), device="cpu")
    encoder.max_seq_length = 24
    texts = [f"text {i} about the flow over a wing at speed {i}" for i in range(12)]
    meta = ModelMeta.create_empty(
        overwrites={"name": "t/lock", "revision": "r", "model_type": ["sparse"]}
    )
    rerun = SparseSearchModel(
        encoder, meta, top_k_query=8, top_k_document=8, backend={"name": "exact"},
        cache_dir=cache, stats_dir=None, show_progress=False, encoding_key="lock-test",
        max_tokens_per_batch=48,
    )
    side = rerun._side(
        "document", Dataset.from_dict({"id": [str(i) for i in range(12)], "text": texts}),
        "T", "default", "test",
    )
    assert side.encode["from_cache"]
    expected = top_k_rows(
        torch_sparse_to_csr(encoder.encode_document(texts, convert_to_sparse_tensor=True)), 8
    )
    assert np.array_equal(side.matrix.indices, expected.indices)
    np.testing.assert_allclose(side.matrix.data, expected.data, rtol=1e-5, atol=2e-5)
