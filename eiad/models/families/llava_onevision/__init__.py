"""LLaVA-OneVision: presets, multi-image prompts and the tiny model.

A SigLIP vision tower, a two-layer MLP projector and a Qwen2 language model. A prompt with one
image is tiled at any resolution (a base view plus the tiles of the best grid); a prompt with
several images (MMAD's 1-shot) gives each image one base view, as LLaVA-OneVision was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eiad.errors import ConfigError
from eiad.models.adapter import VLMAdapter, standard_presets
from eiad.models.tiny import TinyConfig, chatml_template, save_tiny, tiny_tokenizer

_LLM = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.multi_modal_projector\.linear_(1|2)"
_VISION = r"model\.vision_tower\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")

# ChatML, as LLaVA-OneVision's Qwen2 uses; the processor expands each <image> into its features
CHAT_TEMPLATE = chatml_template("<image>")


@dataclass(frozen=True)
class TinyLlavaOnevisionConfig(TinyConfig):
    """Sizes of the offline model; ``image_size`` is the tile side, ``max_grid`` the largest grid of tiles."""

    max_grid: int

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size or self.max_grid < 1:
            raise ConfigError("model.tiny: image_size must be a multiple of patch_size, and max_grid >= 1")


class LlavaOnevisionAdapter(VLMAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    lora_presets = standard_presets(_LLM, _PROJECTOR, _VISION)

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import (
            LlavaOnevisionConfig,
            LlavaOnevisionForConditionalGeneration,
            LlavaOnevisionImageProcessor,
            LlavaOnevisionProcessor,
        )
        from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

        config = TinyLlavaOnevisionConfig.parse(params, "model.tiny")
        tokenizer, ids = tiny_tokenizer(corpus, config.vocab_size, SPECIAL_TOKENS, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
        grid = range(1, config.max_grid + 1)
        pinpoints = [[config.image_size * rows, config.image_size * cols] for rows in grid for cols in grid]
        model_config = LlavaOnevisionConfig(
            text_config=config.text_config(
                len(tokenizer),
                model_type="qwen2",
                bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"],
            ),
            vision_config=config.vision_config(model_type="siglip_vision_model", vision_use_head=False),
            image_token_index=ids["<image>"],
            video_token_index=ids["<video>"],
            image_grid_pinpoints=pinpoints,
        )
        side = {"height": config.image_size, "width": config.image_size}
        processor = LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessor(size=side, image_grid_pinpoints=pinpoints),
            video_processor=LlavaOnevisionVideoProcessor(size=side),
            tokenizer=tokenizer,
            num_image_tokens=(config.image_size // config.patch_size) ** 2,
            vision_feature_select_strategy=model_config.vision_feature_select_strategy,
            chat_template=CHAT_TEMPLATE,
        )
        save_tiny(LlavaOnevisionForConditionalGeneration, model_config, config, processor, ids["<|im_end|>"],
                  ids["<|endoftext|>"], dest)


ADAPTER = LlavaOnevisionAdapter()
