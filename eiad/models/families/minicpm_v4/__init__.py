"""MiniCPM-V 4.6 and 4.7 (transformers-native, no remote code): presets, collation, the tiny model.

A NaViT-style SigLIP tower with a window-attention merger inside, an MLP merger, and a Qwen3.5
language model (gated delta-net linear attention mixed with full attention). An image becomes a
thumbnail plus slices; the processor packs every patch of a call into one sequence, so prompts
are concatenated on that sequence's (last) dimension. 4.7 adds canvas M-RoPE, which reads the
``mm_token_type_ids`` its processor returns; both share module names and presets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from eiad.errors import ConfigError
from eiad.models.adapter import VLMAdapter, standard_presets
from eiad.models.tiny import TinyConfig, chatml_template, save_tiny, tiny_tokenizer

_LLM = (r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|linear_attn\.(in_proj_(qkv|z|b|a)|out_proj)"
        r"|mlp\.(gate|up|down)_proj)")  # linear_attn.conv1d is a depthwise convolution, left out
_PROJECTOR = r"model\.merger\.mlp\.\d+\.linear_(1|2)"
_ATTENTION_MLP = r"(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"
_VISION = (rf"model\.vision_tower\.(encoder\.layers\.\d+\.{_ATTENTION_MLP}"
           r"|vit_merger\.(self_attn\.(q|k|v|out)_proj|linear_(1|2)))")

# the processor reads these names from the tokenizer
NAMED_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "image_start_token": "<image>",
    "image_end_token": "</image>",
    "slice_start_token": "<slice>",
    "slice_end_token": "</slice>",
    "image_id_start_token": "<image_id>",
    "image_id_end_token": "</image_id>",
}
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *NAMED_TOKENS.values())

# ChatML; the processor expands each <|image_pad|> into an image id, a thumbnail and its slices
CHAT_TEMPLATE = chatml_template("<|image_pad|>")


@dataclass(frozen=True)
class TinyMiniCPMV4Config(TinyConfig):
    """Sizes of the offline model; ``image_size`` is the thumbnail and slice resolution.

    The vision tower merges 4 x 4 patches into one token (two 2 x 2 merges), so an image gives
    ``(image_size / patch_size / 4)^2`` tokens per thumbnail or slice. The language model's
    layers alternate linear and full attention (Qwen3.5: three linear, then one full).
    """

    version: Literal["4.6", "4.7"]
    max_slices: int

    def __post_init__(self) -> None:
        if self.image_size % (4 * self.patch_size):
            raise ConfigError("model.tiny: image_size must be a multiple of 4 x patch_size")


def _text_config(config: TinyMiniCPMV4Config, vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
    """The Qwen3.5 language model: linear-attention and full-attention layers in turn."""
    head_dim = config.hidden_size // config.heads
    third = head_dim // 6
    return config.text_config(
        vocab_size,
        model_type="qwen3_5_text",
        layer_types=["linear_attention" if i % 2 == 0 else "full_attention" for i in range(config.layers)],
        head_dim=head_dim,
        linear_num_key_heads=config.kv_heads,
        linear_num_value_heads=config.heads,
        linear_key_head_dim=head_dim,
        linear_value_head_dim=head_dim,
        # Qwen3.5 rotates a quarter of each 256-wide head; a tiny head rotates whole, its half split
        # into (time, height, width) sections for 4.7's canvas M-RoPE
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
                         "mrope_section": [head_dim // 2 - 2 * third, third, third]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


class MiniCPMV4Adapter(VLMAdapter):
    family = "minicpm_v4"
    model_types = ("minicpmv4_6", "minicpmv4_7")
    lora_presets = standard_presets(_LLM, _PROJECTOR, _VISION)
    media_concat_dims: ClassVar[dict[str, int]] = {"pixel_values": -1}  # (1, channels, patch, all patches of the batch)
    batched_continuation = False  # its linear-attention layers keep a recurrent state, not a per-token cache

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        import transformers
        from transformers.models.minicpmv4_6.image_processing_minicpmv4_6 import MiniCPMV4_6ImageProcessor
        from transformers.models.minicpmv4_6.video_processing_minicpmv4_6 import MiniCPMV4_6VideoProcessor

        config = TinyMiniCPMV4Config.parse(params, "model.tiny")
        tokenizer, ids = tiny_tokenizer(corpus, config.vocab_size, SPECIAL_TOKENS, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", extra_special_tokens=NAMED_TOKENS)
        suffix = config.version.replace(".", "_")
        model_config = getattr(transformers, f"MiniCPMV{suffix}Config")(
            text_config=_text_config(config, len(tokenizer), ids),
            vision_config=config.vision_config(),
            insert_layer_id=(config.vision_depth - 1) // 2,  # early in the tower (MiniCPM-V: after block 6 of 27)
            image_size=config.image_size,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            **(self._canvas_markers(tokenizer) if config.version == "4.7" else {}),
        )
        vision = {"scale_resolution": config.image_size, "patch_size": config.patch_size,
                  "max_slice_nums": config.max_slices}
        processor = getattr(transformers, f"MiniCPMV{suffix}Processor")(
            image_processor=MiniCPMV4_6ImageProcessor(**vision),  # 4.7 uses 4.6's processors
            video_processor=MiniCPMV4_6VideoProcessor(**vision),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
        )
        save_tiny(getattr(transformers, f"MiniCPMV{suffix}ForConditionalGeneration"), model_config, config, processor,
                  ids["<|im_end|>"], ids["<|endoftext|>"], dest)

    @staticmethod
    def _canvas_markers(tokenizer: Any) -> dict[str, int]:
        """The token ids 4.7's canvas M-RoPE pins to the corners of images and slices."""
        ids = {
            f"{name}_id": tokenizer.convert_tokens_to_ids(NAMED_TOKENS[f"{name}_token"])
            for name in ("image_start", "image_end", "slice_start", "slice_end")
        }
        (newline,) = tokenizer("\n", add_special_tokens=False)["input_ids"]  # one byte, one token
        return {**ids, "newline_id": newline}


ADAPTER = MiniCPMV4Adapter()
