"""The MMAD benchmark's file format: ``mmad.json`` read, checked and written (REFERENCE.md §1).

``mmad.json`` is one object keyed by the query image's path relative to the benchmark root; each
value holds the image's ``conversation`` (its questions, in order), its mask and its normal
templates. The reader and the writer share the key names, so what the demo source writes is
what the evaluator reads. ``domain_knowledge.json`` (MMAD's optional prompt context) is read here
too.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

from eiad.errors import DataError
from eiad.io import atomic_write_json

BENCHMARK_FILE = "mmad.json"
DOMAIN_KNOWLEDGE_FILE = "domain_knowledge.json"
# MMAD reports these two question types together as Object Analysis
MERGED_TYPES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
TEMPLATE_KINDS = ("random_templates", "similar_templates")
NORMAL_FLAG = "good"  # an image whose path holds it is a normal image (MMAD's summary.py)

TemplateKind = Literal["random", "similar"]


@dataclass(frozen=True)
class Question:
    """One question of an image's conversation. ``index`` is its position there (MMAD numbers
    questions by it); ``type`` is MMAD's own, ``reported_type`` the column it is scored in."""

    image: str  # the mmad.json key: the query image's path relative to the benchmark root
    index: int
    text: str
    options: dict[str, str]  # letters A, B, ... in order
    answer: str
    type: str
    random_templates: tuple[str, ...]
    similar_templates: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.image}#{self.index}"

    @property
    def dataset(self) -> str:
        return self.image.split("/")[0]

    @property
    def reported_type(self) -> str:
        return MERGED_TYPES.get(self.type, self.type)

    def templates(self, kind: TemplateKind) -> tuple[str, ...]:
        return self.similar_templates if kind == "similar" else self.random_templates


def load_benchmark(root: Path) -> list[Question]:
    """Every question of ``root/mmad.json``, image by image in the file's order; MMAD's schema is checked."""
    path = root / BENCHMARK_FILE
    data = _read_json(path, "missing: the benchmark folder has no mmad.json")
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


def by_image(questions: Iterable[Question]) -> Iterator[list[Question]]:
    """The questions of each image together, in benchmark order."""
    for _, group in groupby(questions, key=lambda question: question.image):
        yield list(group)


def _question(path: Path, key: str, number: int, raw: Any, templates: dict[str, list[str]]) -> Question:
    where = f"entry {key!r}, question {number}"
    if not isinstance(raw, dict):
        raise DataError(path, f"{where} is not an object")
    missing = [field for field in ("Question", "Answer", "Options", "type") if field not in raw]
    if missing:
        raise DataError(path, f"{where} lacks {missing}")
    options = raw["Options"]
    # MMAD's scripts re-letter the options A, B, ... in their order; requiring that order keeps
    # the file's answer letters and the asked letters the same
    if not isinstance(options, dict) or not options or list(options) != list(string.ascii_uppercase[:len(options)]) \
            or len(options) > 5:
        raise DataError(path, f"{where}: 'Options' must map the letters A, B, ... (at most E), in order, to texts")
    if raw["Answer"] not in options:
        raise DataError(path, f"{where}: answer {raw['Answer']!r} is not one of the options {sorted(options)}")
    return Question(
        image=key,
        index=number,
        text=str(raw["Question"]),
        options={k: str(v) for k, v in options.items()},
        answer=raw["Answer"],
        type=str(raw["type"]),
        random_templates=tuple(templates["random_templates"]),
        similar_templates=tuple(templates["similar_templates"]),
    )


def check_files(root: Path, questions: Iterable[Question], templates: int, kind: TemplateKind) -> None:
    """Every query image and the first ``templates`` templates of each must exist, before any model loads."""
    needed, short = set(), []
    for question in questions:
        needed.add(question.image)
        available = question.templates(kind)
        if len(available) < templates:
            short.append(f"{question.image} ({len(available)})")
        needed.update(available[:templates])
    if short:
        shown = ", ".join(sorted(set(short))[:5]) + (f" and {len(set(short)) - 5} more" if len(set(short)) > 5 else "")
        raise DataError(root / BENCHMARK_FILE, f"evaluate asks for {templates} {kind} template(s) per image but "
                                               f"{len(set(short))} image(s) have fewer: {shown}")
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


def load_domain_knowledge(root: Path, questions: Iterable[Question]) -> dict[str, str]:
    """Each image's domain knowledge text, as MMAD's scripts join it (``--domain_knowledge``).

    The file is ``{dataset: {class: {defect or "good": text}}}``; DS-MVTec is looked up as MVTec,
    and a class's texts are joined with newlines. A class the file lacks is an error.
    """
    path = root / DOMAIN_KNOWLEDGE_FILE
    knowledge = _read_json(path, "missing: evaluate.domain_knowledge needs the benchmark's domain_knowledge.json")
    texts, absent = {}, set()
    for question in questions:
        dataset, cls = question.dataset.replace("DS-MVTec", "MVTec"), question.image.split("/")[1]
        entry = knowledge.get(dataset, {}).get(cls) if isinstance(knowledge, dict) else None
        if not isinstance(entry, dict) or not all(isinstance(text, str) for text in entry.values()):
            absent.add(f"{dataset}/{cls}")
            continue
        texts[question.image] = "\n".join(entry.values())
    if absent:
        raise DataError(path, f"has no domain knowledge for {sorted(absent)} (needs {{dataset: {{class: "
                              f"{{defect: text}}}}}})")
    return texts


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


def _read_json(path: Path, missing: str) -> Any:
    """A benchmark file's JSON; a missing or malformed file is a :class:`DataError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, missing) from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"is not valid JSON ({err})") from err
