"""Offline behaviour: an unreachable hub id fails in one line naming the id and the override;
the reachability check honours proxies and mirrors; refused repositories and missing task data
fail in one line before any model loads."""

import os
import socket
import subprocess
import sys
import threading

import httpx2
import pytest
from huggingface_hub import close_session
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from harness.offline import (
    HubAccessError,
    HubUnavailableError,
    configure_offline,
    hub_reachable,
    require_local_or_hub,
)
from harness.paths import REPO_ROOT


def test_unreachable_hub_id_names_id_and_override(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    with pytest.raises(HubUnavailableError) as info:
        require_local_or_hub("meta-llama/Llama-3.1-8B", None, "model.backbone.path")
    message = str(info.value)
    assert "\n" not in message
    assert "'meta-llama/Llama-3.1-8B'" in message and "model.backbone.path=" in message


def test_local_copy_is_used_and_a_missing_one_is_named(tmp_path):
    assert require_local_or_hub("org/model", str(tmp_path), "model.backbone.path") == str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"model.sae.path=.*nowhere"):
        require_local_or_hub("org/sae", str(tmp_path / "nowhere"), "model.sae.path")


def test_configure_offline_sets_hf_variables(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert configure_offline("offline") is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    with pytest.raises(ValueError, match="run.hub must be one of"):
        configure_offline("sometimes")


# --- the hub reached through proxies and mirrors, refused repositories, offline task data ---



def _serve_once(reply: bytes) -> tuple[int, list[bytes]]:
    """A loopback server that records the first request it gets and answers `reply`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen: list[bytes] = []

    def handle() -> None:
        conn, _ = server.accept()
        with conn:
            seen.append(conn.recv(4096))
            conn.sendall(reply)
        server.close()

    threading.Thread(target=handle, daemon=True).start()
    return server.getsockname()[1], seen


@pytest.fixture
def online_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once, at import
    close_session()  # the shared client reads the proxy variables when it is created
    hub_reachable.cache_clear()
    yield monkeypatch
    close_session()
    hub_reachable.cache_clear()


def test_reachability_goes_through_the_configured_proxy(online_env):
    port, seen = _serve_once(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    online_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    assert hub_reachable() is False  # the proxy refused the tunnel
    assert seen and seen[0].startswith(b"CONNECT huggingface.co:443")


def test_reachability_asks_the_configured_endpoint(online_env):
    port, seen = _serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub_reachable() is True
    assert seen[0].startswith(b"HEAD /api/models")


def _refusal(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api"))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_repositories_fail_in_one_line_before_loading(online_env, status):
    import huggingface_hub

    import models
    from models import build

    def refuse(repo_id, **kwargs):
        if status == 403:
            raise GatedRepoError("gated", response=_refusal(403))
        raise HfHubHTTPError("unauthorized", response=_refusal(401))

    def never(*args, **kwargs):
        raise AssertionError("weights loaded before the access check")

    online_env.setattr(huggingface_hub, "auth_check", refuse)
    online_env.setattr("models.hub.hub_reachable", lambda: True)
    online_env.setattr(build, "CausalLMBackbone", type("Never", (), {"from_pretrained": never}))
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO_ROOT / "conf" / "model" / "splare7b.yaml")
    with pytest.raises(HubAccessError) as info:
        models.build_encoder(cfg)
    message = str(info.value)
    assert "\n" not in message and "meta-llama/Llama-3.1-8B" in message
    assert "HF_TOKEN" in message and "model.backbone.path" in message
    assert ("gated" in message) == (status == 403)


def test_offline_hub_task_data_fails_in_one_line_before_the_model(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    out = subprocess.run(
        [sys.executable, "-m", "harness", "model=splare7b", "benchmark=mteb_eng",
         "run.tasks=[ArguAna]", f"run.results_dir={tmp_path}/r", f"hydra.run.dir={tmp_path}/h"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: task ArguAna needs dataset 'mteb/arguana'"), last
    assert "hf download" in last and "Llama" not in last  # before the model: no model error
