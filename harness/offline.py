"""Hub reachability and the one-line errors for ids that cannot be fetched offline."""

from __future__ import annotations

import functools
import os
import socket


class HubUnavailableError(RuntimeError):
    """A model, SAE or dataset id could not be fetched and no local copy was configured."""

    def __init__(self, hub_id: str, override: str, kind: str = "model"):
        self.hub_id = hub_id
        self.override = override
        super().__init__(
            f"cannot fetch {kind} '{hub_id}' from the Hugging Face hub (offline or unreachable); "
            f"point the harness at a local copy with the Hydra override `{override}=/path/to/local/copy`"
        )


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 2.0) -> bool:
    """True when huggingface.co answers on port 443 and HF offline mode is not forced."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def configure_offline(mode: str = "auto") -> bool:
    """Set HF offline mode so nothing hangs on retries; returns True when offline.

    mode: "auto" (offline when the hub is unreachable), "offline" (always) or "online".
    """
    if mode not in ("auto", "offline", "online"):
        raise ValueError(f"run.hub must be one of auto|offline|online, got '{mode}'")
    offline = mode == "offline" or (mode == "auto" and not hub_reachable())
    if offline:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ[var] = "1"
        hub_reachable.cache_clear()
    return offline


def require_local_or_hub(hub_id: str, local_path: str | None, override: str, kind: str = "model") -> str:
    """Return what to load: the local path when given, else the hub id when the hub is reachable.

    Raises HubUnavailableError (one line, naming the id and the override) otherwise, before
    any download is attempted.
    """
    if local_path:
        if not os.path.exists(local_path):
            raise FileNotFoundError(f"{override}={local_path}: no such file or folder")
        return str(local_path)
    if os.path.exists(hub_id):
        return hub_id
    if not hub_reachable():
        raise HubUnavailableError(hub_id, override, kind)
    return hub_id
