"""What a controlled run runs, checked before anything runs.

Per model: `python -m harness` before training, `python -m harness.train`, `python -m harness` with
the adapter. Each command names its config groups (`benchmark=`, `data=`, `train=`) and overrides
exactly the settings where the controlled config differs from what that app composes on its own;
`plan` composes every command's config back and checks that it reproduces the controlled one.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from harness.config import CONF_DIR, check_group_overrides
from harness.paths import REPO_ROOT

#: Config groups of conf/controlled.yaml that the commands name (`controlled_budget` follows
#: `train`).
GROUPS = ("data", "benchmark", "train")
#: Sections of the controlled config that the evaluation and the training commands reproduce.
EVAL_SECTIONS = ("benchmark",)
TRAIN_SECTIONS = ("data", "train")
STAGES = ("before", "train", "after")  # in the order they run, per model
RECORD_FILE = "controlled_run.json"
_BARE = re.compile(r"[A-Za-z_][\w./-]*")


@dataclass
class ModelPlan:
    """One model's three commands (argv lists, run from the repository root), its adapter folder and
    the results folders of its two evaluations, as the commands name them (repository-relative when
    inside the checkout)."""

    model: str
    adapter: Path
    results: dict[str, Path]  # "before" / "after" -> run.results_dir
    commands: dict[str, list[str]]  # stage (STAGES) -> argv


def repo_relative(path: Path) -> Path:
    """How the commands (run from the repository root) name `path`: relative to the repository
    when inside it (records never hold the checkout's absolute path), else absolute."""
    try:
        return path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return path.resolve()


def compose_app(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """The config `python -m harness[.train]` composes from `overrides` (`config` or `train`),
    inside the running controlled app (Hydra already initialised on conf/) or outside it."""
    check_group_overrides(overrides, ("model", "benchmark", "search", "data", "train"))
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar (bare words stay bare, other strings are quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if _BARE.fullmatch(value) and value.lower() not in ("null", "true", "false", "nan", "inf"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Sequence):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot pass {value!r} on a command line")


def leaves(section: Mapping, prefix: str) -> dict[str, Any]:
    """Dotted key -> value of every non-mapping setting of `section` (lists are one value)."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, f"{prefix}.{key}"))
        else:
            out[f"{prefix}.{key}"] = value
    return out


def section_overrides(wanted: Mapping, composed: Mapping, prefix: str, app: str) -> list[str]:
    """`key=value` for every setting of `wanted` that differs from `composed` (what `app` composes
    without them); a setting `app` does not have fails in one line."""
    have = leaves(composed, prefix)
    overrides = []
    for key, value in leaves(wanted, prefix).items():
        if key not in have:
            raise ValueError(f"{key} is not a setting of {app}")
        if value != have[key]:
            overrides.append(f"{key}={hydra_value(value)}")
    return overrides


def _sections(cfg: Mapping, names: Sequence[str]) -> dict[str, Any]:
    return {name: OmegaConf.to_container(cfg[name], resolve=True) for name in names}


def reproduced(
    app: str, config_name: str, groups: Sequence[str], wanted: Mapping[str, Any]
) -> list[str]:
    """`groups` (`model=…`, `benchmark=…`) and the overrides with which `app` composes the `wanted`
    sections exactly; checked by composing them."""
    base = _sections(compose_app(config_name, groups), list(wanted))
    overrides = list(groups)
    for name, section in wanted.items():
        overrides += section_overrides(section, base[name], name, app)
    got = _sections(compose_app(config_name, overrides), list(wanted))
    for name, section in wanted.items():
        composed = leaves(got[name], name)
        for key, value in leaves(section, name).items():
            if composed.get(key) != value:
                raise ValueError(
                    f"{app} {shlex.join(overrides)} composes {key}={composed.get(key)!r}, "
                    f"not {value!r}"
                )
    return overrides


def group_choices(choices: Mapping[str, Any]) -> dict[str, str | None]:
    """The group choices (Hydra's `runtime.choices`) that the commands and the record name, with
    `controlled_budget` None where the recipe has no budget file (Hydra names the optional choice
    whether or not it exists)."""
    budget = choices.get("controlled_budget")
    if budget is not None and not (CONF_DIR / "controlled_budget" / f"{budget}.yaml").is_file():
        budget = None
    return {**{group: choices.get(group) for group in GROUPS}, "controlled_budget": budget}


def _checked_models(models: Any) -> list[str]:
    if not isinstance(models, Sequence) or isinstance(models, str) or not models:
        raise ValueError(
            f"controlled.models must be a non-empty list of model configs, got {models!r}"
        )
    models = [str(m) for m in models]
    if len(set(models)) < len(models):
        raise ValueError(f"controlled.models lists a model twice: {models}")
    return models


def _checked_tasks(tasks: Any) -> list[str] | None:
    if tasks is None:
        return None
    if not isinstance(tasks, Sequence) or isinstance(tasks, str) or not tasks:
        raise ValueError(
            f"controlled.tasks must be null or a non-empty list of task names, got {tasks!r}"
        )
    return [str(t) for t in tasks]


def _checked_steps(steps: Any, models: Sequence[str]) -> dict[str, int]:
    """`controlled.steps`: per-model `train.steps` (the schedule length where heads differ in step
    cost under one `train.cpu_minutes`); null = `train.steps` for every model."""
    from harness.train.run import checked_int

    if steps is None:
        return {}
    if not isinstance(steps, Mapping):
        raise ValueError(f"controlled.steps must be null or a mapping model -> steps, got {steps!r}")  # noqa: TRY004
    unknown = sorted(set(steps) - set(models))
    if unknown:
        raise ValueError(f"controlled.steps names {unknown}, not in controlled.models {list(models)}")
    return {str(m): checked_int(n, f"controlled.steps.{m}") for m, n in steps.items()}


def plan(cfg: DictConfig, choices: Mapping[str, str | None]) -> list[ModelPlan]:
    """Every model's commands for the composed controlled config `cfg` (`choices`: the config
    group choices, e.g. `{"train": "smoke", "data": ..., "benchmark": ...}`). Fails in one line,
    before anything runs, on a bad setting: an unknown or untrainable model, a training or
    evaluation setting the apps refuse, training data that cannot be read as set, a task not in
    the benchmark, an `out` that already holds a run."""
    import models as model_specs
    from harness.runner import check_config
    from harness.tasks import load_tasks
    from harness.train.data import load_training_data
    from harness.train.model import check_trainable
    from harness.train.run import check_train_config, checked_int, model_tau, split_held_out

    settings = cfg.controlled
    model_names = _checked_models(settings.models)
    tasks = _checked_tasks(settings.tasks)
    steps = _checked_steps(settings.get("steps"), model_names)
    eval_max_length = checked_int(
        settings.eval_max_length, "controlled.eval_max_length", allow_none=True
    )
    out = Path(str(settings.out)).expanduser().resolve()
    if (out / RECORD_FILE).exists():
        raise ValueError(
            f"controlled.out={settings.out} already holds a finished run ({RECORD_FILE}); "
            "choose another folder, or rewrite its report with `python -m harness.controlled "
            f"report {settings.out}`"
        )
    if cfg.train.get("resume"):
        raise ValueError("train.resume=true: a controlled run trains every model from the start")

    where = repo_relative(out)
    eval_groups = [f"benchmark={choices['benchmark']}"]
    train_groups = [f"data={choices['data']}", f"train={choices['train']}"]
    plans = []
    for model in model_names:
        # a unique adapter folder name: the harness names variants (and encoding caches) after it
        adapter = where / f"{model}_{out.name}"
        results = {stage: where / "results" / f"{model}_{stage}" for stage in ("before", "after")}
        evaluation = reproduced(
            "python -m harness",
            "config",
            [f"model={model}", *eval_groups],
            _sections(cfg, EVAL_SECTIONS),
        )
        if eval_max_length is not None:
            evaluation.append(f"model.backbone.max_length={eval_max_length}")
        if tasks:
            evaluation.append(f"run.tasks={hydra_value(tasks)}")
        train = [
            *reproduced(
                "python -m harness.train",
                "train",
                [f"model={model}", *train_groups],
                _sections(cfg, TRAIN_SECTIONS),
            ),
            f"train.output_dir={adapter}",
            *([f"train.steps={steps[model]}"] if model in steps else []),
        ]
        composed = compose_app("train", train)
        check_train_config(composed.train)
        try:
            check_trainable(composed.model)
            model_tau(model_specs.ModelSpec.from_config(composed.model, training=True))
            check_config(compose_app("config", evaluation))
        except ValueError as error:
            raise ValueError(f"controlled.models '{model}': {error}") from None
        python = [sys.executable, "-m"]
        plans.append(
            ModelPlan(
                model,
                adapter,
                results,
                {
                    "before": [
                        *python,
                        "harness",
                        *evaluation,
                        f"run.results_dir={results['before']}",
                    ],
                    "train": [*python, "harness.train", *train],
                    "after": [
                        *python,
                        "harness",
                        *evaluation,
                        f"run.results_dir={results['after']}",
                        f"model.backbone.adapter={adapter}",
                    ],
                },
            )
        )
    # the training rows as `python -m harness.train` reads them (the same for every model)
    data_cfg = OmegaConf.to_container(composed.data, resolve=True)
    if composed.train.get("negatives") is not None:
        data_cfg["negatives"] = int(composed.train.negatives)
    split_held_out(
        load_training_data(data_cfg), int(composed.train.eval_pairs), int(composed.train.seed)
    )
    load_tasks(cfg.benchmark, tasks)  # tasks or subsets the benchmark does not have fail here
    return plans


def shown(command: Sequence[str]) -> str:
    """A command as the record and the report show it: `python -m …`, shell-quoted."""
    return shlex.join(["python", *command[1:]])
