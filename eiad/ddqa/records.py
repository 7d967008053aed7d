"""DDQA records in ms-swift's ``messages`` + ``images`` format, and a record back as a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eiad.data.images import load_rgb
from eiad.data.layout import Sample
from eiad.errors import DataError
from eiad.questions import ImageRef, Prompt, PromptPlan, format_question, load_prompt


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


def record_plan(record: dict[str, Any]) -> PromptPlan:
    """A DDQA (ms-swift) record's user turn as a prompt plan: each ``<image>`` becomes the next of
    ``images`` (paths relative to the repository root, as the records give them)."""
    pieces = record["messages"][0]["content"].split("<image>")
    if len(pieces) - 1 != len(record["images"]):
        raise DataError(Path(record["images"][0]) if record["images"] else Path("."),
                        f"record has {len(pieces) - 1} <image> tags but {len(record['images'])} images")
    plan: list[str | ImageRef] = []
    for index, text in enumerate(pieces):
        if index:
            plan.append(ImageRef(record["images"][index - 1]))
        if text:
            plan.append(text)
    return plan


def record_prompt(record: dict[str, Any]) -> tuple[Prompt, str]:
    """A DDQA record as a prompt of text and images in order, and its answer."""
    return load_prompt(record_plan(record), lambda path: load_rgb(Path(path))), record["messages"][1]["content"]
