"""What Qwen2-VL and Qwen2.5-VL share as families: M-RoPE, vision towers bounded by ``cu_seqlens``
and a patch embedding that is one matrix product.

Both language models number positions in three dimensions (time, height, width) for image tokens;
both vision towers attend within each image of a sequence of all images and embed each patch with a
Conv3d whose kernel is the whole patch. The two family packages subclass :class:`QwenVLAdapter` (a
family's package imports no other family's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from eiad.models.adapter import VLMAdapter
from eiad.models.attention import use_varlen_sdpa


class PatchProjection(torch.nn.Conv3d):
    """Qwen's patch embedding computed as what it is: its Conv3d's kernel is its stride and its whole
    input (one patch: channels x frames x pixels x pixels), so each output is one dot product, and
    one matrix product gives them all. The general convolution kernel took 2 ms of a demo training
    step of 32 images on the CPU; the same weights and outputs (to rounding; tested), 3% of the step."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        flat = torch.nn.functional.linear(patches.flatten(1), self.weight.flatten(1), self.bias)
        return flat.view(-1, self.out_channels, 1, 1, 1)


class QwenVLAdapter(VLMAdapter):
    row_state = ("model.rope_deltas",)  # M-RoPE: each prompt's offset of text positions after its images
    padding_free = True

    def load_model(self, model_dir: Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> Any:
        """The model with its vision tower attending to all images in one SDPA call (transformers'
        SDPA path makes one per image) and its patch embedding as one matrix product."""
        model = super().load_model(model_dir, dtype, trust_remote_code)
        use_varlen_sdpa(model.config.vision_config)
        projection = model.model.visual.patch_embed.proj
        if type(projection) is torch.nn.Conv3d and projection.kernel_size == projection.stride \
                and not any(projection.padding) and projection.groups == 1:
            projection.__class__ = PatchProjection  # the same module and parameters, another forward
        return model

    def position_ids(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """M-RoPE positions exactly as the forward pass computes them: a Python loop over the
        batch's records and images (13-16 ms a demo batch of 32 on one thread; the training collator
        keeps each record's), and what a padding-free batch needs (a packed row's positions cannot be
        computed from it)."""
        return model.model.compute_3d_position_ids(
            input_ids=batch["input_ids"], inputs_embeds=None, image_grid_thw=batch.get("image_grid_thw"),
            video_grid_thw=None, attention_mask=batch["attention_mask"], cache=None,
            mm_token_type_ids=batch.get("mm_token_type_ids"),
        )
