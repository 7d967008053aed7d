"""Qwen2.5-VL: presets and the tiny model.

Qwen2-VL's tokenizer, chat template and tiny sizes; the vision tower differs: SwiGLU MLPs
(``gate/up/down_proj`` where Qwen2-VL has ``fc1/fc2``, so Qwen2-VL's ``all`` preset would miss
them), RMSNorm and windowed attention with a few full-attention blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eiad.models.adapter import standard_presets
from eiad.models.qwen import QwenVLAdapter
from eiad.models.tiny import TinyQwenVLConfig, build_tiny_qwen

_LLM = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.visual\.merger\.mlp\.(0|2)"  # mlp.1 is the GELU
_VISION = r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)"


def _vision(config: TinyQwenVLConfig) -> dict[str, Any]:
    return {
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
    }


class Qwen25VLAdapter(QwenVLAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    lora_presets = standard_presets(_LLM, _PROJECTOR, _VISION)

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

        build_tiny_qwen(params, corpus, dest, (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor),
                        _vision)


ADAPTER = Qwen25VLAdapter()
