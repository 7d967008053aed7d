"""Asking a model questions, image by image: the images and the prompt prefix they share are
encoded once, and the questions continue together from that prefix's key/value cache.

The questions of a batch are laid out as ``[prefix][padding][question]``: the prefix's cache is
repeated for every row, the padding is masked, and generation numbers positions by the attention
mask, so each question's tokens sit at the positions they have when asked alone. Greedy answers
therefore equal those of asking each question from scratch (tests compare them question by
question, family by family). ``choice`` answers read the likelihood of each offered letter at the
answer position (one step) instead of generating. A family whose model cannot continue from a
cache (``VLMAdapter.prefix_cache`` false) is asked one question at a time from scratch.
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
from eiad.models.adapter import Example
from eiad.models.config import ModelHandle
from eiad.questions import PromptPlan, load_prompt

Loader = Callable[[str], Image.Image]


@dataclass(frozen=True)
class Ask:
    """One question for the model: its prompt, its answer's token budget and, for a multiple-choice
    question, the letters offered (``choice`` mode picks among them)."""

    plan: PromptPlan
    budget: int
    options: dict[str, str] | None = None


class Engine:
    """One model asked with one answer mode; see the module docstring."""

    def __init__(self, model: ModelHandle, network: Any, processor: Any, mode: AnswerMode) -> None:
        self.adapter, self.network, self.processor, self.mode = model.adapter, network, processor, mode
        self.tokenizer = processor.tokenizer
        self.stops = _stop_ids(network)

    def session(self, probes: Sequence[PromptPlan], load: Loader) -> Session:
        """A session for the questions of one image; ``probes`` are their prompts (as far as known
        before answering: with history, without it), from which the shared prefix is found."""
        return Session(self, probes, cache(load))

    @torch.inference_mode()
    def letter_ids(self, letters: Sequence[str]) -> list[int]:
        ids = [self.tokenizer.encode(letter, add_special_tokens=False) for letter in letters]
        if any(len(one) != 1 for one in ids) or len({one[0] for one in ids}) != len(ids):
            raise ConfigError(f"evaluate.answer: choice needs each option letter to be one token; the tokenizer "
                              f"splits {list(letters)} into {ids}")
        return [one[0] for one in ids]

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True).strip()


def _stop_ids(network: Any) -> set[int]:
    eos = getattr(getattr(network, "generation_config", None), "eos_token_id", None)
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


class Session:
    """The questions of one image, answered from one encoded prefix."""

    def __init__(self, engine: Engine, probes: Sequence[PromptPlan], load: Loader) -> None:
        self.engine, self.load = engine, load
        self.encoded: dict[str, Example] = {}
        self.prefix: torch.Tensor | None = None
        self.cache: Any = None
        if engine.adapter.prefix_cache and probes:
            prompts = [load_prompt(plan, load) for plan in probes]
            examples = engine.adapter.encode_alike(engine.processor, prompts)
            self.encoded.update({repr(plan): example for plan, example in zip(probes, examples)})
            self._prefill(examples)

    def answer(self, ask: Ask) -> str:
        """The model's answer to ``ask``: generated text, or the likeliest offered letter."""
        return self.answer_many([ask])[0]

    def answer_many(self, asks: Sequence[Ask]) -> list[str]:
        """Answers to ``asks`` (prompts known up front), asked in batches of one kind and budget."""
        answers = [""] * len(asks)
        kinds: dict[tuple[bool, int], list[int]] = {}
        for index, ask in enumerate(asks):
            kinds.setdefault((self._chooses(ask), ask.budget), []).append(index)
        for (choose, budget), indices in kinds.items():
            batch = [asks[index] for index in indices]
            adapter = self.engine.adapter
            if not adapter.prefix_cache:
                outputs = [self._from_scratch(ask, choose) for ask in batch]
            elif not adapter.batched_continuation:
                outputs = [output for ask in batch for output in self._continue_many([ask], choose, budget)]
            else:
                outputs = self._continue_many(batch, choose, budget)
            for index, output in zip(indices, outputs):
                answers[index] = output
        return answers

    def _chooses(self, ask: Ask) -> bool:
        return self.engine.mode == "choice" and bool(ask.options)

    # --- with the prefix cache ------------------------------------------------------------------

    def _encode(self, plan: PromptPlan) -> Example:
        key = repr(plan)
        if key not in self.encoded:
            prompt = load_prompt(plan, self.load)
            self.encoded[key] = self.engine.adapter.encode(self.engine.processor, prompt)
        return self.encoded[key]

    @torch.inference_mode()
    def _prefill(self, examples: list[Example]) -> None:
        """Run the longest token prefix the examples share (every image in it) once, keeping its cache."""
        ids = [example.tokens["input_ids"][0] for example in examples]
        length = min(len(row) for row in ids) - 1  # at least one token of each prompt is asked anew
        for row in ids[1:]:
            differs = torch.nonzero(ids[0][:length] != row[:length])
            length = int(differs[0]) if len(differs) else length
        inputs = {key: value[:, :length].to(self.engine.network.device) for key, value in examples[0].tokens.items()}
        media = {key: value.to(self.engine.network.device) for key, value in examples[0].media.items()}
        self.cache = self.engine.network(**inputs, **media, use_cache=True).past_key_values
        self.prefix = ids[0][:length]

    def _continue_many(self, asks: Sequence[Ask], choose: bool, budget: int) -> list[str]:
        examples = [self._encode(ask.plan) for ask in asks]
        if self.prefix is None or not all(_starts_with(e.tokens["input_ids"][0], self.prefix) for e in examples):
            self._prefill(examples)  # prompts outside the shared prefix (not expected): a prefix of their own
        if choose:
            return self._choose(examples, asks)
        tokens, width = self._batch(examples)
        output = self._generate(tokens, len(examples), budget)
        return [self.engine.decode(row[width:].tolist()) for row in output]

    def _batch(self, examples: list[Example]) -> tuple[dict[str, torch.Tensor], int]:
        """``[prefix][padding][rest of the prompt]`` rows: token tensors and the rows' common width."""
        start, pad = len(self.prefix), self.engine.tokenizer.pad_token_id
        width = max(example.length for example in examples)
        tokens: dict[str, torch.Tensor] = {}
        for key in examples[0].tokens:
            rows = []
            for example in examples:
                value = example.tokens[key][0]
                fill = pad if key == "input_ids" else 0  # the attention mask is 0 over the padding
                gap = torch.full((width - len(value),), fill, dtype=value.dtype)
                rows.append(torch.cat([value[:start], gap, value[start:]]))
            tokens[key] = torch.stack(rows).to(self.engine.network.device)
        return tokens, width

    @torch.inference_mode()
    def _generate(self, tokens: dict[str, torch.Tensor], rows: int, budget: int, **options: Any) -> Any:
        """``generate`` from the prefix cache, repeated for each row: only the prompts' own tokens are computed."""
        engine = self.engine
        cache = copy.deepcopy(self.cache)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return engine.network.generate(
            **tokens, cache=cache, max_new_tokens=budget, do_sample=False, num_beams=1,
            pad_token_id=engine.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None, **options,
        )

    def _choose(self, examples: list[Example], asks: Sequence[Ask]) -> list[str]:
        tokens, _ = self._batch(examples)
        logits = self._generate(tokens, len(examples), 1, output_logits=True, return_dict_in_generate=True).logits[0]
        chosen = []
        for row, ask in zip(logits, asks):
            letters = list(ask.options or {})
            chosen.append(letters[int(torch.argmax(row[self.engine.letter_ids(letters)]))])
        return chosen

    # --- without it -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _from_scratch(self, ask: Ask, choose: bool) -> str:
        engine, prompt = self.engine, load_prompt(ask.plan, self.load)
        if not choose:
            return engine.adapter.generate(engine.network, engine.processor, [prompt], ask.budget)[0]
        letters = list(ask.options or {})
        logits = engine.adapter.next_token_logits(engine.network, engine.processor, [prompt])[0]
        return letters[int(torch.argmax(logits[engine.letter_ids(letters)]))]


def _starts_with(row: torch.Tensor, prefix: torch.Tensor) -> bool:
    return len(row) > len(prefix) and bool(torch.equal(row[:len(prefix)], prefix))
