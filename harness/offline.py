"""Offline mode of a harness run: decided once, before any HF library reads the flags.

Reachability, access checks and the one-line hub errors live in `models.hub` (the models load
from the hub); they are re-exported here for the harness's own callers.
"""

from __future__ import annotations

from models.hub import (
    HubAccessError,
    HubUnavailableError,
    hub_reachable,
    require_local_or_hub,
    set_offline_env,
)

__all__ = [
    "DatasetNotCachedError",
    "HubAccessError",
    "HubUnavailableError",
    "configure_offline",
    "hub_reachable",
    "require_local_or_hub",
]

HUB_MODES = ("auto", "offline", "online")


class DatasetNotCachedError(RuntimeError):
    """An mteb task's dataset is needed offline and is not in any local cache."""


def configure_offline(mode: str = "auto") -> bool:
    """Set HF offline mode so nothing hangs on retries; returns True when offline.

    mode: "auto" (offline when the hub is unreachable), "offline" (always) or "online".
    """
    if mode not in HUB_MODES:
        raise ValueError(f"run.hub must be one of {'|'.join(HUB_MODES)}, got '{mode}'")
    offline = mode == "offline" or (mode == "auto" and not hub_reachable())
    if offline:
        set_offline_env()
    return offline
