"""Qwen2.5-VL: presets and the tiny model.

Qwen2-VL's tokenizer, chat template and tiny sizes; the vision tower differs: SwiGLU MLPs
(``gate/up/down_proj`` where Qwen2-VL has ``fc1/fc2``, so Qwen2-VL's ``all`` preset would miss
them), RMSNorm and windowed attention with a few full-attention blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eiad.models.base import VLMAdapter
from eiad.models.qwen2_vl import CHAT_TEMPLATE, SPECIAL_TOKENS, TinyQwen2VLConfig
from eiad.models.tokenizer import train_byte_level_bpe
from eiad.params import from_dict

_LLM = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.visual\.merger\.mlp\.(0|2)"  # mlp.1 is the GELU
_VISION = r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)"


class Qwen25VLAdapter(VLMAdapter):
    family = "qwen2_5_vl"
    lora_presets = {
        "llm": _LLM,
        "llm+projector": f"({_LLM}|{_PROJECTOR})",
        "all": f"({_LLM}|{_PROJECTOR}|{_VISION}|lm_head)",
    }

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import (
            PreTrainedTokenizerFast,
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
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
        model_config = Qwen2_5_VLConfig(
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
                "hidden_size": config.vision_width,
                "intermediate_size": 2 * config.vision_width,
                "num_heads": config.vision_heads,
                "out_hidden_size": config.hidden_size,
                "patch_size": config.patch_size,
                "spatial_merge_size": config.merge_size,
                "temporal_patch_size": 2,
                # windows of 2 x 2 merged patches (Qwen2.5-VL: 4 x 4), the last block attends globally
                "window_size": 2 * config.patch_size * config.merge_size,
                "fullatt_block_indexes": [config.vision_depth - 1],
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
        model = Qwen2_5_VLForConditionalGeneration(model_config)
        model.generation_config.eos_token_id = ids["<|im_end|>"]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        pixels = config.image_size * config.image_size
        vision = {"patch_size": config.patch_size, "merge_size": config.merge_size, "temporal_patch_size": 2}
        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, **vision),
            video_processor=Qwen2VLVideoProcessor(**vision),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
        )
        model.save_pretrained(dest)
        processor.save_pretrained(dest)


ADAPTER = Qwen25VLAdapter()
