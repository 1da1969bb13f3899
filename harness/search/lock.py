"""An exclusive lock file on a shared filesystem, with stale-lock recovery after a killed holder.

Acquiring writes the holder's record (`{"pid", "host", "nonce", "created"}`) to a private file and
hard-links it to the lock path: the link either creates the complete lock file or fails because
it exists (atomic on local filesystems and NFS alike), so a lock file is never half-written.
While held, a heartbeat thread refreshes the file's mtime. A waiter treats the lock as stale when
its holder is on the same host and no longer running, or when its mtime is older than
`stale_after` seconds (a holder on another host that stopped beating). A stale lock is removed
under a second, short-lived lock (`<path>.break`) and only if it still holds the record judged
stale, so two waiters never both remove a lock and then both take a new one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Self

logger = logging.getLogger(__name__)

#: A lock whose mtime is older than this (seconds) is stale whatever its host.
STALE_AFTER = 600.0
#: Seconds between the holder's mtime refreshes (well below STALE_AFTER).
HEARTBEAT = 30.0
#: Seconds between a waiter's attempts.
POLL = 0.5
#: The break lock is held for a read and an unlink; older than this, its holder died.
BREAK_STALE_AFTER = 30.0


def _record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "nonce": secrets.token_hex(8),
        "created": time.time(),
    }


def _pid_running(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _try_create(path: Path, record: dict[str, Any]) -> bool:
    """Create `path` holding `record` atomically; False when it already exists."""
    tmp = path.with_name(f".{path.name}.{record['nonce']}.tmp")
    tmp.write_text(json.dumps(record))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> tuple[str, float] | None:
    """The lock file's text and mtime, or None when it is gone."""
    try:
        return path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return None


def _is_stale(text: str, mtime: float, stale_after: float) -> bool:
    if time.time() - mtime > stale_after:
        return True
    try:
        holder = json.loads(text)
        pid, host = int(holder["pid"]), str(holder["host"])
    except (ValueError, KeyError, TypeError):
        return False  # unreadable: only its age can make it stale
    return host == socket.gethostname() and not _pid_running(pid)


class FileLock:
    """Context manager holding the lock file `path` (created next to what it protects).

    Args:
        path: the lock file.
        stale_after: seconds without a heartbeat after which any holder counts as gone.
        heartbeat: seconds between the holder's mtime refreshes.
        poll: seconds between a waiter's attempts.
    """

    def __init__(
        self,
        path: Path,
        *,
        stale_after: float = STALE_AFTER,
        heartbeat: float = HEARTBEAT,
        poll: float = POLL,
    ) -> None:
        if not 0 < heartbeat < stale_after:
            raise ValueError(
                f"lock heartbeat ({heartbeat} s) must be positive and below stale_after "
                f"({stale_after} s)"
            )
        self.path = Path(path)
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.poll = poll
        self._record: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Block until this process holds the lock, breaking stale locks on the way."""
        record = _record()
        waited = False
        while not _try_create(self.path, record):
            seen = _read(self.path)
            if seen is None:
                continue
            if _is_stale(*seen, self.stale_after):
                logger.warning("removing stale lock %s (%s)", self.path, seen[0])
                self._break(seen[0])
                continue
            if not waited:
                logger.info("waiting for %s, held by %s", self.path, seen[0])
                waited = True
            time.sleep(self.poll)
        self._record = record
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _break(self, stale_text: str) -> None:
        """Remove the lock if it still holds `stale_text`, under the break lock."""
        breaker = self.path.with_name(self.path.name + ".break")
        if not _try_create(breaker, _record()):
            seen = _read(breaker)
            if seen is not None and _is_stale(*seen, BREAK_STALE_AFTER):
                breaker.unlink(missing_ok=True)
            time.sleep(self.poll)
            return
        try:
            seen = _read(self.path)
            if seen is not None and seen[0] == stale_text:
                self.path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    def _owned(self) -> bool:
        seen = _read(self.path)
        return seen is not None and self._record is not None and seen[0] == json.dumps(
            self._record
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if not self._owned():
                logger.warning("lock %s was taken over while held (judged stale)", self.path)
                return
            os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still this holder's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._owned():
            self.path.unlink(missing_ok=True)
        self._record = None
