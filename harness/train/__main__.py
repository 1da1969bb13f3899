"""`python -m harness.train model=<model cfg> data=<data cfg> [train.x=y]`: train a LoRA adapter.

Examples:
    python -m harness.train                                        # splare_tiny on embedded pairs
    python -m harness.train model=splade_tiny_llm train.steps=100 train.max_length=64
    python -m harness.train model=splare7b data=msmarco_bge_kd    # the paper's recipe (GPU, hub)
    python -m harness.train --cfg job                              # print the composed config
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from harness.config import group_options
from harness.offline import HubUnavailableError, configure_offline

EXPECTED_ERRORS = (ValueError, FileNotFoundError, HubUnavailableError)
GROUPS = ("model", "data")


def check_overrides(argv: list[str]) -> None:
    """Fail in one line when `model=` or `data=` names a config that does not exist."""
    for item in argv:
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+~") in GROUPS:
            valid = group_options(key.lstrip("+~"))
            if value not in valid:
                raise ValueError(f"unknown {key.lstrip('+~')} '{value}'; valid: {', '.join(valid)}")


@hydra.main(config_path="../../conf", config_name="train", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        configure_offline(cfg.train.hub)  # before HF libraries read the offline flags
        from harness.train.run import train

        train(cfg)
    except EXPECTED_ERRORS as err:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    try:
        check_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    _app()


if __name__ == "__main__":
    main()
