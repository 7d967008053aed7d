"""The MMAD benchmark: loading and checking ``mmad.json``, prompts, answer parsing, scoring.

Follows MMAD's reference scripts (REFERENCE.md §1) with one deliberate difference: an answer
that cannot be parsed at all counts as wrong and is reported, where MMAD's script drops it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eiad.errors import DataError
from eiad.masks import load_rgb
from eiad.models.base import Prompt
from eiad.questions import format_question

TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
# MMAD reports these two question types together as Object Analysis
MERGED_TYPES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
INSTRUCTION = (
    "You are an industrial inspector who checks products by images. You should judge whether there is a defect "
    "in the query image and answer the questions about it. Answer with the option's letter from the given "
    "choices directly."
)
TEMPLATE_NOTE = "Image 1 is a normal sample, which can be used as a template to compare the image being queried."
QUERY_NOTE = (
    "The last image is the query image: Following is the question list. Answer with the option's letter from "
    "the given choices directly:"
)
_LETTER = re.compile(r"\b([A-E])\b")

Protocol = Literal["0-shot", "1-shot"]
TemplateKind = Literal["random", "similar"]
ParseStatus = Literal["letter", "fuzzy", "unparsed"]


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
    path = root / "mmad.json"
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
        templates = {name: entry.get(name, []) for name in ("random_templates", "similar_templates")}
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


def check_files(root: Path, questions: Iterable[Question], protocol: Protocol, kind: TemplateKind) -> None:
    """Every query image (and, for 1-shot, its template) must exist before evaluation starts."""
    needed = set()
    for question in questions:
        needed.add(question.image)
        if protocol == "1-shot":
            needed.add(_template(root, question, kind))
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
    entries = json.loads((root / "mmad.json").read_text(encoding="utf-8"))
    missing: dict[str, set[str]] = {"images": set(), "masks": set(), "templates": set()}
    for key, entry in entries.items():
        if not (root / key).is_file():
            missing["images"].add(key)
        for name in ("random_templates", "similar_templates"):
            missing["templates"].update(t for t in entry.get(name) or [] if not (root / t).is_file())
        if entry.get("mask_path"):
            parts = key.split("/")
            readings = [os.path.normpath(f"{base}/{entry['mask_path']}")
                        for base in ("/".join(parts[:3]), ".", "/".join(parts[:2]))]
            if not any((root / reading).is_file() for reading in readings):
                missing["masks"].add(readings[0])
    return {kind: sorted(paths) for kind, paths in missing.items()}


def _template(root: Path, question: Question, kind: TemplateKind) -> str:
    templates = question.similar_templates if kind == "similar" else question.random_templates
    if not templates:
        raise DataError(root / "mmad.json", f"entry {question.image!r} has no {kind} template for 1-shot")
    return templates[0]


def build_prompt(root: Path, question: Question, protocol: Protocol, kind: TemplateKind = "random") -> Prompt:
    """One question as MMAD asks it: 0-shot (EIAD's form, as DDQA trains) or 1-shot."""
    query = load_rgb(root / question.image)
    if protocol == "0-shot":
        return [query, format_question(question.text, question.options)]
    options = "\n".join(f"{letter}. {text}" for letter, text in question.options.items())
    text = f"{INSTRUCTION}\n{TEMPLATE_NOTE}\n{QUERY_NOTE}\nQuestion 1: {question.text} \n{options}"
    return [load_rgb(root / _template(root, question, kind)), query, text]


def parse_answer(output: str, options: dict[str, str]) -> tuple[str | None, ParseStatus]:
    """MMAD's parsing: the last standalone capital A-E; else the closest option text (flagged).

    Lower-case letters are not letters to MMAD's regex, so they go to the fuzzy match. An empty
    output, or one with no options to match against, is unparsed.
    """
    letters = _LETTER.findall(output)
    if letters:
        return letters[-1], "letter"
    if not output.strip() or not options:
        return None, "unparsed"
    texts = list(options.values())
    closest = difflib.get_close_matches(output, texts, n=1, cutoff=0.0)
    if not closest:
        return None, "unparsed"
    return list(options)[texts.index(closest[0])], "fuzzy"


@dataclass(frozen=True)
class Scored:
    """One answered question, as MMAD's summary needs it."""

    image: str
    type: str
    correct: bool

    @property
    def dataset(self) -> str:
        return self.image.split("/")[0]

    @property
    def is_normal(self) -> bool:
        return "good" in self.image


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarise(scored: Iterable[Scored]) -> dict[str, Any]:
    """MMAD's table in percent: per dataset and type (balanced accuracy for Anomaly Detection),
    each dataset's average over its types, Overkill and Miss, and the unweighted mean over datasets."""
    cells: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for item in scored:
        column = item.type
        if column == "Anomaly Detection":
            column = "normal" if item.is_normal else "anomalous"
        cells[item.dataset][column].append(item.correct)
    per_dataset: dict[str, dict[str, float]] = {}
    for dataset, columns in sorted(cells.items()):
        row: dict[str, float] = {}
        detection = [100 * _mean(columns[side]) for side in ("normal", "anomalous") if columns.get(side)]
        if detection:
            row["Anomaly Detection"] = _mean(detection)
        for name in TYPES[1:]:
            if columns.get(name):
                row[name] = 100 * _mean(columns[name])
        row["Average"] = _mean(list(row.values()))
        if columns.get("normal"):
            row["Overkill"] = 100 * (1 - _mean(columns["normal"]))
        if columns.get("anomalous"):
            row["Miss"] = 100 * (1 - _mean(columns["anomalous"]))
        per_dataset[dataset] = row
    names = [*TYPES, "Average", "Overkill", "Miss"]
    average = {
        name: _mean([row[name] for row in per_dataset.values() if name in row])
        for name in names
        if any(name in row for row in per_dataset.values())
    }
    return {"average": _rounded(average), "per_dataset": {d: _rounded(r) for d, r in per_dataset.items()}}


def _rounded(row: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 2) for key, value in row.items()}
