"""The MMAD benchmark's file format: ``mmad.json`` read, checked and written (REFERENCE.md §1).

``mmad.json`` is one object keyed by the query image's path relative to the benchmark root; each
value holds the image's ``conversation`` (its questions, in order), its mask and its normal
templates. The reader and the writer share the key names, so what the demo source writes is
what the evaluator reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eiad.errors import DataError
from eiad.io import atomic_write_json

BENCHMARK_FILE = "mmad.json"
# MMAD reports these two question types together as Object Analysis
MERGED_TYPES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
TEMPLATE_KINDS = ("random_templates", "similar_templates")

TemplateKind = Literal["random", "similar"]


@dataclass(frozen=True)
class Question:
    image: str  # the mmad.json key: the query image's path relative to the benchmark root
    text: str
    options: dict[str, str]
    answer: str
    type: str
    random_templates: tuple[str, ...]
    similar_templates: tuple[str, ...]


def load_benchmark(root: Path) -> list[Question]:
    """Every question of ``root/mmad.json``; the file must follow MMAD's schema."""
    path = root / BENCHMARK_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "missing: the benchmark folder has no mmad.json") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"is not valid JSON ({err})") from err
    if not isinstance(data, dict) or not data:
        raise DataError(path, "must be a non-empty object keyed by query image path (MMAD's schema)")
    questions = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("conversation"), list):
            raise DataError(path, f"entry {key!r} has no 'conversation' list")
        templates = {name: entry.get(name, []) for name in TEMPLATE_KINDS}
        for name, value in templates.items():
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise DataError(path, f"entry {key!r}: '{name}' must be a list of paths")
        for number, raw in enumerate(entry["conversation"]):
            questions.append(_question(path, key, number, raw, templates))
    return questions


def _question(path: Path, key: str, number: int, raw: Any, templates: dict[str, list[str]]) -> Question:
    where = f"entry {key!r}, question {number}"
    if not isinstance(raw, dict):
        raise DataError(path, f"{where} is not an object")
    missing = [field for field in ("Question", "Answer", "Options", "type") if field not in raw]
    if missing:
        raise DataError(path, f"{where} lacks {missing}")
    options = raw["Options"]
    if not isinstance(options, dict) or not options or not all(re.fullmatch("[A-E]", k) for k in options):
        raise DataError(path, f"{where}: 'Options' must map letters A-E to texts")
    if raw["Answer"] not in options:
        raise DataError(path, f"{where}: answer {raw['Answer']!r} is not one of the options {sorted(options)}")
    return Question(
        image=key,
        text=str(raw["Question"]),
        options={k: str(v) for k, v in options.items()},
        answer=raw["Answer"],
        type=MERGED_TYPES.get(raw["type"], raw["type"]),
        random_templates=tuple(templates["random_templates"]),
        similar_templates=tuple(templates["similar_templates"]),
    )


def template(root: Path, question: Question, kind: TemplateKind) -> str:
    """The first template of ``kind`` for ``question`` (MMAD's 1-shot uses one)."""
    templates = question.similar_templates if kind == "similar" else question.random_templates
    if not templates:
        raise DataError(root / BENCHMARK_FILE, f"entry {question.image!r} has no {kind} template for 1-shot")
    return templates[0]


def check_files(root: Path, questions: Iterable[Question], one_shot: bool, kind: TemplateKind) -> None:
    """Every query image (and, for 1-shot, its template) must exist before evaluation starts."""
    needed = set()
    for question in questions:
        needed.add(question.image)
        if one_shot:
            needed.add(template(root, question, kind))
    missing = sorted(name for name in needed if not (root / name).is_file())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(root, f"{len(missing)} image(s) referenced by mmad.json are missing: {shown}")


def missing_references(root: Path) -> dict[str, list[str]]:
    """Every file ``root/mmad.json`` references that is not under ``root``, by kind.

    Query images are the keys and templates are paths from ``root``. ``mask_path`` is read
    as MMAD's files are described (relative to the first three parts of its key, e.g.
    ``DS-MVTec/bottle/image``) and, failing that, from ``root`` or the key's dataset/class
    folder: a mask counts as missing only when it is at none of these.
    """
    entries = json.loads((root / BENCHMARK_FILE).read_text(encoding="utf-8"))
    missing: dict[str, set[str]] = {"images": set(), "masks": set(), "templates": set()}
    for key, entry in entries.items():
        if not (root / key).is_file():
            missing["images"].add(key)
        for name in TEMPLATE_KINDS:
            missing["templates"].update(t for t in entry.get(name) or [] if not (root / t).is_file())
        if entry.get("mask_path"):
            parts = key.split("/")
            readings = [os.path.normpath(f"{base}/{entry['mask_path']}")
                        for base in ("/".join(parts[:3]), ".", "/".join(parts[:2]))]
            if not any((root / reading).is_file() for reading in readings):
                missing["masks"].add(readings[0])
    return {kind: sorted(paths) for kind, paths in missing.items()}




def conversation_item(question: str, options: dict[str, str], answer: str, kind: str) -> dict[str, Any]:
    """One question of an image's ``conversation``, in MMAD's keys."""
    return {"Question": question, "Answer": answer, "Options": options, "type": kind, "annotation": True}


def benchmark_entry(image: str, mask: str | None, conversation: list[dict[str, Any]], similar_templates: list[str],
                    random_templates: list[str]) -> dict[str, Any]:
    """One query image's value in ``mmad.json``."""
    return {"image_path": image, "mask_path": mask, "conversation": conversation,
            "similar_templates": similar_templates, "random_templates": random_templates}


def write_benchmark(root: Path, entries: dict[str, dict[str, Any]]) -> None:
    """``root/mmad.json`` from :func:`benchmark_entry` values keyed by query image path."""
    atomic_write_json(root / BENCHMARK_FILE, entries)
