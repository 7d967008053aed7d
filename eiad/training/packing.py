"""Padding-free batches: a collated batch's records laid end to end in one row, padding dropped.

A padded batch runs the language model's linear layers, norms and MLPs on every padding slot (16%
of the slots of a demo batch of 32; more where DFM's long answers share a batch with one-letter
ones). Packed, they run on real tokens only; attention keeps each record to itself through the
records' bounds (``cu_seq_lens_*``, the variable-length arguments transformers passes to
flash-attention, or to :func:`eiad.models.attention.varlen_sdpa`), and positions restart at every
record. The labels stay padded, one row per record: the loss (:mod:`eiad.training.loss`) reads the
records from them as before, and the model's logits are taken only where an answer token is
predicted, in the same order packed as padded, so the loss and gradients equal the padded batch's
(tested) — as ms-swift's and LLaMA-Factory's ``padding_free`` do with flash-attention on GPUs.
"""

from __future__ import annotations

import torch

from eiad.training.loss import predicting_positions

PREDICTING = "predicting_positions"  # the packed row's positions that predict an answer token (popped before the forward)


def pack(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | int]:
    """The right-padded ``batch`` as one row of real tokens.

    Token-aligned tensors keep their real tokens; media (pixel values, image grids) pass as they
    are, their images in the same order as the images' tokens. Positions restart at 0 for each
    record; a family's multimodal positions (Qwen's M-RoPE: (3, records, length)) get the text
    positions as a first row, the layout transformers' Qwen2-VL models read a packed row from.
    """
    real = batch["attention_mask"].bool()
    lengths = real.sum(dim=1)
    text_positions = torch.cat([torch.arange(int(length)) for length in lengths])
    packed: dict[str, torch.Tensor | int] = {}
    for key, value in batch.items():
        if key in ("attention_mask", "labels", "position_ids"):
            continue
        aligned = value.shape == real.shape
        packed[key] = value[real].unsqueeze(0) if aligned else value
    positions = batch.get("position_ids")
    if positions is not None and positions.dim() == 3:
        packed["position_ids"] = torch.cat([text_positions[None, None], positions[:, real].unsqueeze(1)])
    else:
        packed["position_ids"] = text_positions.unsqueeze(0)
    bounds = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    longest = int(lengths.max())
    packed.update(cu_seq_lens_q=bounds, cu_seq_lens_k=bounds, max_length_q=longest, max_length_k=longest)
    packed["labels"] = batch["labels"]
    packed[PREDICTING] = predicting_positions(batch["labels"])[real].unsqueeze(0)
    return packed
