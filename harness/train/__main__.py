"""`python -m harness.train model=<m> data=<d> [train=paper|smoke] [train.x=y]`: train a LoRA adapter.

Examples:
    python -m harness.train model=splare7b data=msmarco_bge_kd    # the paper's recipe (GPU, hub)
    python -m harness.train train=smoke                            # splare_tiny on embedded pairs, CPU
    python -m harness.train train=smoke model=splade_tiny_llm train.steps=100 train.max_length=64
    torchrun --nproc_per_node 8 -m harness.train model=splare7b data=msmarco_bge_kd \\
        train.output_dir=/ckpt/splare7b                            # DDP, global batch 128
    python -m harness.train --cfg job                              # print the composed config
    python -m harness.train mntp model=splare7b                    # the MNTP pre-stage (conf/mntp.yaml)
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from harness.cli import main_with_checked_groups, one_line_errors
from harness.offline import configure_offline

GROUPS = ("model", "data", "train")


@hydra.main(config_path="../../conf", config_name="train", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with one_line_errors():
        configure_offline(cfg.train.hub)  # before HF libraries read the offline flags
        from harness.train.run import train

        train(cfg)


@hydra.main(config_path="../../conf", config_name="mntp", version_base="1.3")
def _mntp_app(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with one_line_errors():
        configure_offline(cfg.mntp.hub)  # before HF libraries read the offline flags
        from harness.train.mntp import mntp

        mntp(cfg)


def main() -> None:
    if sys.argv[1:2] == ["mntp"]:
        sys.argv.pop(1)
        main_with_checked_groups(_mntp_app, ("model",))
    else:
        main_with_checked_groups(_app, GROUPS)


if __name__ == "__main__":
    main()
