"""SmolVLM (the Idefics3 architecture): presets and the tiny model.

SmolVLM-256M/500M/2.2B-Instruct folders are ``Idefics3ForConditionalGeneration``; SmolVLM2 folders
(``SmolVLMForConditionalGeneration``) load through the same Auto classes and share the module
names, so the presets fit both. The tiny model is an Idefics3 with a SigLIP-style vision tower,
a pixel-shuffle connector and a Llama language model, with SmolVLM's chat layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eiad.errors import ConfigError
from eiad.models.adapter import VLMAdapter, standard_presets
from eiad.models.tiny import TinyConfig, save_tiny, tiny_tokenizer

_LLM = r"model\.text_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PROJECTOR = r"model\.connector\.modality_projection\.proj"
_VISION = r"model\.vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                  "<global-img>")

# SmolVLM's layout: "<|im_start|>User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n"
# (a colon and a space before text, a bare colon before an image); the processor expands each
# <image> into its fake-token-wrapped run of image tokens.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True)
class TinySmolVLMConfig(TinyConfig):
    """Sizes of the offline model; images are resized to ``image_size`` x ``image_size`` (no splitting)."""

    scale_factor: int  # pixel shuffle: scale_factor x scale_factor patches become one token

    def __post_init__(self) -> None:
        if self.image_size % (self.patch_size * self.scale_factor):
            raise ConfigError("model.tiny: image_size must be a multiple of patch_size x scale_factor")


class SmolVLMAdapter(VLMAdapter):
    family = "smolvlm"
    model_types = ("idefics3", "smolvlm")
    lora_presets = standard_presets(_LLM, _PROJECTOR, _VISION)

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        from transformers import (
            Idefics3Config,
            Idefics3ForConditionalGeneration,
            Idefics3ImageProcessor,
            Idefics3Processor,
        )

        config = TinySmolVLMConfig.parse(params, "model.tiny")
        tokenizer, ids = tiny_tokenizer(corpus, config.vocab_size, SPECIAL_TOKENS, bos_token="<|im_start|>",
                                        eos_token="<end_of_utterance>", pad_token="<|endoftext|>")
        model_config = Idefics3Config(
            text_config=config.text_config(
                len(tokenizer),
                model_type="llama",
                bos_token_id=ids["<|im_start|>"],
                eos_token_id=ids["<end_of_utterance>"],
                pad_token_id=ids["<|endoftext|>"],
            ),
            vision_config=config.vision_config(),
            scale_factor=config.scale_factor,
            image_token_id=ids["<image>"],
            pad_token_id=ids["<|endoftext|>"],
        )
        side = {"longest_edge": config.image_size}
        processor = Idefics3Processor(
            image_processor=Idefics3ImageProcessor(size=side, max_image_size=side, do_image_splitting=False),
            tokenizer=tokenizer,
            image_seq_len=(config.image_size // config.patch_size) ** 2 // config.scale_factor**2,
            chat_template=CHAT_TEMPLATE,
        )
        save_tiny(Idefics3ForConditionalGeneration, model_config, config, processor, ids["<end_of_utterance>"],
                  ids["<|endoftext|>"], dest)


ADAPTER = SmolVLMAdapter()
