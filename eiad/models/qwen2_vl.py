"""Qwen2-VL: presets and the tiny model (Qwen2.5-VL, whose vision tower differs, is ``qwen2_5_vl``).

Qwen2-VL-7B is a published MMAD baseline; the offline demo uses the same architecture at a
few hundred thousand parameters, with a tokenizer trained locally on the DDQA and MMAD text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eiad.models.base import VLMAdapter, standard_presets
from eiad.models.tiny import TinyConfig, save_tiny, tiny_tokenizer
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
class TinyQwen2VLConfig(TinyConfig):
    """Sizes of the offline model; images are resized to ``image_size`` x ``image_size``."""

    merge_size: int = 1  # spatial merge: merge_size x merge_size patches become one token


def qwen_processor(processor_class: Any, config: TinyQwen2VLConfig, tokenizer: Any) -> Any:
    """Qwen2-VL's processor (also Qwen2.5-VL's) at the tiny model's fixed image size."""
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    pixels = config.image_size * config.image_size
    vision = {"patch_size": config.patch_size, "merge_size": config.merge_size, "temporal_patch_size": 2}
    return processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, **vision),
        video_processor=Qwen2VLVideoProcessor(**vision),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def qwen_text_config(config: TinyQwen2VLConfig, vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
    head_dim = config.hidden_size // config.heads
    # M-RoPE splits each head's rotary half into (time, height, width) sections
    mrope = [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6]
    return config.text_config(
        vocab_size,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def qwen_special_ids(ids: dict[str, int]) -> dict[str, int]:
    """The config's ids of the tokens that mark images and videos."""
    return {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}


class Qwen2VLAdapter(VLMAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl",)
    lora_presets = standard_presets(_LLM, _PROJECTOR, _VISION)

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        config = from_dict(TinyQwen2VLConfig, params, "model.tiny")
        tokenizer, ids = tiny_tokenizer(corpus, config.vocab_size, SPECIAL_TOKENS, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
        model_config = Qwen2VLConfig(
            text_config=qwen_text_config(config, len(tokenizer), ids),
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
            tie_word_embeddings=False,
            **qwen_special_ids(ids),
        )
        processor = qwen_processor(Qwen2VLProcessor, config, tokenizer)
        save_tiny(Qwen2VLForConditionalGeneration, model_config, config, processor, ids["<|im_end|>"],
                  ids["<|endoftext|>"], dest)


ADAPTER = Qwen2VLAdapter()
