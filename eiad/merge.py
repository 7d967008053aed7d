"""Fold a LoRA adapter into its base model and save a folder that loads on its own."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from eiad.io import atomic_directory
from eiad.models.base import VLMAdapter


def load_with_adapter(adapter: VLMAdapter, base: Path, lora: Path, trust_remote_code: bool = False) -> Any:
    from peft import PeftModel

    model = adapter.load_model(base, torch.float32, trust_remote_code)
    return PeftModel.from_pretrained(model, lora)


def merge_lora(adapter: VLMAdapter, base: Path, lora: Path, out: Path, trust_remote_code: bool = False) -> None:
    """``merge_and_unload`` and save weights, processor, generation config and any extra files."""
    processor = adapter.load_processor(base, trust_remote_code)
    merged = load_with_adapter(adapter, base, lora, trust_remote_code).merge_and_unload()
    with atomic_directory(out) as staging:
        merged.save_pretrained(staging)
        processor.save_pretrained(staging)
        for name in adapter.extra_files:  # e.g. a remote-code model's .py files
            if (base / name).is_file():
                shutil.copy2(base / name, staging / name)
