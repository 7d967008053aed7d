"""MiniCPM-V 2.6's own model code (written for transformers 4.4x) made to run on 5.x at load time,
editing no downloaded file (REFERENCE.md §3b: five problems, each fixed here)."""

from __future__ import annotations

import builtins
import functools
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from eiad.errors import ConfigError
from eiad.models.families.minicpmv2_6.slicing import FAMILY


def prepare_4d_attention_mask(mask: torch.Tensor, dtype: torch.dtype, tgt_len: int | None = None) -> torch.Tensor:
    """transformers 4.x's ``_prepare_4d_attention_mask``: [batch, src] 1/0 -> additive [batch, 1, tgt, src]."""
    batch, source = mask.shape
    target = source if tgt_len is None else tgt_len
    expanded = mask[:, None, None, :].expand(batch, 1, target, source).to(dtype)
    return (1.0 - expanded).masked_fill((1.0 - expanded).bool(), torch.finfo(dtype).min)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except (ImportError, OSError, RuntimeError):  # absent, or (torchvision) built for another torch
        return False
    return True


@contextmanager
def legacy_imports() -> Iterator[None]:
    """While the checkpoint's code is imported: what it needs and transformers 5.x or torch lack.

    (1) ``transformers.modeling_attn_mask_utils`` is gone (only ``_prepare_4d_attention_mask`` is
    used); (2) ``modeling_minicpmv.py`` imports torchvision without using it, and transformers
    refuses to load a file whose imports are missing; (3) ``resampler.py`` annotates with ``List``,
    which it used to get from torch's star imports. All three are undone on exit.
    """
    shims: dict[str, ModuleType] = {}
    if not _importable("transformers.modeling_attn_mask_utils"):
        shims["transformers.modeling_attn_mask_utils"] = ModuleType("transformers.modeling_attn_mask_utils")
        shims["transformers.modeling_attn_mask_utils"]._prepare_4d_attention_mask = prepare_4d_attention_mask
    if not _importable("torchvision"):
        shims["torchvision"] = ModuleType("torchvision")
    add_list = not hasattr(builtins, "List")
    saved = {name: sys.modules.get(name) for name in shims}
    sys.modules.update(shims)
    if add_list:
        builtins.List = list  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if add_list:
            del builtins.List  # type: ignore[attr-defined]


def _calling_post_init(model_class: type) -> type:
    """(4) ``MiniCPMV.__init__`` never calls ``post_init()``, which 5.x's ``from_pretrained`` relies on."""
    if not model_class.__dict__.get("_eiad_post_init", False):
        init = model_class.__init__

        @functools.wraps(init)
        def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
            init(self, config, *args, **kwargs)
            self.post_init()

        model_class.__init__ = __init__
        model_class._eiad_post_init = True
    return model_class


def model_class(model_dir: Path) -> type:
    """The checkpoint's own ``MiniCPMV`` class, imported and patched to build under transformers 5.x."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    with legacy_imports():
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
        return _calling_post_init(get_class_from_dynamic_module(config.auto_map["AutoModel"], model_dir))


def input_grads_as_copies(self: Any) -> None:
    """``enable_input_require_grads`` whose hook hands on a non-leaf copy of the embeddings.

    ``get_vllm_embedding`` scatters the image features into the token embeddings in place, which
    autograd refuses on the leaf tensor the stock hook produces (needed for gradient checkpointing).
    """
    def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output.requires_grad_(True)
        return output.clone()

    layers = {id(layer): layer for layer in (self.get_input_embeddings(), self.vpm.get_input_embeddings())}
    self._require_grads_hooks = [layer.register_forward_hook(hook) for layer in layers.values()]


def require_opt_in(trust_remote_code: bool) -> None:
    if not trust_remote_code:
        raise ConfigError(
            f"model family {FAMILY!r} runs Python code that ships with the checkpoint; review that code at the "
            f"pinned revision, then set model.source: hub and model.hub.trust_remote_code: true"
        )
