"""The training loss over the answer tokens, and logits computed only where it needs them.

Only a record's answer carries labels: on the demo about 6 of 76 positions, on a real model a
few dozen of a thousand. The output layer (``lm_head``) and the cross-entropy at the other
positions are wasted work, and on a 7B model the float32 full-vocabulary logits of a 1,000-token
record take 0.6 GB. :func:`logits_only_at` runs the output layer on the hidden states of the
positions that predict an answer token alone (ms-swift keeps a suffix of positions through
transformers' ``logits_to_keep``; this keeps exactly those positions, row by row).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

from eiad.models.adapter import IGNORE_INDEX

LossReduction = Literal["token", "sample"]


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """Where the logits predict a labelled token (the label one position on): a boolean ``labels``-shaped mask."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


@contextmanager
def logits_only_at(output_layer: torch.nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """During the forward pass inside, ``output_layer`` maps only the hidden states at ``mask``.

    The model then returns logits of shape ``(mask.sum(), vocabulary)``, in the row-major order of
    ``mask`` (the order ``tensor[mask]`` gives), instead of one per position. The model's forward
    must apply the output layer once, to the last hidden states, as transformers' models do.
    """
    handle = output_layer.register_forward_pre_hook(lambda _, args: (args[0][mask.to(args[0].device)], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def answer_loss(reduction: LossReduction, grad_accum: int) -> Callable[..., torch.Tensor]:
    """The Trainer's ``compute_loss_func``: cross-entropy over the answer tokens.

    ``outputs.logits`` are either one per position (the model's own), or one per predicting
    position when the forward ran inside :func:`logits_only_at`. ``token`` is ms-swift's mean
    over every answer token of the accumulated batch (the Trainer counts them across the
    accumulation steps and processes: ``num_items_in_batch``); ``sample`` is the mean over
    records of each record's mean, so a one-letter answer weighs as much as a 30-token box list.
    The Trainer neither divides such a loss by the accumulation steps nor undoes its
    multiplication by the process count, so both happen here.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        mask = predicting_positions(labels).to(outputs.logits.device)
        logits = outputs.logits if outputs.logits.dim() == 2 else outputs.logits[mask]
        targets = labels.to(mask.device).roll(-1, dims=1)[mask]
        per_token = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        if reduction == "token":
            count = num_items_in_batch if num_items_in_batch is not None else targets.numel() * grad_accum * world
            return per_token.sum() / count
        rows = mask.nonzero()[:, 0]
        per_record = torch.zeros(len(labels), device=per_token.device).index_add_(0, rows, per_token)
        per_record = per_record / mask.sum(dim=1).clamp(min=1)
        return per_record.sum() / (len(labels) * grad_accum * world)

    return loss
