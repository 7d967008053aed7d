"""What every model family shares: loading, prompts, label-masked encoding, collation, generation.

A family adapter (one package per family in ``eiad/models/families``) subclasses :class:`VLMAdapter`
and states what differs: its LoRA target presets and, where it has one, an offline tiny model.
The default behaviour goes through the transformers Auto classes and the model's own chat
template, so a transformers-native family usually needs nothing else.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from eiad.errors import ConfigError, DataError
from eiad.questions import Prompt

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
KEPT_TEXTS = 4096  # rendered chats and tokenised texts kept (the latest), across processors


@dataclass
class Example:
    """One encoded sample: token-aligned tensors (1 x length) and the rest (pixel values...)."""

    tokens: dict[str, torch.Tensor]
    media: dict[str, torch.Tensor]
    # what is derived from the sample once and reused with it (training: its position ids)
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def length(self) -> int:
        return int(self.tokens["input_ids"].shape[-1])


class VLMAdapter:
    """Base adapter: a transformers-native VLM loaded through the Auto classes."""

    family: str = ""
    # LoRA target presets: name -> regex over module names (peft full-matches it)
    lora_presets: ClassVar[dict[str, str]] = {}
    # files a merged folder must carry over from the base model besides weights and processor
    extra_files: tuple[str, ...] = ()
    # the config.json model_type values of the models this adapter handles
    model_types: tuple[str, ...] = ()
    # the family's model code lives in its Hub repository: it runs only on an explicit opt-in
    remote_code: bool = False
    # media key -> the dimension its tensors are joined on in a batch (0 unless listed)
    media_concat_dims: ClassVar[dict[str, int]] = {}
    # the model continues generating from a key/value cache of a prompt's prefix (images included),
    # so the questions of one image share its encoding (eiad.evaluation.engine)
    prefix_cache: ClassVar[bool] = True
    # and several prompts continue from it together, rows padded between prefix and question
    # (not for recurrent layers, whose state the padding would run through)
    batched_continuation: ClassVar[bool] = True
    # attributes of the model (dotted paths) that a forward pass leaves with one row per prompt and
    # the steps continuing from its cache read (Qwen's M-RoPE offsets): the engine selects their
    # rows as it selects the cache's when questions of several images continue together
    row_state: ClassVar[tuple[str, ...]] = ()
    # the language model takes a padding-free training batch (eiad.training.packing): records in one
    # row, restarting positions, the records' bounds passed to its attention
    padding_free: ClassVar[bool] = False

    @property
    def groups_images(self) -> bool:
        """Whether the questions of several images are batched together (eiad.evaluation.engine)."""
        return self.prefix_cache and self.batched_continuation

    # --- loading ------------------------------------------------------------------------

    def load_processor(self, model_dir: Path, trust_remote_code: bool = False) -> Any:
        from transformers import AutoProcessor

        if not any((model_dir / name).is_file() for name in PROCESSOR_FILES):
            raise DataError(model_dir, f"model folder has no processor (none of {list(PROCESSOR_FILES)})")
        return AutoProcessor.from_pretrained(model_dir, trust_remote_code=trust_remote_code)

    def load_model(self, model_dir: Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> Any:
        from transformers import AutoModelForImageTextToText

        if not (model_dir / "config.json").is_file():
            raise DataError(model_dir, "is not a model folder (no config.json)")
        return AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, trust_remote_code=trust_remote_code)

    def lora_targets(self, name_or_regex: str) -> str:
        """A preset's regex, or the argument itself when it is not a preset name."""
        return self.lora_presets.get(name_or_regex, name_or_regex)

    # --- prompts and encoding -----------------------------------------------------------

    def messages(self, prompt: Prompt, answer: str | None = None) -> list[dict[str, Any]]:
        """The prompt as a chat in the Hugging Face multimodal content format."""
        content = [{"type": "text", "text": part} if isinstance(part, str) else {"type": "image"} for part in prompt]
        chat: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if answer is not None:
            chat.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return chat

    def render(self, processor: Any, prompt: Prompt, answer: str | None = None) -> str:
        """The chat text of ``prompt`` with the generation prompt, or followed by ``answer``.

        It depends on the prompt's text and where its images are, not on the images, so each such
        layout is rendered once (the latest are kept): MMAD repeats its questions' texts over many
        images, and the engine renders a prompt up to three times (a Jinja render took 0.26 ms, a
        tenth of the tiny model's time per question)."""
        layout = tuple(part if isinstance(part, str) else None for part in prompt)
        # the template in the key: a processor whose template is replaced renders anew
        return _rendered(self, processor, str(getattr(processor, "chat_template", None)), layout, answer)

    def encode(self, processor: Any, prompt: Prompt, answer: str | None = None) -> Example:
        """Tokenise a prompt (and its answer); labels cover only the answer and end of turn."""
        images = [part for part in prompt if not isinstance(part, str)]
        prompt_text = self.render(processor, prompt)
        encoded = self.process(processor, prompt_text, images)
        tokens = {k: v for k, v in encoded.items() if v.dim() == 2 and v.shape == encoded["input_ids"].shape}
        media = {k: v for k, v in encoded.items() if k not in tokens}
        if answer is None:
            return Example(tokens, media)
        full_text = self.render(processor, prompt, answer)
        if not full_text.startswith(prompt_text):
            raise ConfigError(f"{self.family}: the chat template renders the prompt differently with an answer")
        completion = processor.tokenizer(full_text[len(prompt_text):], add_special_tokens=False, return_tensors="pt")
        answer_ids = completion["input_ids"]
        # other token-aligned tensors (attention mask, token types) continue as text tokens do
        continuation = {"input_ids": answer_ids, "attention_mask": torch.ones_like(answer_ids)}
        tokens = {
            key: torch.cat([value, continuation.get(key, torch.zeros_like(answer_ids))], dim=1)
            for key, value in tokens.items()
        }
        prompt_length = encoded["input_ids"].shape[1]
        labels = tokens["input_ids"].clone()
        labels[:, :prompt_length] = IGNORE_INDEX
        tokens["labels"] = labels
        return Example(tokens, media)

    def encode_alike(self, processor: Any, prompts: Sequence[Prompt]) -> list[Example]:
        """Prompts with the same images and the same text before their last image, encoded with one
        processor call: the others reuse the first's images and tokens up to its last image and
        tokenise only their own text after it.

        That equals encoding each alone when the shared part ends on an added token (tokenisers
        split added tokens out first), which is checked on the first prompt; otherwise, or for
        prompts that do not share that part, each is encoded on its own.
        """
        first = self.encode(processor, prompts[0])
        tokenizer, head = processor.tokenizer, self._text_to_last_image(processor, prompts[0])
        alike = head is not None and all(_same_through_last_image(prompts[0], prompt) for prompt in prompts[1:])
        if alike:
            texts = [self.render(processor, prompt) for prompt in prompts]
            tails = [text_tokens(tokenizer, text[len(head):], special_tokens=False)["input_ids"] for text in texts]
            shared = first.length - tails[0].shape[1]
            ids = first.tokens["input_ids"]
            alike = shared > 0 and torch.equal(ids[:, shared:], tails[0]) \
                and int(ids[0, shared - 1]) in tokenizer.added_tokens_decoder and all(t.startswith(head) for t in texts)
        if not alike:
            return [first, *(self.encode(processor, prompt) for prompt in prompts[1:])]
        examples = [first]
        for tail in tails[1:]:
            # the text after the images is plain text: attended to, of no image's type
            extra = {"input_ids": tail, "attention_mask": torch.ones_like(tail)}
            tokens = {key: torch.cat([value[:, :shared], extra.get(key, torch.zeros_like(tail))], dim=1)
                      for key, value in first.tokens.items()}
            examples.append(Example(tokens, first.media))
        return examples

    def _text_to_last_image(self, processor: Any, prompt: Prompt) -> str | None:
        """The chat text rendered up to the end of the prompt's last image (None without images)."""
        last = _last_image(prompt)
        if last is None:
            return None
        mark = "\ue000"  # a private-use character no prompt holds: where the text after the images starts
        text = self.render(processor, [*prompt[:last + 1], mark])
        return text[:text.index(mark)] if mark in text else None

    def process(self, processor: Any, text: str, images: list[Any]) -> Mapping[str, torch.Tensor]:
        """The processor's tensors for one rendered prompt and its images (a batch of one)."""
        # one prompt's images as one nested list: the multi-image form every processor reads
        # alike (LLaVA-OneVision would otherwise take each image as a prompt of its own)
        return processor(text=[text], images=[images] if images else None, return_tensors="pt")

    def position_ids(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """The position ids ``model``'s forward pass would compute for a collated ``batch``, for a
        family where that is costly enough to compute in the data-loader workers instead; None:
        the forward pass computes its own."""
        return None

    def collate(self, examples: Sequence[Example], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad token-aligned tensors (labels with -100) and join the media tensors (see :func:`concat_padded`)."""
        longest = max(example.length for example in examples)
        batch: dict[str, torch.Tensor] = {}
        for key in examples[0].tokens:
            fill = pad_token_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
            rows = []
            for example in examples:
                value = example.tokens[key]
                pad = torch.full((1, longest - value.shape[1]), fill, dtype=value.dtype)
                rows.append(torch.cat([pad, value] if padding_side == "left" else [value, pad], dim=1))
            batch[key] = torch.cat(rows, dim=0)
        for key in examples[0].media:
            batch[key] = concat_padded([example.media[key] for example in examples], self.media_concat_dims.get(key, 0))
        return batch

    # --- generation ---------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, model: Any, processor: Any, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        """Greedy answers to a batch of prompts."""
        tokenizer = processor.tokenizer
        examples = [self.encode(processor, prompt) for prompt in prompts]
        batch = self.collate(examples, tokenizer.pad_token_id, padding_side="left")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        output = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None,
        )
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    @torch.inference_mode()
    def next_token_logits(self, model: Any, processor: Any, prompts: Sequence[Prompt]) -> torch.Tensor:
        """Each prompt's logits for the first answer token (prompts x vocabulary)."""
        batch = self.collate([self.encode(processor, prompt) for prompt in prompts], processor.tokenizer.pad_token_id,
                             padding_side="left")
        return model(**{key: value.to(model.device) for key, value in batch.items()}).logits[:, -1]

    # --- an offline model -----------------------------------------------------------------

    def build_tiny(self, params: dict[str, Any], corpus: Sequence[str], dest: Path) -> None:
        """Build a small randomly initialised model of this family into ``dest`` (offline)."""
        raise ConfigError(f"model family {self.family!r} has no offline tiny model; use model.source: hub")


@functools.lru_cache(maxsize=KEPT_TEXTS)
def _rendered(adapter: VLMAdapter, processor: Any, template: str, layout: tuple[str | None, ...],
              answer: str | None) -> str:
    """``layout``: the prompt's text parts, None where an image is."""
    return processor.apply_chat_template(adapter.messages(layout, answer), add_generation_prompt=answer is None,
                                         tokenize=False)


def text_tokens(tokenizer: Any, text: str, special_tokens: bool = True) -> dict[str, torch.Tensor]:
    """What ``tokenizer([text], return_tensors="pt")`` returns (1 x length tensors), each text
    tokenised once (the latest are kept): MMAD repeats its texts over images, and images of one
    size expand to the same prompt text (the tokenizer took 6% of the tiny model's time to answer
    1-shot questions by choice scoring)."""
    return {key: ids.clone() for key, ids in _tokenised(tokenizer, text, special_tokens).items()}


@functools.lru_cache(maxsize=KEPT_TEXTS)
def _tokenised(tokenizer: Any, text: str, special_tokens: bool) -> dict[str, torch.Tensor]:
    return dict(tokenizer([text], add_special_tokens=special_tokens, return_tensors="pt"))


def _last_image(prompt: Prompt) -> int | None:
    """The index of the prompt's last image (None without images)."""
    return max((i for i, part in enumerate(prompt) if not isinstance(part, str)), default=None)


def _same_through_last_image(one: Prompt, other: Prompt) -> bool:
    """Whether two prompts hold the same parts up to their last image: the same images (the same
    objects, as a cached loader returns them) and the same text between them."""
    last = _last_image(one)
    if last is None:
        return False
    return len(other) > last and all(isinstance(part, str) for part in other[last + 1:]) \
        and all(a == b if isinstance(a, str) else a is b for a, b in zip(one[:last + 1], other))


def standard_presets(llm: str, projector: str, vision: str) -> dict[str, str]:
    """The presets every family has, from regexes over its language model, projector and vision tower."""
    return {
        "llm": llm,
        "llm+projector": f"({llm}|{projector})",
        "all": f"({llm}|{projector}|{vision}|lm_head)",
    }


def concat_padded(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """Concatenate on ``dim`` after zero-padding every other dimension to the largest size.

    Image tensors change shape from prompt to prompt where the number of images, sub-images or
    tiles differs (1-shot vs 0-shot, image splitting, any-resolution tiling: Idefics3 gives
    ``(prompts, images, 3, H, W)``, LLaVA-OneVision ``(images, tiles, 3, H, W)``). Their
    processors pad the same way within one call, and the models skip the padding (an all-zero
    image is dropped, tiles beyond an image's count are never read). Equal shapes are unchanged.
    """
    ndim = tensors[0].dim()
    dim %= ndim
    largest = [max(tensor.shape[d] for tensor in tensors) for d in range(ndim)]
    padded = []
    for tensor in tensors:
        # torch's pad lists (before, after) per dimension, last dimension first
        pad = [size for d in reversed(range(ndim)) for size in (0, 0 if d == dim else largest[d] - tensor.shape[d])]
        padded.append(torch.nn.functional.pad(tensor, pad))
    return torch.cat(padded, dim=dim)


def matching_modules(model: Any, pattern: str) -> list[str]:
    """Names of the linear-like modules that a LoRA target regex selects (peft full-matches)."""
    regex = re.compile(pattern)
    return [name for name, module in model.named_modules()
            if regex.fullmatch(name) and isinstance(module, (torch.nn.Linear, torch.nn.Conv1d))]
