"""MiniCPM-V 2.6's tensors: slices as patch rows, their spans in the text, labels, and the nested batch
``MiniCPMV.forward(data=...)`` takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from eiad.errors import EiadError
from eiad.models.adapter import IGNORE_INDEX, Example
from eiad.models.families.minicpmv2_6.slicing import FAMILY


def to_bytes(image: Image.Image) -> torch.Tensor:
    """[3, H, W] uint8: pixels are kept as bytes (a quarter of float32) until a batch is built."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def normalise(pixels: torch.Tensor, mean_std: torch.Tensor) -> torch.Tensor:
    """Bytes to the image processor's float32 values: scaled to [0, 1], then (x - mean) / std per channel."""
    mean, std = (row[:, None, None] for row in mean_std)
    return (pixels.float() / 255 - mean) / std


def reshape_by_patch(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """[3, H, W] -> [3, patch, H·W/patch]: the patches side by side in row-major order, as the model reads them."""
    channels, height, width = pixels.shape
    blocks = pixels.reshape(channels, height // patch, patch, width // patch, patch)
    return blocks.permute(0, 2, 1, 3, 4).reshape(channels, patch, -1)


def image_bounds(input_ids: torch.Tensor, openers: Sequence[int], closers: Sequence[int]) -> torch.Tensor:
    """[first query slot, closing token) index pairs of every image and slice span, in text order."""
    starts = torch.nonzero(torch.isin(input_ids, torch.tensor(openers))).flatten() + 1
    ends = torch.nonzero(torch.isin(input_ids, torch.tensor(closers))).flatten()
    if len(starts) != len(ends) or bool((ends <= starts).any()):
        raise EiadError(f"{FAMILY}: unbalanced image tokens in the encoded prompt")
    return torch.stack([starts, ends], dim=1)


def answer_labels(input_ids: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Labels aligned with the inputs (the LLM shifts them): -100 over the prompt, the tokens after it."""
    labels = input_ids.clone()
    labels[..., :prompt_length] = IGNORE_INDEX
    return labels


def _pad(row: torch.Tensor, length: int, fill: int, left: bool) -> torch.Tensor:
    pad = torch.full((length - len(row),), fill, dtype=row.dtype)
    return torch.cat([pad, row] if left else [row, pad])


def split_pixels(pixels: torch.Tensor, tgt_sizes: torch.Tensor) -> list[torch.Tensor]:
    """One example's side-by-side slices [3, patch, ΣL] back into a [3, patch, L] tensor per slice."""
    widths = (tgt_sizes[:, 0] * tgt_sizes[:, 1] * pixels.shape[1]).tolist()
    return list(torch.split(pixels, widths, dim=2))


def collate_examples(examples: Sequence[Example], pad_token_id: int, padding_side: str = "right") -> dict[str, Any]:
    """The nested batch ``MiniCPMV.forward(data=..., **llm_kwargs)`` takes.

    ``data`` holds what the model's own code reads (ids, positions, per-example lists of slices,
    their patch grids and their spans in the text); the attention mask and the labels go to the LLM.
    """
    longest = max(example.length for example in examples)
    left = padding_side == "left"
    ids = [example.tokens["input_ids"][0] for example in examples]
    input_ids = torch.stack([_pad(row, longest, pad_token_id, left) for row in ids])
    attention_mask = torch.stack([_pad(torch.ones_like(row), longest, 0, left) for row in ids])
    shifts = [longest - len(row) if left else 0 for row in ids]
    data = {
        "input_ids": input_ids,
        "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
        "pixel_values": [split_pixels(normalise(e.media["pixel_values"], e.media["mean_std"]), e.media["tgt_sizes"])
                         for e in examples],
        "tgt_sizes": [example.media["tgt_sizes"] for example in examples],
        "image_bound": [example.media["image_bound"] + shift for example, shift in zip(examples, shifts)],
    }
    batch: dict[str, Any] = {"data": data, "attention_mask": attention_mask}
    if "labels" in examples[0].tokens:
        batch["labels"] = torch.stack([_pad(e.tokens["labels"][0], longest, IGNORE_INDEX, left) for e in examples])
    return batch


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [to_device(item, device) for item in value]
    return value
