"""`python -m harness [hydra overrides]`: evaluate one model config on one benchmark config.

Examples:
    python -m harness                                   # embedded default (offline)
    python -m harness model=splare7b benchmark=mmteb_multilingual
    python -m harness -m model=splare_tiny,splade_tiny benchmark=embedded
    python -m harness model=splare7b --cfg job          # print the composed config
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from harness.config import check_group_overrides
from harness.offline import HubUnavailableError, configure_offline

EXPECTED_ERRORS = (ValueError, FileNotFoundError, HubUnavailableError)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _app(cfg: DictConfig):
    try:
        # HF libraries read offline mode when imported: decide it before anything imports them.
        offline = configure_offline(cfg.run.hub)
        from harness.runner import run

        return run(cfg, offline=offline)
    except EXPECTED_ERRORS as err:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        logging.getLogger("harness").error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    try:
        check_group_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    _app()


if __name__ == "__main__":
    main()
