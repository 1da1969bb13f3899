"""What every Hydra entry point of the harness shares: checked overrides and one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from harness.config import check_group_overrides
from harness.offline import DatasetNotCachedError, HubAccessError, HubUnavailableError

EXPECTED_ERRORS = (
    ValueError, FileNotFoundError, HubUnavailableError, HubAccessError, DatasetNotCachedError,
)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Bad input ends the process with `error: <message>` and exit code 2 (HARNESS_DEBUG=1 re-raises)."""
    try:
        yield
    except EXPECTED_ERRORS as err:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main_with_checked_groups(app: Callable[[], object], groups: Sequence[str]) -> None:
    """Check the config-group values on the command line, then hand over to the Hydra app."""
    with one_line_errors():
        check_group_overrides([a for a in sys.argv[1:] if not a.startswith("-")], groups)
    app()
