"""A Hugging Face causal LM cut after decoder layer `l`, as a sentence-transformers input module.

Only layers 0..l are built and loaded (`config.num_hidden_layers = l + 1`), so nothing above the
read-out layer is ever computed. The module emits the residual stream after layer `l`
(`token_embeddings`, `[batch, tokens, hidden]`), or the same after the model's final norm when a
vocabulary head follows (`final_norm=True`), plus a `pooling_mask` (`[batch, tokens]`, bool) that
excludes padding and BOS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from sentence_transformers.base.modules.input_module import InputModule
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """`torch.dtype` for a config string (`float32`, `bfloat16`, `float16`); one-line error otherwise."""
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


def truncated_config(source: str, layer: int, bidirectional: bool) -> PretrainedConfig:
    """The config of `source` with only decoder layers 0..`layer`, bidirectional where it has a flag.

    The config is rebuilt from its dict so that flags read at construction (Gemma 3's
    `use_bidirectional_attention` halves the sliding window there) take effect.
    """
    config = AutoConfig.from_pretrained(source)
    check_layer(config, layer, source)
    updates: dict[str, Any] = {"num_hidden_layers": layer + 1, "tie_last_hidden_states": False}
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        updates["layer_types"] = list(layer_types)[: layer + 1]
    if hasattr(config, "use_bidirectional_attention"):
        updates["use_bidirectional_attention"] = bidirectional
    return type(config).from_dict({**config.to_dict(), **updates})


HUB_KEYS = ("token", "cache_folder", "revision", "local_files_only")


def saved_module_files(
    module_cls: type, path: str, subfolder: str, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A saved module's settings (its config json) and local folder, for `Module.load` overrides."""
    hub = {key: kwargs[key] for key in HUB_KEYS if key in kwargs}
    settings = module_cls.load_config(path, subfolder=subfolder, **hub)
    return settings, module_cls.load_dir_path(path, subfolder=subfolder, **hub)


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """Tokenizer of a decoder model, padded on the right (positions stay 0..n-1) with a pad token."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


class CausalLMBackbone(InputModule):
    """Decoder LM truncated after layer `layer` (0-based, = SAE hook `blocks.{layer}.hook_resid_post`).

    Args:
        model: the truncated base model (e.g. `LlamaModel`, `Gemma3TextModel`) with `layer + 1` layers.
        tokenizer: its tokenizer (right padding, pad token set).
        layer: read-out layer index.
        max_seq_length: truncation length in tokens.
        bidirectional: attend to all non-padding tokens. Uses the config flag where the architecture
            has one (Gemma 3), otherwise replaces the causal mask with a padding-only mask.
        final_norm: emit the final-norm output (for an LM head) instead of the raw residual stream.
    """

    config_file_name = "causal_lm_backbone.json"
    config_keys: ClassVar[list[str]] = ["layer", "max_seq_length", "bidirectional", "final_norm"]

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
        self.model = model
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_seq_length = max_seq_length
        self.bidirectional = bidirectional
        self.final_norm = final_norm
        self._config_flag = hasattr(model.config, "use_bidirectional_attention")
        attention = model.config._attn_implementation or ""
        if bidirectional and not self._config_flag and "flash" in attention:
            raise ValueError(
                f"bidirectional attention needs a mask, which attn_implementation='{attention}' "
                "ignores; use sdpa or eager"
            )

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        layer: int,
        dtype: str = "float32",
        max_seq_length: int = 1024,
        bidirectional: bool = True,
        final_norm: bool = False,
    ) -> CausalLMBackbone:
        """Load layers 0..`layer` of the HF model at `source` (hub id or folder), nothing above."""
        config = truncated_config(source, layer, bidirectional)
        model = AutoModel.from_pretrained(source, config=config, dtype=torch_dtype(dtype))
        return cls(model, load_tokenizer(source), layer, max_seq_length, bidirectional, final_norm)

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
        mask: torch.Tensor | None = attention_mask
        if self.bidirectional and not self._config_flag:
            mask = create_bidirectional_mask(
                self.model.config, inputs_embeds, attention_mask, allow_is_bidirectional_skip=False
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
        """Load a saved backbone; `model_kwargs={"dtype": "bfloat16"}` picks the dtype (default float32)."""
        settings, folder = saved_module_files(cls, model_name_or_path, subfolder, kwargs)
        dtype = (model_kwargs or {}).get("dtype", "float32")
        return cls.from_pretrained(str(Path(folder)), dtype=dtype, **settings)
