"""Asking a decoder for the next token of each row: the last layer's work that nothing reads is skipped.

A forward pass that fills a key/value cache and reads the logits of each row's last position uses
the last decoder layer's keys and values at every position (they go to the cache, and later
positions attend to them), but its queries, attention output, output projection and MLP only at
the last position: the hidden state it leaves at any other position goes nowhere, since there is no
layer after it and the logits are read at the last position alone. Within
:func:`last_position_only` the last layer computes those for the last position of each row; the
keys and values, the cache and the logits are as without it (up to the rounding of a product of
fewer rows).

Measured with ``benchmarks/evaluate_speed.py`` (the README's "Development" gives the figures): the
tiny demo model has 2 layers and the mid-size one 4, so it is a large share of their work; a 28-layer
7B model gains less.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

# set on an attention module while only its last query is read (eiad.models.attention reads it)
LAST_QUERY_ONLY = "eiad_last_query_only"


@contextmanager
def last_position_only(network: Any) -> Iterator[None]:
    """Within it, ``network``'s last decoder layer computes its output for each row's last position
    alone (keys and values for all); a network whose last layer is not a plain attention-and-MLP
    decoder layer runs as it is. Only for passes whose hidden states and logits are read at the last
    position, and not for training."""
    layer = last_decoder_layer(network)
    if layer is None:
        yield
        return
    modules = (layer.self_attn.o_proj, layer.mlp)
    for module in modules:
        module.forward = _on_last_position(module.forward)
    setattr(layer.self_attn, LAST_QUERY_ONLY, True)
    try:
        yield
    finally:
        for module in modules:
            del module.forward  # the class's forward again
        delattr(layer.self_attn, LAST_QUERY_ONLY)


def last_decoder_layer(network: Any) -> Any:
    """The language model's last decoder layer, if it is a plain one: attention with an output
    projection, then an MLP (linear-attention or other layers: None)."""
    decoder = network.get_decoder() if hasattr(network, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        return None
    layer = layers[-1]
    attention = getattr(layer, "self_attn", None)
    plain = all(isinstance(getattr(attention, name, None), torch.nn.Module)
                for name in ("q_proj", "k_proj", "v_proj", "o_proj"))
    return layer if plain and isinstance(getattr(layer, "mlp", None), torch.nn.Module) else None


def _on_last_position(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``forward`` of (rows, positions, features), run on each row's last position; zeros elsewhere."""

    def last_only(hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[1] == 1:
            return forward(hidden)
        return at_last_position(forward(hidden[:, -1:]), hidden.shape[1])

    return last_only


def at_last_position(last: torch.Tensor, positions: int) -> torch.Tensor:
    """``last`` (rows, 1, ...) laid out as (rows, ``positions``, ...): zeros but at the last position."""
    out = last.new_zeros(last.shape[0], positions, *last.shape[2:])
    out[:, -1:] = last
    return out
