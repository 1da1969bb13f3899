"""Why a document matched: the dimensions that carry the score q . d (latents or tokens).

    python -m harness.explain model=splare_tiny query="what is a shock wave" \\
        document="A shock wave is ..." [n=20] [explanations=FILE] [model.backbone.layer=9 ...]
    python -m harness.explain model=splare_tiny text="some text" [role=query]   # one vector

Other `key=value` arguments are Hydra overrides of the harness config (model group, model.*).
Latent labels come from `explanations=FILE` or the SAE's `sae.explanations` / an
explanations.json(l) inside a local SAE folder (Neuronpedia export format: latent index ->
description); nothing is fetched. A missing or malformed file fails in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from harness.cli import one_line_errors

OWN_KEYS = ("query", "document", "text", "role", "n", "explanations")


def split_arguments(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(this command's own `key=value` arguments, the Hydra overrides)."""
    own: dict[str, str] = {}
    overrides: list[str] = []
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"argument '{item}' is not key=value")
        if key in OWN_KEYS:
            own[key] = value
        else:
            overrides.append(item)
    return own, overrides


def explain(argv: Sequence[str]) -> str:
    """The report for `argv` (see the module docstring), as printed text."""
    own, overrides = split_arguments(argv)
    n = int(own.get("n", "20"))
    pair = "query" in own or "document" in own
    if pair and not ("query" in own and "document" in own):
        raise ValueError("give both query=... and document=... (or text=... for one vector)")
    if not pair and "text" not in own:
        raise ValueError("give query=... and document=..., or text=...")
    from harness.config import compose_config
    from harness.offline import configure_offline

    cfg = compose_config(overrides)
    configure_offline(cfg.run.hub)
    from models import build_encoder
    from models.inspect import (
        contributions,
        describe,
        find_explanations,
        format_rows,
        labels,
        load_explanations,
    )

    source = own.get("explanations") or find_explanations(cfg.model)
    explanations = load_explanations(source) if source else None
    encoder = build_encoder(cfg.model)
    if not pair:
        return format_rows(describe(encoder, own["text"], n, own.get("role", "document"),
                                    explanations))
    score, rows = contributions(encoder, own["query"], own["document"], n)
    names = labels(encoder, [j for j, _, _ in rows], explanations)
    lines = [f"score q.d = {score:.4f} ({len(rows)} of the shared dimensions shown)",
             f"{'q_j*d_j':>9}  {'share':>6}  {'q_j':>7}  {'d_j':>7}  {'dim':>7}  label"]
    for (j, qj, dj), name in zip(rows, names, strict=True):
        share = qj * dj / score if score else 0.0
        lines.append(f"{qj * dj:9.4f}  {share:6.1%}  {qj:7.3f}  {dj:7.3f}  {j:>7}  {name}")
    return "\n".join(lines)


def main() -> None:
    """CLI entry point."""
    with one_line_errors():
        print(explain(sys.argv[1:]))


if __name__ == "__main__":
    main()
