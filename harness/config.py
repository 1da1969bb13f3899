"""Hydra configuration: composition outside `@hydra.main` and up-front validation of overrides."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "benchmark", "search")
OPTIONAL_GROUPS = ("top_k",)  # no default: added with `+top_k=q10_d100`


def group_options(group: str) -> list[str]:
    """Config names available in Hydra group `group` (the yaml files of `conf/<group>/`)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_overrides(
    overrides: Sequence[str], groups: Sequence[str] = GROUPS + OPTIONAL_GROUPS
) -> None:
    """Fail in one line when an override names a value of one of `groups` that does not exist.

    Accepts Hydra's `group=a` and multirun `group=a,b` forms; raises ValueError listing the
    valid values, before Hydra (or any model loading) starts.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups:
            continue
        valid = group_options(key)
        for name in value.split(","):
            if name not in valid:
                raise ValueError(f"unknown {key} '{name}'; valid: {', '.join(valid)}")


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config for `overrides`, as `python -m harness <overrides>` would see it."""
    check_group_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
