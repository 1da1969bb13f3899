"""Causal or bidirectional attention for each supported decoder family, decided per family.

Whether a decoder attends bidirectionally is never inferred from whether its config has some
attribute: each supported Hugging Face `model_type` is listed here with how transformers
(5.18+, read in 5.24's source) really realises each mode for it.

- `gemma3_text` (Gemma 3): the class honours `use_bidirectional_attention`: the flag makes its
  attention modules non-causal and its mask builder bidirectional (full layers: every non-padding
  token; sliding layers: tokens at distance <= sliding_window // 2 on either side). The flag is
  set in the config before the model is built (the config halves the window there).
- `llama`, `mistral`, `qwen2`, `qwen3`, `gemma2`: the classes always build a causal mask (Gemma 2
  has the `use_bidirectional_attention` attribute but its model still calls `create_causal_mask`;
  a config-level `is_causal=False` would make transformers skip the mask under sdpa when nothing
  is padded, and sdpa then falls back to the module's `is_causal=True`). Bidirectional mode passes
  explicit, always-materialised masks instead: full-attention layers see every non-padding token,
  sliding-window layers see non-padding tokens at distance <= sliding_window // 2 on either side,
  exactly Gemma 3's bidirectional window (same number of keys as the causal window).

Causal mode lets every family build its own causal mask (a Gemma 3 config has the flag off), which
is batch-independent under right padding: a real token never sees a later position.

Implementations: `eager` and `sdpa` take explicit masks; flash-attention takes none (it keeps only
a padding mask), so it cannot honour a bidirectional or sliding bidirectional pattern, and is not
offered. Gemma 2's attention-logit softcapping rules out sdpa: it runs eager only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.masking_utils import create_bidirectional_mask


@dataclass(frozen=True)
class Family:
    """How one decoder family realises causal and bidirectional attention.

    Args:
        name: human-readable family name for messages.
        implementations: valid `attn_implementation` values; the first is the default.
        flag: config flag that the class honours for bidirectional attention, or None when the
            bidirectional mode needs an explicit mask.
        mask_by_layer_type: the model takes `{layer_type: mask}` (it has `config.layer_types`);
            otherwise one mask for all layers.
        no_sdpa_reason: why sdpa is not offered, when it is not.
    """

    name: str
    implementations: tuple[str, ...]
    flag: str | None
    mask_by_layer_type: bool
    no_sdpa_reason: str = ""


EAGER_SDPA = ("sdpa", "eager")
FAMILIES: dict[str, Family] = {
    "llama": Family("Llama", EAGER_SDPA, None, False),
    "mistral": Family("Mistral", EAGER_SDPA, None, False),
    "qwen2": Family("Qwen2", EAGER_SDPA, None, True),
    "qwen3": Family("Qwen3", EAGER_SDPA, None, True),
    "gemma2": Family(
        "Gemma 2", ("eager",), None, True,
        no_sdpa_reason="its attention-logit softcapping is not available in sdpa",
    ),
    "gemma3_text": Family("Gemma 3", EAGER_SDPA, "use_bidirectional_attention", True),
}


def family_of(config_or_model_type: Any) -> tuple[str, Family]:
    """`(model_type, Family)` of an HF config or `model_type` string; one-line error otherwise."""
    model_type = (
        config_or_model_type
        if isinstance(config_or_model_type, str)
        else getattr(config_or_model_type, "model_type", None)
    )
    if model_type not in FAMILIES:
        hint = ""
        if model_type == "gemma3":
            hint = " (a multimodal Gemma 3 config: use a text-only gemma3_text checkpoint)"
        raise ValueError(
            f"unsupported backbone family model_type='{model_type}'{hint}; "
            f"supported: {', '.join(FAMILIES)}"
        )
    return model_type, FAMILIES[model_type]


def check_attention(
    config_or_model_type: Any, bidirectional: bool, attn_implementation: str | None
) -> None:
    """Fail in one line unless this family can run `attn_implementation` honestly in this mode.

    Needs only the config (or its `model_type`), so it runs before any weights load.
    `attn_implementation=None` means the family's default (`resolve_implementation`).
    """
    model_type, family = family_of(config_or_model_type)
    if attn_implementation is None or attn_implementation in family.implementations:
        return
    mode = "bidirectional" if bidirectional else "causal"
    if attn_implementation.startswith("flash"):
        why = "flash-attention takes no custom attention mask, so this harness does not offer it"
    elif attn_implementation == "sdpa" and family.no_sdpa_reason:
        why = family.no_sdpa_reason
    else:
        why = "it is not one whose masks this harness builds and tests"
    raise ValueError(
        f"attn_implementation='{attn_implementation}' cannot run {family.name} ({model_type}) "
        f"{mode} attention: {why}; valid choices: {', '.join(family.implementations)}"
    )


def resolve_implementation(config_or_model_type: Any, attn_implementation: str | None) -> str:
    """The `attn_implementation` to load with: the given one, or the family's default."""
    return attn_implementation or family_of(config_or_model_type)[1].implementations[0]


def config_updates(config_or_model_type: Any, bidirectional: bool) -> dict[str, Any]:
    """Config fields to set before building the model: the honoured flag, if the family has one."""
    family = family_of(config_or_model_type)[1]
    return {family.flag: bidirectional} if family.flag else {}


def _window_overlay(half: int):
    """Mask function: key within `half` positions of the query, on either side."""

    def inner(batch_idx: int, head_idx: int, q_idx: int, kv_idx: int) -> bool:
        return abs(q_idx - kv_idx) <= half

    return inner


def layer_types(config: Any) -> list[str]:
    """`full_attention` / `sliding_attention` per decoder layer of `config` (Mistral: all sliding
    when `sliding_window` is set)."""
    if FAMILIES[config.model_type].mask_by_layer_type:
        return list(config.layer_types)
    kind = "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"
    return [kind] * config.num_hidden_layers


def bidirectional_masks(
    config: Any, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Explicit bidirectional masks for a family whose class ignores bidirectionality.

    Args:
        config: the loaded model's config (`_attn_implementation` picks the mask format: bool for
            sdpa, additive float for eager).
        inputs_embeds: `[batch, tokens, hidden]` (batch size, length, dtype, device).
        attention_mask: `[batch, tokens]`, 1 for real tokens.

    Returns:
        `[batch, 1, tokens, tokens]` masks, as `{layer_type: mask}` for families that take one per
        layer type, else one tensor. Full layers: every non-padding key; sliding layers: non-padding
        keys within `sliding_window // 2` positions (Gemma 3's bidirectional window).
    """
    masks = {}
    for kind in set(layer_types(config)):
        window = None
        if kind == "sliding_attention":
            window = _window_overlay(config.sliding_window // 2)
        masks[kind] = create_bidirectional_mask(
            config, inputs_embeds, attention_mask, and_mask_function=window,
            allow_is_bidirectional_skip=False,
        )
    if FAMILIES[config.model_type].mask_by_layer_type:
        return masks
    (mask,) = masks.values()
    return mask


def model_attention_mask(
    config: Any, bidirectional: bool, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor | dict[str, torch.Tensor]:
    """What to pass as the model's `attention_mask` (shapes as in `bidirectional_masks`).

    The 2D padding mask where the class builds the right mask itself (causal mode; a family with
    an honoured flag), explicit bidirectional masks otherwise.
    """
    if bidirectional and FAMILIES[config.model_type].flag is None:
        return bidirectional_masks(config, inputs_embeds, attention_mask)
    return attention_mask
