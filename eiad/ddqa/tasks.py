"""The four DDQA tasks, each described once: its file, its question, the images it is asked
about, how a record is built and how an answer is scored. The builder and the evaluator both
read :data:`TASKS`."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eiad.data.geometry import GRID_CELLS, Region, grid_cell, normalised_box, regions
from eiad.data.images import read_mask
from eiad.data.layout import Sample
from eiad.ddqa.boxes import format_boxes
from eiad.ddqa.scoring import Keep, Rows, score_boxes, score_choices, task_intervals
from eiad.questions import lettered, pick_distractors, readable
from eiad.seeding import stable_random

if TYPE_CHECKING:
    from eiad.ddqa.build import DDQAConfig

AD_OPTIONS = ("No.", "Yes.")


@dataclass(frozen=True)
class Geometry:
    """What the mask of a defective image says: its size and its connected components."""

    width: int
    height: int
    regions: list[Region]

    @classmethod
    def of_mask(cls, path: Path) -> Geometry:
        mask = read_mask(path)
        return cls(mask.shape[1], mask.shape[0], regions(mask))

    def cell(self) -> str:
        return grid_cell(self.regions[0].centroid, self.width, self.height)

    def boxes(self, min_area: float) -> list[tuple[float, ...]]:
        kept = [r for r in self.regions if r.area >= min_area * self.width * self.height] or self.regions[:1]
        boxes = sorted((r.box for r in kept), key=lambda box: (box[1], box[0], box[3], box[2]))
        return [normalised_box(box, self.width, self.height) for box in boxes]


@dataclass
class Context:
    """What every task builder may consult besides the sample itself."""

    config: DDQAConfig
    vocabulary: dict[str, list[str]]  # dataset -> readable defect names, sorted
    pool: list[str]  # readable defect names of every dataset, sorted
    skipped: Counter[str]


Built = tuple[str, "dict[str, str] | None", str]  # question text, lettered options, answer
Builder = Callable[["Task", Sample, "Geometry | None", Context], "Built | None"]


@dataclass(frozen=True)
class Task:
    """One DDQA task. ``answer`` is what its answer is (``letter`` of an option, or ``boxes``),
    which decides how it is scored and its token budget at evaluation (``evaluate.max_new_tokens``
    or ``max_new_tokens_box``); ``balanced`` adds the balanced accuracy over normal and defective images."""

    name: str
    question: str  # EIAD's wording
    defective_only: bool  # asked about defective images only (AD is asked about every image)
    build: Builder
    answer: Literal["letter", "boxes"]
    balanced: bool = False
    variants: tuple[str, ...] = ()  # other wordings of the question (MMAD's among them), for ddqa.wording: varied

    @property
    def file(self) -> str:
        return f"Task_{self.name}.jsonl"

    def score(self, records: list[dict[str, Any]], outputs: list[str], keep: Keep) -> tuple[dict[str, Any], Rows]:
        """Figures and per-record rows for ``outputs``, the answers to ``records`` (letters read as ``keep``)."""
        if self.answer == "boxes":
            return score_boxes(records, outputs)
        return score_choices(records, outputs, keep, self.balanced)

    def intervals(self, records: list[dict[str, Any]], rows: Rows, samples: int, seed: int) -> dict[str, list[float]]:
        return task_intervals(records, rows, self.balanced, samples, seed)

    def headline_figure(self, available: Collection[str]) -> str:
        """The figure a person compares: the mean IoU of boxes, else the (balanced, where both kinds
        of image are there) accuracy."""
        if self.answer == "boxes":
            return "mean_iou"
        return "balanced_accuracy" if self.balanced and "balanced_accuracy" in available else "accuracy"

    def headline(self, figures: dict[str, Any]) -> float:
        return figures[self.headline_figure(figures)]

    def wording(self, sample: Sample, ctx: Context) -> tuple[str, random.Random | None]:
        """The question asked about ``sample``: EIAD's, or with ``ddqa.wording: varied`` one of the task's
        wordings drawn by a generator of its own (the options' draws stay as they are), also returned."""
        if ctx.config.wording == "eiad":
            return self.question, None
        rng = stable_random(ctx.config.seed, "wording", self.name, sample.dataset, sample.image)
        return rng.choice((self.question, *self.variants)), rng


def _ad(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built:
    question, wording = task.wording(sample, ctx)
    # EIAD's options end with a full stop; MMAD's ("Yes", "No") do not: varied wording takes either
    canonical = AD_OPTIONS if wording is None or wording.random() < 0.5 else tuple(o.rstrip(".") for o in AD_OPTIONS)
    correct = canonical[1] if sample.is_defective else canonical[0]
    rng = stable_random(ctx.config.seed, "AD", sample.dataset, sample.image)
    distractors = [option for option in canonical if option != correct]
    options, answer = lettered(correct, distractors, canonical, rng, ctx.config.shuffle_options)
    return question, options, answer


def _dc(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built | None:
    correct = readable(sample.defect)
    rng = stable_random(ctx.config.seed, "DC", sample.dataset, sample.image)
    wanted = ctx.config.num_options - 1
    distractors = pick_distractors(correct, ctx.vocabulary[sample.dataset], wanted, rng)
    if len(distractors) < wanted:
        spare = [name for name in ctx.pool if name not in distractors and name != correct]
        distractors += pick_distractors(correct, spare, wanted - len(distractors), rng)
    if not distractors:
        ctx.skipped["DC: no other defect name to offer"] += 1
        return None
    canonical = sorted([correct, *distractors])
    options, answer = lettered(correct, distractors, canonical, rng, ctx.config.shuffle_options)
    return task.wording(sample, ctx)[0], options, answer


def _rdl(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built:
    assert geometry is not None
    correct = geometry.cell()
    rng = stable_random(ctx.config.seed, "RDL", sample.dataset, sample.image)
    distractors = pick_distractors(correct, GRID_CELLS, ctx.config.num_options - 1, rng)
    options, answer = lettered(correct, distractors, GRID_CELLS, rng, ctx.config.shuffle_options)
    return task.wording(sample, ctx)[0], options, answer


def _dfm(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built:
    assert geometry is not None
    return task.question, None, format_boxes(geometry.boxes(ctx.config.dfm_min_area))


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("AD", "Is there any visible defect in this image?", False, _ad, "letter", balanced=True,
         variants=("Is there any defect in the object?", "Does the object in the image have a defect?")),
    Task("DC", "There is a defect in the object. What is the type of the defect?", True, _dc, "letter",
         variants=("What is the type of the defect?", "What kind of defect does the object have?")),
    Task("RDL", "There is a defect of the object present in the image. Where is the defect located?", True, _rdl,
         "letter", variants=("Where is the defect located in the image?", "Where is the defect?")),
    Task("DFM", "There are defects in the picture. Find it and mark its location with Bounding Box.", True, _dfm,
         "boxes"),
)}
