"""Variable-length attention on torch SDPA: several sequences laid end to end in one row, each
attending to itself alone, computed in one batched SDPA call.

Two places hand attention such a row. Qwen2-VL's and Qwen2.5-VL's vision towers put every image of
a batch in one sequence with the images' bounds in ``cu_seqlens``; and a padding-free training
batch (:mod:`eiad.training.packing`) lays its records end to end, so the language model's linear
layers never run on padding. transformers passes the bounds (``cu_seq_lens_q``) only to attention
implementations named like flash-attention's variable-length API; any other makes the vision tower
call attention once per image in a Python loop (64 calls a step for 32 demo images over 2 blocks)
and cannot take a packed row at all without a full (total x total) block mask. :func:`varlen_sdpa`
takes the bounds, lays the sequences out as the rows of one batch (a view when they are of equal
length, padded to the longest otherwise), runs one SDPA call and returns the tokens in their packed
order. Each sequence attends to itself alone, as under the loop or a padded batch, so outputs and
gradients equal theirs (tests compare them); flash-attention itself, where installed and chosen,
is used as it is.

:func:`masked_gqa_sdpa` is for the evaluation engine's padded rows: it lets torch's CPU SDPA kernel
read grouped key/value heads in place where transformers copies them out to every query head, and
computes only the last query of a layer asked for its last positions (:mod:`eiad.models.last_layer`).
"""

from __future__ import annotations

from typing import Any

import torch

from eiad.models.last_layer import LAST_QUERY_ONLY, at_last_position

# transformers routes cu_seq_lens to implementations named like flash-attention's; this one is torch SDPA
VARLEN_SDPA = "flash_api_varlen_sdpa"
MASKED_GQA_SDPA = "masked_gqa_sdpa"


def varlen_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None = None, scaling: float | None = None, dropout: float = 0.0,
                cu_seq_lens_q: torch.Tensor | None = None, is_causal: bool | None = None, **_: Any,
                ) -> tuple[torch.Tensor, None]:
    """Self-attention within each sequence of a packed row: ``query`` (1, heads, total, dim), ``key``
    and ``value`` (1, kv heads, total, dim), the sequences' bounds in ``cu_seq_lens_q``; returns
    (1, total, heads, dim), as transformers' attention functions do."""
    if cu_seq_lens_q is None or attention_mask is not None:
        raise ValueError(f"{VARLEN_SDPA} needs sequence bounds (cu_seq_lens_q) and no attention mask")
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    lengths = cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]
    count, longest = len(lengths), int(lengths.max())
    if count * longest == query.shape[2]:  # all of one length: the rows are a view
        rows = [tensor[0].unflatten(1, (count, longest)).transpose(0, 1) for tensor in (query, key, value)]
        out = _sdpa(*rows, None, scaling, dropout, causal)
        return out.transpose(1, 2).reshape(1, count * longest, out.shape[1], out.shape[3]), None
    real = torch.arange(longest, device=query.device) < lengths[:, None]  # (count, longest): which slots hold tokens
    rows = []
    for tensor in (query, key, value):
        padded = tensor.new_zeros(count, longest, tensor.shape[1], tensor.shape[3])
        padded[real] = tensor[0].transpose(0, 1)
        rows.append(padded.transpose(1, 2))
    # causal: a right-padded row's real queries see only real keys; otherwise the padding is masked out
    mask = None if causal else real[:, None, None, :]
    out = _sdpa(*rows, mask, scaling, dropout, causal)
    return out.transpose(1, 2)[real].unsqueeze(0), None


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
          scaling: float | None, dropout: float, causal: bool) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=key.shape[1] != query.shape[1])


def use_varlen_sdpa(config: Any) -> None:
    """Run the modules reading ``config`` (a vision tower's, or a language model's for packed batches)
    with :func:`varlen_sdpa` where they would run SDPA; flash-attention, where chosen, stays.

    Set on the config directly: ``set_attn_implementation`` takes a name holding "flash" for a
    flash kernel to load."""
    from transformers import AttentionInterface  # here: importing it loads transformers' modelling code

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa)
    if config._attn_implementation == "sdpa":
        config._attn_implementation = VARLEN_SDPA


def masked_gqa_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, but for masked queries on the CPU against fewer key/value heads:
    there transformers repeats each key/value head for its query heads (a copy of the whole cache
    per layer) because CUDA's kernels take no mask with grouped heads, while torch's CPU kernel does.
    Measured on the engine's continuations at mid size (32 rows of 66 tokens over 803 keys, 8 query
    and 4 key/value heads): 194 ms a layer with the copy, 93 ms without, the same outputs bit for bit."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if getattr(module, LAST_QUERY_ONLY, False) and query.shape[2] > 1:
        # the last layer asked for each row's last position (eiad.models.last_layer): one query per
        # row, which sees every key its row's mask lets it see (no causal flag: it is the last)
        mask = None if attention_mask is None else attention_mask[:, :, -1:]
        last, _ = masked_gqa_sdpa(module, query[:, :, -1:], key, value, mask, dropout, scaling, **kwargs)
        return at_last_position(last, query.shape[2]), None
    if attention_mask is None or query.device.type != "cpu" or query.shape[1] == key.shape[1] \
            or query.shape[2] == 1 or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # with a mask transformers' SDPA is never told is_causal: the mask holds the causal pattern
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def use_masked_gqa_sdpa(config: Any) -> None:
    """Run the modules reading ``config`` (a language model's) with :func:`masked_gqa_sdpa` where they
    would run SDPA; their masks are made as for SDPA (transformers makes none for a name it does not
    know)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(MASKED_GQA_SDPA, masked_gqa_sdpa)
    AttentionMaskInterface.register(MASKED_GQA_SDPA, sdpa_mask)
    if config._attn_implementation == "sdpa":
        config._attn_implementation = MASKED_GQA_SDPA
