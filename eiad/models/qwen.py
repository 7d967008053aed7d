"""What Qwen2-VL and Qwen2.5-VL share as families: M-RoPE and vision towers bounded by ``cu_seqlens``.

Both language models number positions in three dimensions (time, height, width) for image tokens;
both vision towers attend within each image of a sequence of all images. The two family packages
subclass :class:`QwenVLAdapter` (a family's package imports no other family's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from eiad.models.adapter import VLMAdapter


class QwenVLAdapter(VLMAdapter):
    row_state = ("model.rope_deltas",)  # M-RoPE: each prompt's offset of text positions after its images
    varlen_attention = ("vision_config",)
    padding_free = True

    def position_ids(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """M-RoPE positions exactly as the forward pass computes them: a Python loop over the
        batch's records and images (35 ms of a demo step of 32 records on one thread), and what a
        padding-free batch needs (a packed row's positions cannot be computed from it)."""
        return model.model.compute_3d_position_ids(
            input_ids=batch["input_ids"], inputs_embeds=None, image_grid_thw=batch.get("image_grid_thw"),
            video_grid_thw=None, attention_mask=batch["attention_mask"], cache=None,
            mm_token_type_ids=batch.get("mm_token_type_ids"),
        )
