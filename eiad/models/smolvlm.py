"""SmolVLM (the Idefics3 architecture): presets and the tiny model.

SmolVLM-256M/500M/2.2B-Instruct folders are ``Idefics3ForConditionalGeneration``; SmolVLM2 folders
(``SmolVLMForConditionalGeneration``) load through the same Auto classes and share the module
names, so the presets fit both. The tiny model is an Idefics3 with a SigLIP-style vision tower,
a pixel-shuffle connector and a Llama language model, with SmolVLM's chat layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eiad.errors import ConfigError
from eiad.models.base import VLMAdapter
from eiad.models.tokenizer import train_byte_level_bpe
from eiad.params import from_dict

_LLM = r"model\.text_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.connector\.modality_projection\.proj"
_VISION = r"model\.vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                  "<global-img>")

# SmolVLM's layout: "<|im_start|>User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n"
# (a colon and a space before text, a bare colon before an image); the processor expands each
# <image> into its fake-token-wrapped run of image tokens.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True)
class TinySmolVLMConfig:
    """Sizes of the offline model; images are resized to ``image_size`` x ``image_size`` (no splitting)."""

    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 2
    vision_width: int = 64
    vision_heads: int = 4
    patch_size: int = 7
    # pixel shuffle: scale_factor x scale_factor patches become one token
    scale_factor: int = 2
    image_size: int = 56
    initializer_range: float = 0.1  # as for the tiny Qwen2-VL: a narrow model needs larger initial weights

    def __post_init__(self) -> None:
        if self.image_size % (self.patch_size * self.scale_factor):
            raise ConfigError("model.tiny: image_size must be a multiple of patch_size x scale_factor")


class SmolVLMAdapter(VLMAdapter):
    family = "smolvlm"
    lora_presets = {
        "llm": _LLM,
        "llm+projector": f"({_LLM}|{_PROJECTOR})",
        "all": f"({_LLM}|{_PROJECTOR}|{_VISION}|lm_head)",
    }

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import (
            Idefics3Config,
            Idefics3ForConditionalGeneration,
            Idefics3ImageProcessor,
            Idefics3Processor,
            PreTrainedTokenizerFast,
        )

        config = from_dict(TinySmolVLMConfig, params, "model.tiny")
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=train_byte_level_bpe(corpus, config.vocab_size, SPECIAL_TOKENS),
            bos_token="<|im_start|>",
            eos_token="<end_of_utterance>",
            pad_token="<|endoftext|>",
        )
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        model_config = Idefics3Config(
            text_config={
                "model_type": "llama",
                "vocab_size": len(tokenizer),
                "hidden_size": config.hidden_size,
                "intermediate_size": config.intermediate_size,
                "num_hidden_layers": config.layers,
                "num_attention_heads": config.heads,
                "num_key_value_heads": config.kv_heads,
                "max_position_embeddings": 4096,
                "bos_token_id": ids["<|im_start|>"],
                "eos_token_id": ids["<end_of_utterance>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "hidden_size": config.vision_width,
                "intermediate_size": 2 * config.vision_width,
                "num_hidden_layers": config.vision_depth,
                "num_attention_heads": config.vision_heads,
                "image_size": config.image_size,
                "patch_size": config.patch_size,
            },
            scale_factor=config.scale_factor,
            image_token_id=ids["<image>"],
            pad_token_id=ids["<|endoftext|>"],
        )
        for sub_config in (model_config, model_config.text_config, model_config.vision_config):
            sub_config.initializer_range = config.initializer_range
        torch.manual_seed(config.seed)
        model = Idefics3ForConditionalGeneration(model_config)
        model.generation_config.eos_token_id = ids["<end_of_utterance>"]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        side = {"longest_edge": config.image_size}
        processor = Idefics3Processor(
            image_processor=Idefics3ImageProcessor(size=side, max_image_size=side, do_image_splitting=False),
            tokenizer=tokenizer,
            image_seq_len=(config.image_size // config.patch_size) ** 2 // config.scale_factor**2,
            chat_template=CHAT_TEMPLATE,
        )
        model.save_pretrained(dest)
        processor.save_pretrained(dest)


ADAPTER = SmolVLMAdapter()
