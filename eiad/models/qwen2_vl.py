"""Qwen2-VL (and Qwen2.5-VL folders loaded through the Auto classes): presets and the tiny model.

Qwen2-VL-7B is a published MMAD baseline; the offline demo uses the same architecture at a
few hundred thousand parameters, with a tokenizer trained locally on the DDQA and MMAD text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eiad.models.base import VLMAdapter
from eiad.models.tokenizer import train_byte_level_bpe
from eiad.params import from_dict

_LLM = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.visual\.merger\.mlp\.(0|2)"  # mlp.1 is the GELU
_VISION = r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")

# Qwen2-VL's ChatML layout: each image becomes <|vision_start|><|image_pad|><|vision_end|>,
# which the processor expands to one pad token per merged patch.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyQwen2VLConfig:
    """Sizes of the offline model; images are resized to ``image_size`` x ``image_size``."""

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
    patch_size: int = 14
    merge_size: int = 1
    image_size: int = 56
    # transformers' default (0.02) suits wide models; a 64-wide model trained from scratch
    # needs larger initial weights for the image signal to reach the answer (measured: AD
    # 0.68 -> 0.89 held-out after 1000 steps at 0.1)
    initializer_range: float = 0.1


class Qwen2VLAdapter(VLMAdapter):
    family = "qwen2_vl"
    lora_presets = {
        "llm": _LLM,
        "llm+projector": f"({_LLM}|{_PROJECTOR})",
        "all": f"({_LLM}|{_PROJECTOR}|{_VISION}|lm_head)",
    }

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import (
            PreTrainedTokenizerFast,
            Qwen2VLConfig,
            Qwen2VLForConditionalGeneration,
            Qwen2VLImageProcessor,
            Qwen2VLProcessor,
        )
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        config = from_dict(TinyQwen2VLConfig, params, "model.tiny")
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=train_byte_level_bpe(corpus, config.vocab_size, SPECIAL_TOKENS),
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
        )
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        head_dim = config.hidden_size // config.heads
        # M-RoPE splits each head's rotary half into (time, height, width) sections
        mrope = [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6]
        model_config = Qwen2VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": config.hidden_size,
                "intermediate_size": config.intermediate_size,
                "num_hidden_layers": config.layers,
                "num_attention_heads": config.heads,
                "num_key_value_heads": config.kv_heads,
                "max_position_embeddings": 4096,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "depth": config.vision_depth,
                "embed_dim": config.vision_width,
                "hidden_size": config.hidden_size,
                "num_heads": config.vision_heads,
                "mlp_ratio": 2,
                "patch_size": config.patch_size,
                "spatial_merge_size": config.merge_size,
                "temporal_patch_size": 2,
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
        for sub_config in (model_config, model_config.text_config, model_config.vision_config):
            sub_config.initializer_range = config.initializer_range
        torch.manual_seed(config.seed)
        model = Qwen2VLForConditionalGeneration(model_config)
        model.generation_config.eos_token_id = ids["<|im_end|>"]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        pixels = config.image_size * config.image_size
        vision = {"patch_size": config.patch_size, "merge_size": config.merge_size, "temporal_patch_size": 2}
        processor = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, **vision),
            video_processor=Qwen2VLVideoProcessor(**vision),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
        )
        model.save_pretrained(dest)
        processor.save_pretrained(dest)


ADAPTER = Qwen2VLAdapter()
