"""The Hugging Face hub as the models see it: reachability, access, and one-line failures.

Everything here runs before any weights load. `hub_reachable` asks the configured endpoint
(`HF_ENDPOINT`) over HTTP through huggingface_hub's own session, so `HTTPS_PROXY` / `HTTP_PROXY`
and custom mirrors are honoured; `check_access` turns a gated repository or a missing token
(HTTP 401/403) into one line naming the id and what to do.
"""

from __future__ import annotations

import functools
import os

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class HubUnavailableError(RuntimeError):
    """A model, SAE or dataset id could not be fetched and no local copy was configured."""

    def __init__(self, hub_id: str, override: str, kind: str = "model"):
        self.hub_id = hub_id
        self.override = override
        super().__init__(
            f"cannot fetch {kind} '{hub_id}' from the Hugging Face hub (offline or unreachable); "
            f"point the harness at a local copy with the Hydra override "
            f"`{override}=/path/to/local/copy`"
        )


class HubAccessError(RuntimeError):
    """The hub answered but refused the repository (gated, private, missing token or id)."""


def offline_forced() -> bool:
    """True when `HF_HUB_OFFLINE` forces offline mode."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def endpoint() -> str:
    """The hub endpoint in use: `HF_ENDPOINT` when set (a mirror), else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the endpoint answers an HTTP request and offline mode is not forced.

    Uses huggingface_hub's HTTP session (httpx, `trust_env`), so the proxy variables and
    `HF_ENDPOINT` apply exactly as they will for the downloads that follow.
    """
    if offline_forced():
        return False
    from huggingface_hub import get_session

    try:
        get_session().head(f"{endpoint()}/api/models", timeout=timeout)
    except Exception:  # noqa: BLE001 - any transport failure means "not reachable"
        return False
    return True


def check_access(repo_id: str, override: str, repo_type: str = "model") -> None:
    """Fail in one line when the reachable hub refuses `repo_id` (gated, private, 401/403, 404).

    Reads the token the way downloads will (`HF_TOKEN` or the saved login).
    """
    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    where = f"or point the harness at a local copy with `{override}=/path/to/local/copy`"
    try:
        auth_check(repo_id, repo_type=repo_type)
    except GatedRepoError:
        raise HubAccessError(
            f"{repo_type} '{repo_id}' is gated on the hub: accept its licence on its page and set "
            f"HF_TOKEN (or run `hf auth login`), {where}"
        ) from None
    except RepositoryNotFoundError:
        raise HubAccessError(
            f"{repo_type} '{repo_id}' was not found on the hub or needs a token (HTTP 401): "
            f"check the id, set HF_TOKEN, {where}"
        ) from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubAccessError(
                f"{repo_type} '{repo_id}': the hub refused access (HTTP {status}); set HF_TOKEN "
                f"to a token with access, {where}"
            ) from None
        raise


def require_local_or_hub(
    hub_id: str, local_path: str | None, override: str, kind: str = "model"
) -> str:
    """What to load: the local path when given, else the hub id when the hub is reachable.

    Raises HubUnavailableError (one line, naming the id and the override) otherwise, and
    HubAccessError for a gated or refused repository, before any download is attempted.
    """
    if local_path:
        if not os.path.exists(local_path):
            raise FileNotFoundError(f"{override}={local_path}: no such file or folder")
        return str(local_path)
    if os.path.exists(hub_id):
        return hub_id
    if not hub_reachable():
        raise HubUnavailableError(hub_id, override, kind)
    check_access(hub_id, override, "dataset" if kind == "dataset" else "model")
    return hub_id


def set_offline_env() -> None:
    """Force HF offline mode for every library that reads it, and forget the cached probe."""
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    hub_reachable.cache_clear()
