"""`python -m harness [hydra overrides]`: evaluate one model config on one benchmark config.

Examples:
    python -m harness                                   # embedded default (offline)
    python -m harness model=splare7b benchmark=mmteb_multilingual
    python -m harness -m model=splare_tiny,splade_tiny benchmark=embedded
    python -m harness model=splare7b --cfg job          # print the composed config
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from harness.cli import main_with_checked_groups, one_line_errors
from harness.config import GROUPS, OPTIONAL_GROUPS
from harness.offline import configure_offline


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _app(cfg: DictConfig):
    with one_line_errors():
        # HF libraries read offline mode when imported: decide it before anything imports them.
        offline = configure_offline(cfg.run.hub)
        from harness.runner import run

        return run(cfg, offline=offline)


def main() -> None:
    main_with_checked_groups(_app, GROUPS + OPTIONAL_GROUPS)


if __name__ == "__main__":
    main()
