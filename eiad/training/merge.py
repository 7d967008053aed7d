"""Fold a LoRA adapter into its base model and save a folder that loads on its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from eiad.io import atomic_directory, atomic_write_json
from eiad.models.config import ModelHandle

CONFIG = "config.json"
# the one thing merging changes in a model's config: the dtype its weights are stored in
# (transformers 4.x names it torch_dtype, 5.x dtype)
DTYPE_KEYS = ("torch_dtype", "dtype")


def load_with_adapter(model: ModelHandle, base: Path, lora: Path) -> Any:
    """The base model in fp32 with the LoRA adapter of ``lora`` on it."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model.model(base), lora)


def merge_lora(model: ModelHandle, base: Path, lora: Path, out: Path) -> None:
    """``merge_and_unload`` and save weights, processor, generation config and any extra files.

    A remote-code model keeps its base model's config file (see :func:`keep_base_config`).
    """
    processor = model.processor(base)
    merged = load_with_adapter(model, base, lora).merge_and_unload()
    with atomic_directory(out) as staging:
        merged.save_pretrained(staging)
        processor.save_pretrained(staging)
        for name in model.adapter.extra_files:  # e.g. a remote-code model's .py files
            if (base / name).is_file():
                shutil.copy2(base / name, staging / name)
        if model.adapter.remote_code:
            keep_base_config(base, staging)


def keep_base_config(base: Path, merged: Path) -> None:
    """Put the base model's ``config.json`` in the merged folder, with only the stored dtype updated.

    A remote-code model's config is read by the model's own code under the transformers it was
    written for. transformers 5 re-serialises it in its own format, e.g. ``rope_theta`` moved
    into ``rope_parameters``, where transformers 4.45 (ms-swift 2.x's) finds no ``rope_theta``
    and silently uses 10000 instead of MiniCPM-V-2.6's 1e6. The base file loads alike under both.
    """
    config = json.loads((base / CONFIG).read_text(encoding="utf-8"))
    saved = json.loads((merged / CONFIG).read_text(encoding="utf-8"))
    dtype = next((saved[key] for key in reversed(DTYPE_KEYS) if saved.get(key)), None)
    if dtype is not None:
        for key in [key for key in DTYPE_KEYS if key in config] or [DTYPE_KEYS[0]]:
            config[key] = dtype
    atomic_write_json(merged / CONFIG, config)
