"""What the families' offline tiny models share: sizes, tokenizer, chat template, seeded build.

A family's ``build_tiny`` states only what is its own (the transformers config and processor);
the tokenizer is a byte-level BPE trained on the DDQA text, and the model is initialised from a
seed at ``initializer_range`` and saved with its processor as an ordinary Hugging Face folder.
Qwen2-VL and Qwen2.5-VL share their tokenizer, processor and language model here too (a
family's package imports no other family's, so each stage depends on one family's folder).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eiad.models.tokenizer import train_byte_level_bpe
from eiad.params import Params


@dataclass(frozen=True)
class TinyConfig(Params):
    """Sizes every tiny model has (``model.tiny``); a family subclasses it to add its own keys."""

    seed: int
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    vision_depth: int
    vision_width: int
    vision_heads: int
    patch_size: int
    image_size: int
    # transformers' default (0.02) suits wide models; a 64-wide model trained from scratch
    # needs larger initial weights for the image signal to reach the answer (measured: AD
    # 0.68 -> 0.89 held-out after 1000 steps at 0.1)
    initializer_range: float

    def text_config(self, vocab_size: int, **extra: Any) -> dict[str, Any]:
        """The language model's sizes in transformers' names, plus the family's own keys."""
        return {
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": 4096,
            **extra,
        }

    def vision_config(self, **extra: Any) -> dict[str, Any]:
        """A ViT tower's sizes in transformers' (SigLIP-style) names, plus the family's own keys."""
        return {
            "hidden_size": self.vision_width,
            "intermediate_size": 2 * self.vision_width,
            "num_hidden_layers": self.vision_depth,
            "num_attention_heads": self.vision_heads,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            **extra,
        }


def tiny_tokenizer(corpus: Sequence[str], vocab_size: int, special_tokens: Sequence[str],
                   **roles: Any) -> tuple[Any, dict[str, int]]:
    """A fast tokenizer trained on ``corpus`` (``roles``: eos_token, pad_token...) and its special ids."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(corpus, vocab_size, special_tokens), **roles
    )
    return tokenizer, {token: tokenizer.convert_tokens_to_ids(token) for token in special_tokens}


def save_tiny(model_class: Any, model_config: Any, config: TinyConfig, processor: Any, eos_id: int, pad_id: int,
              dest: Path) -> None:
    """Initialise ``model_class`` from ``config.seed`` at ``config.initializer_range``; save it and its processor."""
    for sub_config in (model_config, model_config.text_config, model_config.vision_config):
        sub_config.initializer_range = config.initializer_range
    torch.manual_seed(config.seed)
    model = model_class(model_config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    for name in ("config.json", "generation_config.json"):
        _drop_version_stamp(dest / name)


def _drop_version_stamp(path: Path) -> None:
    """Remove the transformers release ``save_pretrained`` stamps into a config (as it writes them:
    indented, keys sorted): a model built from a seed then hashes the same under every release that
    writes the same weights and settings, so ``dvc.lock`` holds across machines."""
    config = json.loads(path.read_text())
    config.pop("transformers_version", None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def chatml_template(image: str) -> str:
    """ChatML (Qwen2's, LLaVA-OneVision's, MiniCPM-V 4's layout) with each image written as ``image``,
    the markup the family's processor expands into image tokens."""
    return (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        f"{{% if part['type'] == 'image' %}}{image}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


# --- Qwen2-VL and Qwen2.5-VL ----------------------------------------------------------------------

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>")


@dataclass(frozen=True)
class TinyQwenVLConfig(TinyConfig):
    """Sizes of a tiny Qwen2-VL or Qwen2.5-VL; images are resized to ``image_size`` x ``image_size``."""

    merge_size: int  # spatial merge: merge_size x merge_size patches become one token


def build_tiny_qwen(params: dict[str, Any], corpus: Sequence[str], dest: Path, classes: tuple[Any, Any, Any],
                    vision: Callable[[TinyQwenVLConfig], dict[str, Any]]) -> None:
    """A tiny Qwen2-VL or Qwen2.5-VL into ``dest``: ``classes`` are the family's (config, model,
    processor) classes, ``vision`` gives its vision tower's config from the sizes."""
    config_class, model_class, processor_class = classes
    config = TinyQwenVLConfig.parse(params, "model.tiny")
    tokenizer, ids = tiny_tokenizer(corpus, config.vocab_size, QWEN_SPECIAL_TOKENS, eos_token="<|im_end|>",
                                    pad_token="<|endoftext|>")
    model_config = config_class(
        text_config=_qwen_text_config(config, len(tokenizer), ids),
        vision_config=vision(config),
        tie_word_embeddings=False,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    processor = _qwen_processor(processor_class, config, tokenizer)
    save_tiny(model_class, model_config, config, processor, ids["<|im_end|>"], ids["<|endoftext|>"], dest)


def _qwen_processor(processor_class: Any, config: TinyQwenVLConfig, tokenizer: Any) -> Any:
    """Qwen2-VL's processor (also Qwen2.5-VL's) at the tiny model's fixed image size; each image
    becomes <|vision_start|><|image_pad|><|vision_end|>, one pad token per merged patch."""
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    pixels = config.image_size * config.image_size
    vision = {"patch_size": config.patch_size, "merge_size": config.merge_size, "temporal_patch_size": 2}
    return processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, **vision),
        video_processor=Qwen2VLVideoProcessor(**vision),
        tokenizer=tokenizer,
        chat_template=chatml_template("<|vision_start|><|image_pad|><|vision_end|>"),
    )


def _qwen_text_config(config: TinyQwenVLConfig, vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
    head_dim = config.hidden_size // config.heads
    # M-RoPE splits each head's rotary half into (time, height, width) sections
    mrope = [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6]
    return config.text_config(
        vocab_size,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
