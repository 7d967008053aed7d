"""Asking a model questions, several images at a time: each image's images and the prompt prefix
its questions share are encoded once, and the questions continue from that prefix's key/value cache.

The prefixes of a group of images are prefilled together (left-padded to one width). A batch of
questions, from any of the group's images, is laid out as ``[its image's prefix][padding][question]``:
each row continues from its own image's rows of the cache, the padding is masked, and generation
numbers positions by the attention mask, so each question's tokens sit at the positions they have
when asked alone. Greedy answers therefore equal those of asking each question from scratch (tests
compare them question by question, family by family). Rows are sorted by length before they are cut
into batches, so little is padded. ``choice`` answers read the likelihood of each offered letter at
the answer position (one step) instead of generating.

A family whose model cannot continue from a cache (``VLMAdapter.prefix_cache`` false) is asked one
question at a time from scratch; one whose rows cannot be padded (``batched_continuation`` false)
continues one image and one question at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from PIL import Image

from eiad.errors import ConfigError
from eiad.evaluation.config import AnswerMode
from eiad.memory import keep_freed_memory
from eiad.models.adapter import Example
from eiad.models.attention import use_masked_gqa_sdpa
from eiad.models.config import ModelHandle
from eiad.models.last_layer import last_position_only
from eiad.questions import PromptPlan, load_prompt

Loader = Callable[[str], Image.Image]


@dataclass(frozen=True)
class Ask:
    """One question for the model: its prompt, its answer's token budget and, for a multiple-choice
    question, the letters offered (``choice`` mode picks among them)."""

    plan: PromptPlan
    budget: int
    options: dict[str, str] | None = None


Row = tuple[int, Ask]  # a question and the index of the image (in its group) whose prefix it continues


class Engine:
    """One model asked with one answer mode, ``batch_size`` questions per forward pass."""

    def __init__(self, model: ModelHandle, network: Any, processor: Any, mode: AnswerMode, batch_size: int) -> None:
        self.adapter, self.network, self.processor, self.mode = model.adapter, network, processor, mode
        use_masked_gqa_sdpa(network.config.get_text_config())  # padded rows: no copies of grouped heads
        if network.device.type == "cpu":
            keep_freed_memory()  # each pass reuses the pages of the pass before (eiad.memory)
        self.tokenizer = processor.tokenizer
        self.rows_per_batch = batch_size if self.adapter.batched_continuation else 1
        self._letters: dict[tuple[str, ...], list[int]] = {}  # each set of option letters tokenised once

    def prefixes(self, probes: Sequence[Sequence[PromptPlan]], load: Loader) -> Prefixes:
        """The encoded prefixes of a group of images; ``probes``: each image's prompts (as far as known
        before answering: with history, without it), from which its shared prefix is found."""
        if len(probes) > 1 and not self.adapter.groups_images:
            raise ConfigError(f"{self.adapter.family}: its questions are asked one image at a time")
        return Prefixes(self, probes, cache(load))

    def answer_all(self, asks: Sequence[Sequence[Ask]], load: Loader) -> list[list[str]]:
        """Every answer to each image's ``asks`` (prompts known up front)."""
        prefixes = self.prefixes([[ask.plan for ask in image] for image in asks], load)
        rows = [(image, ask) for image, image_asks in enumerate(asks) for ask in image_asks]
        flat = iter(prefixes.answer(rows))
        return [[next(flat) for _ in image] for image in asks]

    def letter_ids(self, letters: Sequence[str]) -> list[int]:
        """The token of each option letter (tokenised once per set of letters: 13% of a tiny model's
        choice scoring went to tokenising the same four letters for every question)."""
        key = tuple(letters)
        if key not in self._letters:
            ids = [self.tokenizer.encode(letter, add_special_tokens=False) for letter in letters]
            if any(len(one) != 1 for one in ids) or len({one[0] for one in ids}) != len(ids):
                raise ConfigError(f"evaluate.answer: choice needs each option letter to be one token; the tokenizer "
                                  f"splits {list(letters)} into {ids}")
            self._letters[key] = [one[0] for one in ids]
        return self._letters[key]

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True).strip()

    @torch.inference_mode()
    def generate(self, tokens: dict[str, torch.Tensor], budget: int, **options: Any) -> Any:
        # each pass reads its rows' last positions alone: the last layer skips the rest (the same answers)
        with last_position_only(self.network):
            return self.network.generate(
                **tokens, max_new_tokens=budget, do_sample=False, num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None, **options,
            )

    def pick(self, logits: torch.Tensor, ask: Ask) -> str:
        """The offered letter ``logits`` (one answer position's) rank highest."""
        letters = list(ask.options or {})
        return letters[int(torch.argmax(logits[self.letter_ids(letters)]))]


class Prefixes:
    """The prefixes of a group of images, prefilled together, and the questions continuing from them."""

    def __init__(self, engine: Engine, probes: Sequence[Sequence[PromptPlan]], load: Loader) -> None:
        self.engine, self.load = engine, load
        self.encoded: dict[str, Example] = {}
        self.heads: list[torch.Tensor] = []  # each image's prefix token ids
        if engine.adapter.prefix_cache and probes:
            self._prefill([self._encode_probes(plans) for plans in probes])

    def answer(self, rows: Sequence[Row]) -> list[str]:
        """Answers to ``rows``, in batches of one kind and budget: generated text, or the likeliest offered letter."""
        answers = [""] * len(rows)
        kinds: dict[tuple[bool, int], list[tuple[int, int, Example]]] = {}
        for index, (image, ask) in enumerate(rows):
            example = self._encode(ask.plan) if self.heads else None
            if example is None or not _starts_with(example.tokens["input_ids"][0], self.heads[image]):
                answers[index] = self._from_scratch(ask)  # a prompt outside its image's prefix (not expected)
                continue
            kinds.setdefault((self._chooses(ask), ask.budget), []).append((index, image, example))
        for (choose, budget), members in kinds.items():
            members.sort(key=lambda member: member[2].length - len(self.heads[member[1]]))  # little padding
            size = self.engine.rows_per_batch
            for chunk in (members[first:first + size] for first in range(0, len(members), size)):
                outputs = self._continue(chunk, [rows[index][1] for index, _, _ in chunk], choose, budget)
                for (index, _, _), output in zip(chunk, outputs):
                    answers[index] = output
        return answers

    def _chooses(self, ask: Ask) -> bool:
        return self.engine.mode == "choice" and bool(ask.options)

    # --- with the prefix cache ------------------------------------------------------------------

    def _encode_probes(self, plans: Sequence[PromptPlan]) -> Example:
        """Encode one image's prompts; its prefix: the longest token prefix they share (every image in
        it), and at least one token of each prompt is left to ask anew."""
        engine = self.engine
        examples = engine.adapter.encode_alike(engine.processor, [load_prompt(plan, self.load) for plan in plans])
        self.encoded.update({repr(plan): example for plan, example in zip(plans, examples)})
        ids = [example.tokens["input_ids"][0] for example in examples]
        length = shared_prefix_length(ids)
        self.heads.append(ids[0][:length])
        return Example({key: value[:, :length] for key, value in examples[0].tokens.items()}, examples[0].media)

    def _encode(self, plan: PromptPlan) -> Example:
        key = repr(plan)
        if key not in self.encoded:
            self.encoded[key] = self.engine.adapter.encode(self.engine.processor, load_prompt(plan, self.load))
        return self.encoded[key]

    def _prefill(self, heads: list[Example]) -> None:
        """Run every image's prefix once (one batch, left-padded), keeping the key/value cache and the
        model's other per-row state (``VLMAdapter.row_state``)."""
        engine = self.engine
        batch = engine.adapter.collate(heads, engine.tokenizer.pad_token_id, padding_side="left")
        batch = {key: value.to(engine.network.device) for key, value in batch.items()}
        self.cache = engine.generate(batch, 1, return_dict_in_generate=True).cache
        self.rows = {key: batch[key] for key in heads[0].tokens}
        self.state = {path: _attribute(engine.network, path) for path in engine.adapter.row_state}

    def _continue(self, chunk: Sequence[tuple[int, int, Example]], asks: Sequence[Ask], choose: bool,
                  budget: int) -> list[str]:
        engine = self.engine
        images = torch.tensor([image for _, image, _ in chunk], device=engine.network.device)
        tokens, width = self._batch(chunk, images)
        # one step appends once; generation's steps would copy a growing cache again each time
        cache = self._selected(images) if choose else self._preallocated(images, width + budget)
        for path, value in self.state.items():
            if value is not None:
                _set_attribute(engine.network, path, value[images])
        if choose:
            logits = engine.generate(tokens, 1, cache=cache, output_logits=True, return_dict_in_generate=True).logits[0]
            return [engine.pick(row, ask) for row, ask in zip(logits, asks)]
        output = engine.generate(tokens, budget, cache=cache)
        return [engine.decode(row[width:].tolist()) for row in output]

    def _selected(self, images: torch.Tensor) -> Any:
        """The prefix cache's ``images`` rows, in a copy (generation extends the cache it is given)."""
        cache = copy.deepcopy(self.cache)
        if len(images) > 1 or len(self.heads) > 1:
            cache.batch_select_indices(images)
        return cache

    def _preallocated(self, images: torch.Tensor, room: int) -> Any:
        """The prefix cache's ``images`` rows in a cache of ``room`` positions that generation fills in
        place: a growing cache copies every row's keys and values again at each generated token
        (measured at mid size, 1-shot: 3% more questions/s; for choice scoring's single step the
        growing cache is faster). Where the model's layers are not all plain attention layers, the
        growing cache."""
        from transformers import StaticCache
        from transformers.cache_utils import DynamicLayer, StaticLayer

        cache = StaticCache(config=self.engine.network.config, max_cache_len=room)
        prefix = getattr(self.cache, "layers", [])
        if len(cache.layers) != len(prefix) or any(type(layer) is not StaticLayer for layer in cache.layers) \
                or any(type(layer) is not DynamicLayer for layer in prefix):
            return self._selected(images)
        for layer, rows in zip(cache.layers, prefix):
            layer.update(rows.keys[images], rows.values[images])
        return cache

    def _batch(self, chunk: Sequence[tuple[int, int, Example]], images: torch.Tensor,
               ) -> tuple[dict[str, torch.Tensor], int]:
        """``[prefix][padding][rest of the prompt]`` rows: token tensors and the rows' common width."""
        pad = self.engine.tokenizer.pad_token_id
        tails = [(example, len(self.heads[image])) for _, image, example in chunk]
        longest = max(example.length - start for example, start in tails)
        tokens: dict[str, torch.Tensor] = {}
        for key, prefix in self.rows.items():
            rows = []
            for example, start in tails:
                value = example.tokens[key][0, start:]
                fill = pad if key == "input_ids" else 0  # the attention mask is 0 over the padding
                rows.append(torch.cat([torch.full((longest - len(value),), fill, dtype=value.dtype), value]))
            tokens[key] = torch.cat([prefix[images], torch.stack(rows).to(prefix.device)], dim=1)
        return tokens, tokens["input_ids"].shape[1]

    # --- without it -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _from_scratch(self, ask: Ask) -> str:
        engine, prompt = self.engine, load_prompt(ask.plan, self.load)
        if not self._chooses(ask):
            return engine.adapter.generate(engine.network, engine.processor, [prompt], ask.budget)[0]
        return engine.pick(engine.adapter.next_token_logits(engine.network, engine.processor, [prompt])[0], ask)


def shared_prefix_length(rows: Sequence[torch.Tensor]) -> int:
    """How many leading tokens all ``rows`` share, leaving at least one token of each to ask anew."""
    length = min(len(row) for row in rows) - 1
    for row in rows[1:]:
        differs = torch.nonzero(rows[0][:length] != row[:length])
        length = int(differs[0]) if len(differs) else length
    return length


def _starts_with(row: torch.Tensor, prefix: torch.Tensor) -> bool:
    return len(row) > len(prefix) and bool(torch.equal(row[:len(prefix)], prefix))


def _attribute(root: Any, path: str) -> Any:
    for name in path.split("."):
        root = getattr(root, name)
    return root


def _set_attribute(root: Any, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    setattr(_attribute(root, ".".join(parents)) if parents else root, name, value)
