"""DDQA records in ms-swift's ``messages`` + ``images`` format, and a record back as a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eiad.data.images import load_rgb
from eiad.data.layout import Sample
from eiad.errors import DataError
from eiad.questions import Prompt, format_question


def make_record(
    task: str, sample: Sample, question: str, options: dict[str, str] | None, answer: str
) -> dict[str, Any]:
    """One ms-swift ``messages`` + ``images`` record; metadata in keys ms-swift ignores."""
    return {
        "messages": [
            {"role": "user", "content": "<image>" + format_question(question, options)},
            {"role": "assistant", "content": answer},
        ],
        "images": [sample.image],
        "task": task,
        "source_dataset": sample.dataset,
        "class": sample.cls,
        "defect": sample.defect,
        "group": sample.group,
        "choices": options,
    }


def record_prompt(record: dict[str, Any], root: Path = Path(".")) -> tuple[Prompt, str]:
    """A DDQA (ms-swift) record as a prompt of text and images in order, and its answer.

    Each ``<image>`` in the user turn is replaced by the next image of ``images``.
    """
    user, assistant = record["messages"][0]["content"], record["messages"][1]["content"]
    pieces = user.split("<image>")
    if len(pieces) - 1 != len(record["images"]):
        raise DataError(root, f"record has {len(pieces) - 1} <image> tags but {len(record['images'])} images")
    prompt: list = []
    for index, text in enumerate(pieces):
        if index:
            prompt.append(load_rgb(root / record["images"][index - 1]))
        if text:
            prompt.append(text)
    return prompt, assistant
