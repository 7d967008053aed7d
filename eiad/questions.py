"""Questions and prompts: what DDQA records and benchmark questions share, and what a model is asked.

A :data:`Prompt` (text and images in reading order) is the interface between the data side
(DDQA records, benchmark questions) and the models; it needs nothing of torch.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

# A prompt is text and images in reading order, independent of any model's chat format.
Prompt = Sequence[str | Image.Image]

ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
LETTERS = string.ascii_uppercase


def readable(name: str) -> str:
    """Folder-style names in words: ``missing_parts`` -> ``missing parts``."""
    return name.replace("_", " ").replace("-", " ").strip()


def pick_distractors(correct: str, pool: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """``count`` distinct wrong options from ``pool`` (fewer when the pool is short), in pool order."""
    others = [option for option in dict.fromkeys(pool) if option != correct]
    if len(others) <= count:
        return others
    chosen = set(rng.sample(range(len(others)), count))
    return [option for index, option in enumerate(others) if index in chosen]


def lettered(
    correct: str, distractors: Sequence[str], canonical: Sequence[str], rng: random.Random, shuffle: bool
) -> tuple[dict[str, str], str]:
    """Options as ``{"A": ..., "B": ...}`` and the correct letter.

    Shuffled by ``rng``, or in the ``canonical`` order (the order of the EIAD figure: No/Yes,
    grid order, vocabulary order) when ``shuffle`` is false.
    """
    options = [correct, *distractors]
    if shuffle:
        rng.shuffle(options)
    else:
        rank = {option: index for index, option in enumerate(canonical)}
        options.sort(key=lambda option: rank.get(option, len(rank)))
    table = dict(zip(LETTERS, options))
    return table, LETTERS[options.index(correct)]


def format_question(question: str, options: dict[str, str] | None) -> str:
    """One multiple-choice question as DDQA trains on it and EIAD's evaluation asks it.

    The question, one ``X. option`` line per option, then the answer instruction (EIAD's
    ``eval/evaluation.py`` form); a question without options (DFM) is its text alone.
    """
    if not options:
        return question
    lines = [question, *(f"{letter}. {text}" for letter, text in options.items()), ANSWER_INSTRUCTION]
    return "\n".join(lines)


@dataclass(frozen=True)
class ImageRef:
    """An image of a prompt not loaded yet: its path, relative to the folder the prompt is read from."""

    path: str


PromptPlan = Sequence[str | ImageRef]  # a prompt before its images are loaded


def load_prompt(plan: PromptPlan, load: Callable[[str], Image.Image]) -> Prompt:
    """``plan`` with each image loaded by ``load`` (given the image's path)."""
    return [load(part.path) if isinstance(part, ImageRef) else part for part in plan]


def describe(plan: PromptPlan) -> list[dict[str, str]]:
    """``plan`` as JSON: ``{"image": path}`` and ``{"text": text}`` parts, in order (what a model was asked)."""
    return [{"image": part.path} if isinstance(part, ImageRef) else {"text": part} for part in plan]
