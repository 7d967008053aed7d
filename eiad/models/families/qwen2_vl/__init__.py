"""Qwen2-VL: presets and the tiny model (Qwen2.5-VL, whose vision tower differs, is ``qwen2_5_vl``).

Qwen2-VL-7B is a published MMAD baseline; the offline demo uses the same architecture at a
few hundred thousand parameters, with a tokenizer trained locally on the DDQA and MMAD text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eiad.models.adapter import VLMAdapter, standard_presets
from eiad.models.tiny import TinyQwenVLConfig, build_tiny_qwen

_LLM = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.visual\.merger\.mlp\.(0|2)"  # mlp.1 is the GELU
_VISION = r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"


def _vision(config: TinyQwenVLConfig) -> dict[str, Any]:
    return {
        "depth": config.vision_depth,
        "embed_dim": config.vision_width,
        "hidden_size": config.hidden_size,
        "num_heads": config.vision_heads,
        "mlp_ratio": 2,
        "patch_size": config.patch_size,
        "spatial_merge_size": config.merge_size,
        "temporal_patch_size": 2,
    }


class Qwen2VLAdapter(VLMAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl",)
    lora_presets = standard_presets(_LLM, _PROJECTOR, _VISION)

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        build_tiny_qwen(params, corpus, dest, (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor),
                        _vision)


ADAPTER = Qwen2VLAdapter()
