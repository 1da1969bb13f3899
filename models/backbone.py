"""A Hugging Face causal LM cut after decoder layer `l`, as a sentence-transformers input module.

Only layers 0..l are built and loaded (`config.num_hidden_layers = l + 1`), so nothing above the
read-out layer is read from disk or computed; with `device` the weights go straight there. The
module emits the residual stream after layer `l` (`token_embeddings`, `[batch, tokens, hidden]`),
or the same after the model's final norm when a vocabulary head follows (`final_norm=True`), plus
a `pooling_mask` (`[batch, tokens]`, bool) that excludes padding and BOS. Causal or bidirectional
attention is realised per family by `models.attention`; a probe at construction checks that the
read-out is what it claims (`check_readout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import transformers
from sentence_transformers.base.modules.input_module import InputModule
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from models import attention

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """`torch.dtype` of a config string (`float32`, `bfloat16`, `float16`); one-line error else."""
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"model.backbone.dtype must be one of {', '.join(DTYPES)}, got '{name}'")
    return DTYPES[name]


def check_layer(config: PretrainedConfig, layer: int, source: str) -> None:
    """Fail in one line unless `layer` is a decoder layer index of `config` (0-based).

    Text-only causal LM configs (Llama, Gemma 2/3 text, Qwen, Mistral...) are supported.
    """
    n_layers = config.num_hidden_layers
    if not 0 <= layer < n_layers:
        raise ValueError(
            f"model.backbone.layer={layer} is out of range for {source} "
            f"({n_layers} decoder layers, valid 0..{n_layers - 1})"
        )


def truncated_config(
    source: str,
    layer: int,
    bidirectional: bool,
    attn_implementation: str | None = None,
    revision: str | None = None,
) -> PretrainedConfig:
    """The config of `source` with only decoder layers 0..`layer`, and the attention mode set.

    Fails in one line, before any weights load, for a layer out of range, an unsupported family
    or an attention implementation that cannot honour the mode (`attention.check_attention`).
    The config is rebuilt from its dict so that flags read at construction (Gemma 3's
    `use_bidirectional_attention` halves the sliding window there) take effect. A config-level
    `is_causal` is dropped: transformers would turn every causal mask bidirectional with it.
    """
    config = AutoConfig.from_pretrained(source, revision=revision)
    check_layer(config, layer, source)
    attention.check_attention(config, bidirectional, attn_implementation)
    updates: dict[str, Any] = {"num_hidden_layers": layer + 1, "tie_last_hidden_states": False}
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        updates["layer_types"] = list(layer_types)[: layer + 1]
    updates.update(attention.config_updates(config, bidirectional))
    settings = {**config.to_dict(), **updates}
    settings.pop("is_causal", None)
    return type(config).from_dict(settings)


HUB_KEYS = ("token", "cache_folder", "revision", "local_files_only")


def saved_module_files(
    module_cls: type, path: str, subfolder: str, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A saved module's settings (its config json) and local folder, for `Module.load` overrides."""
    hub = {key: kwargs[key] for key in HUB_KEYS if key in kwargs}
    settings = module_cls.load_config(path, subfolder=subfolder, **hub)
    return settings, module_cls.load_dir_path(path, subfolder=subfolder, **hub)


def load_kwargs(
    config: PretrainedConfig,
    dtype: str | torch.dtype,
    attn_implementation: str | None,
    device: str | torch.device | None,
    revision: str | None = None,
) -> dict[str, Any]:
    """`from_pretrained` keyword arguments: the truncated config, dtype, the family's attention
    implementation, the hub revision, and `device_map` so that weights stream onto `device`."""
    kwargs: dict[str, Any] = {
        "config": config,
        "revision": revision,
        "dtype": torch_dtype(dtype),
        "attn_implementation": attention.resolve_implementation(config, attn_implementation),
    }
    if device is not None:
        kwargs["device_map"] = {"": torch.device(device)}
    return kwargs


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-2) -> bool:
    """Whether `a` and `b` (same shape) agree to `tol` relative Frobenius error."""
    return bool((a - b).norm() <= tol * b.norm().clamp_min(1e-12))


def load_tokenizer(source: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    """Tokenizer of a decoder model, padded on the right (positions stay 0..n-1), pad token set."""
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


class CausalLMBackbone(InputModule):
    """Decoder LM cut after layer `layer` (0-based; the SAE hook `blocks.{layer}.hook_resid_post`).

    Args:
        model: the truncated base model (e.g. `LlamaModel`, `Gemma3TextModel`), `layer + 1`
            layers, of a family in `models.attention.FAMILIES`, loaded with an
            `attn_implementation` that family offers (Gemma 3: its flag set to `bidirectional`).
        tokenizer: its tokenizer (right padding, pad token set).
        layer: read-out layer index.
        max_seq_length: truncation length in tokens.
        bidirectional: attend to all non-padding tokens (sliding-window layers: within half the
            window on either side), as `models.attention` realises it for the family; else causal.
        final_norm: emit the final-norm output (for an LM head) instead of the raw residual stream.

    Construction runs `check_readout` (a one-text forward).
    """

    config_file_name = "causal_lm_backbone.json"
    config_keys: ClassVar[list[str]] = [
        "layer", "max_seq_length", "bidirectional", "final_norm", "attn_implementation",
    ]

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        layer: int,
        max_seq_length: int = 1024,
        bidirectional: bool = True,
        final_norm: bool = False,
    ) -> None:
        super().__init__()
        n_layers = model.config.num_hidden_layers
        if n_layers != layer + 1:
            raise ValueError(f"backbone has {n_layers} layers, expected layer + 1 = {layer + 1}")
        self.attn_implementation = model.config._attn_implementation
        attention.check_attention(model.config, bidirectional, self.attn_implementation)
        flag = attention.family_of(model.config)[1].flag
        if flag and bool(getattr(model.config, flag)) != bidirectional:
            raise ValueError(
                f"the model was built with {flag}={getattr(model.config, flag)} but "
                f"bidirectional={bidirectional}; build it from truncated_config(...)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_seq_length = max_seq_length
        self.bidirectional = bidirectional
        self.final_norm = final_norm
        self.check_readout()

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        layer: int,
        dtype: str = "float32",
        max_seq_length: int = 1024,
        bidirectional: bool = True,
        final_norm: bool = False,
        attn_implementation: str | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
    ) -> CausalLMBackbone:
        """Load layers 0..`layer` of the HF model at `source` (hub id or folder), nothing above.

        `attn_implementation=None` picks the family's default (`attention.resolve_implementation`).
        `device` (e.g. `cuda:0`) loads the weights straight onto it, never whole into host RAM.
        `revision`: the hub branch, tag or commit (ignored for a local folder).
        """
        config = truncated_config(source, layer, bidirectional, attn_implementation, revision)
        kwargs = load_kwargs(config, dtype, attn_implementation, device, revision)
        model = AutoModel.from_pretrained(source, **kwargs)
        tokenizer = load_tokenizer(source, revision)
        return cls(model, tokenizer, layer, max_seq_length, bidirectional, final_norm)

    @torch.no_grad()
    def check_readout(self) -> None:
        """Fail in one line unless `forward` emits the state it claims, on a one-text probe.

        The reference is taken independently of transformers' `hidden_states` bookkeeping: a hook
        on decoder layer `layer` captures its output (the raw residual stream) and the model's
        final norm is applied to it. `token_embeddings` must match the raw stream (or, with
        `final_norm`, its norm) to 1% relative error. Transformers < 5.18 ignores
        `tie_last_hidden_states=False` and returns the normed state as `hidden_states[-1]`.
        """
        captured: list[torch.Tensor] = []

        def keep(module, args, output):
            captured.append(output[0] if isinstance(output, tuple) else output)

        features = self.preprocess(["The read-out check runs one short probe sentence."])
        device = self.model.get_input_embeddings().weight.device
        features = {name: t.to(device) for name, t in features.items()}
        handle = self.model.layers[self.layer].register_forward_hook(keep)
        try:
            got = self.forward(dict(features))["token_embeddings"].float()
        finally:
            handle.remove()
        raw = captured[-1]
        normed = self.model.norm(raw).float()
        expected, other = (normed, raw.float()) if self.final_norm else (raw.float(), normed)
        if _close(got, expected):
            return
        what = "final-norm output" if self.final_norm else "raw residual stream"
        found = "the " + ("raw residual stream" if self.final_norm else "final-norm output")
        if not _close(got, other):
            found = "neither the raw residual stream nor its final norm"
        raise RuntimeError(
            f"read-out check failed: token_embeddings after layer {self.layer} are {found}, "
            f"expected the {what} (transformers {transformers.__version__}; hidden_states[-1] "
            "is the raw stream only where tie_last_hidden_states=False is honoured, >= 5.18)"
        )

    def apply_adapter(self, adapter: str) -> None:
        """Apply a peft LoRA adapter and merge it into the weights.

        Adapters saved from a `*ForCausalLM` (keys `model.layers...`) or from the base model
        (keys `layers...`) both load; weights for layers above `layer` are ignored.
        """
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(self.model, adapter, key_mapping={r"^model\.": ""})
        self.model = peft_model.merge_and_unload()

    def preprocess(
        self, inputs: list[str], prompt: str | None = None, **kwargs
    ) -> dict[str, torch.Tensor]:
        """Tokenise texts: `input_ids`, `attention_mask`, both `[batch, tokens]`, right-padded."""
        texts = [prompt + text for text in inputs] if prompt else list(inputs)
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        """Add `token_embeddings` `[batch, tokens, hidden]` and `pooling_mask` `[batch, tokens]`."""
        input_ids = features["input_ids"]
        attention_mask = features["attention_mask"]
        inputs_embeds = self.model.get_input_embeddings()(input_ids)
        mask = attention.model_attention_mask(
            self.model.config, self.bidirectional, inputs_embeds, attention_mask
        )
        output = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            output_hidden_states=None if self.final_norm else [-1],
            use_cache=False,
        )
        features["token_embeddings"] = (
            output.last_hidden_state if self.final_norm else output.hidden_states[-1]
        )
        pooling_mask = attention_mask.bool()
        if self.tokenizer.bos_token_id is not None:
            pooling_mask = pooling_mask & (input_ids != self.tokenizer.bos_token_id)
        features["pooling_mask"] = pooling_mask
        return features

    def get_embedding_dimension(self) -> int:
        """Hidden size of the residual stream."""
        return self.model.config.hidden_size

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """Save the truncated model, its tokenizer and this module's settings to `output_path`."""
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        model_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ) -> CausalLMBackbone:
        """Load a saved backbone (settings, attention included, from its config json).

        `model_kwargs={"dtype": "bfloat16", "device_map": "cuda:0"}` picks the dtype (default
        float32) and the device the weights load straight onto (default: host, then moved).
        """
        settings, folder = saved_module_files(cls, model_name_or_path, subfolder, kwargs)
        model_kwargs = model_kwargs or {}
        return cls.from_pretrained(
            str(Path(folder)), dtype=model_kwargs.get("dtype", "float32"),
            device=model_kwargs.get("device_map"), **settings,
        )
