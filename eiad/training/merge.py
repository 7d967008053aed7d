"""Fold a LoRA adapter into its base model and save a folder that loads on its own."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from eiad.io import atomic_directory
from eiad.models.config import ModelHandle


def load_with_adapter(model: ModelHandle, base: Path, lora: Path) -> Any:
    """The base model in fp32 with the LoRA adapter of ``lora`` on it."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model.model(base), lora)


def merge_lora(model: ModelHandle, base: Path, lora: Path, out: Path) -> None:
    """``merge_and_unload`` and save weights, processor, generation config and any extra files."""
    processor = model.processor(base)
    merged = load_with_adapter(model, base, lora).merge_and_unload()
    with atomic_directory(out) as staging:
        merged.save_pretrained(staging)
        processor.save_pretrained(staging)
        for name in model.adapter.extra_files:  # e.g. a remote-code model's .py files
            if (base / name).is_file():
                shutil.copy2(base / name, staging / name)
