"""MiniCPM-V 2.6's processor: the checkpoint's tokenizer and image settings, and a prompt (and answer)
as token ids and image tensors, as ``chat()`` and ms-swift build them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from eiad.errors import ConfigError, DataError, EiadError
from eiad.models.families.minicpmv2_6.batching import image_bounds, reshape_by_patch, to_bytes
from eiad.models.families.minicpmv2_6.slicing import FAMILY, ImageConfig
from eiad.questions import Prompt

IMAGE_TAG = "(<image>./</image>)"  # chat()'s stand-in for an image, expanded after templating
TERMINATORS = ("<|im_end|>", "<|endoftext|>")  # chat() stops on either


def expand_image_tags(text: str, placeholders: Sequence[str]) -> str:
    """Replace each :data:`IMAGE_TAG` in ``text``, in order, by the next placeholder."""
    chunks = text.split(IMAGE_TAG)
    if len(chunks) != len(placeholders) + 1:
        raise EiadError(f"{FAMILY}: {len(placeholders)} images but {len(chunks) - 1} {IMAGE_TAG} tags in the prompt "
                        f"(does the question text contain the tag?)")
    return "".join(chunk + placeholder for chunk, placeholder in zip(chunks, placeholders)) + chunks[-1]


def through_first(ids: Sequence[int], stops: set[int]) -> list[int]:
    """``ids`` up to and including the first of ``stops`` (all of them when none occurs)."""
    ids = list(ids)
    end = next((i for i, token in enumerate(ids) if token in stops), len(ids) - 1)
    return ids[:end + 1]


@dataclass
class MiniCPMVProcessor:
    """The checkpoint's tokenizer and image settings: all the adapter needs to build inputs."""

    tokenizer: Any
    settings: dict[str, Any]  # preprocessor_config.json as read, saved back unchanged
    images: ImageConfig = field(init=False)

    def __post_init__(self) -> None:
        self.images = ImageConfig.from_dict(self.settings)

    def ids(self, *tokens: str) -> list[int]:
        return [self.tokenizer.convert_tokens_to_ids(token) for token in tokens]

    def save_pretrained(self, dest: str | Path) -> None:
        self.tokenizer.save_pretrained(dest)
        (Path(dest) / "preprocessor_config.json").write_text(json.dumps(self.settings, indent=2) + "\n")


def chat_ids(processor: MiniCPMVProcessor, prompt: Prompt, placeholders: Sequence[str],
             answer: str | None) -> tuple[list[int], int]:
    """The chat's token ids and the prompt's length in them, as ``chat()`` renders it.

    Images become :data:`IMAGE_TAG` lines in the user turn, the tokenizer's chat template adds the
    turns, and each tag is then expanded. An answer is cut after its ``<|im_end|>``, as ms-swift's
    response ends.
    """
    tokenizer = processor.tokenizer
    user = "\n".join(IMAGE_TAG if not isinstance(part, str) else part for part in prompt)
    chat = [{"role": "user", "content": user}]
    prompt_text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(expand_image_tags(prompt_text, placeholders), add_special_tokens=False)["input_ids"]
    if answer is None:
        return ids, len(ids)
    full_text = tokenizer.apply_chat_template([*chat, {"role": "assistant", "content": answer}], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ConfigError(f"{FAMILY}: the chat template renders the prompt differently with an answer")
    completion = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    end_of_turn = processor.ids(TERMINATORS[0])[0]
    if end_of_turn not in completion:
        raise ConfigError(f"{FAMILY}: the chat template does not close the answer with {TERMINATORS[0]}")
    return ids + completion[:completion.index(end_of_turn) + 1], len(ids)


def image_media(processor: MiniCPMVProcessor, slices: Sequence[Image.Image],
                input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Slices side by side as bytes, their normalisation, their patch grids and their spans in ``input_ids``."""
    config, patch = processor.images, processor.images.patch_size
    pixels = [reshape_by_patch(to_bytes(image), patch) for image in slices]
    return {
        "pixel_values": torch.cat(pixels, dim=2) if pixels else torch.zeros(3, patch, 0, dtype=torch.uint8),
        "mean_std": torch.tensor([config.norm_mean, config.norm_std], dtype=torch.float32),
        "tgt_sizes": torch.tensor([(image.height // patch, image.width // patch) for image in slices],
                                  dtype=torch.int32).reshape(-1, 2),
        "image_bound": image_bounds(input_ids, processor.ids(config.im_start, config.slice_start),
                                    processor.ids(config.im_end, config.slice_end)),
    }


def check_processor(model_dir: Path, processor: MiniCPMVProcessor) -> None:
    if not processor.settings.get("slice_mode", True):
        raise DataError(model_dir, "preprocessor_config.json turns slicing off, which MiniCPM-V 2.6 never does")
    vocabulary = processor.tokenizer.get_vocab()
    missing = [token for token in (*processor.images.tokens, *TERMINATORS) if token not in vocabulary]
    if missing:
        raise DataError(model_dir, f"the tokenizer lacks MiniCPM-V's special tokens {missing}")
