"""The four DDQA tasks, each described once: its file, its question, the images it is asked
about, how a record is built and how an answer is scored. The builder and the evaluator both
read :data:`TASKS`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eiad.data.geometry import GRID_CELLS, Region, grid_cell, normalised_box, regions
from eiad.data.images import read_mask
from eiad.data.layout import Sample
from eiad.ddqa.boxes import format_boxes
from eiad.ddqa.scoring import Rows, score_boxes, score_choices
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
Scorer = Callable[[list[dict[str, Any]], list[str]], tuple[dict[str, Any], Rows]]


@dataclass(frozen=True)
class Task:
    """One DDQA task. ``answer`` names its answer's token budget at evaluation: ``letter``
    (``evaluate.max_new_tokens``) or ``boxes`` (``evaluate.max_new_tokens_box``)."""

    name: str
    question: str
    defective_only: bool  # asked about defective images only (AD is asked about every image)
    build: Builder
    score: Scorer
    answer: Literal["letter", "boxes"]

    @property
    def file(self) -> str:
        return f"Task_{self.name}.jsonl"


def _ad(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built:
    correct = "Yes." if sample.is_defective else "No."
    rng = stable_random(ctx.config.seed, "AD", sample.dataset, sample.image)
    distractors = [option for option in AD_OPTIONS if option != correct]
    options, answer = lettered(correct, distractors, AD_OPTIONS, rng, ctx.config.shuffle_options)
    return task.question, options, answer


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
    return task.question, options, answer


def _rdl(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built:
    assert geometry is not None
    correct = geometry.cell()
    rng = stable_random(ctx.config.seed, "RDL", sample.dataset, sample.image)
    distractors = pick_distractors(correct, GRID_CELLS, ctx.config.num_options - 1, rng)
    options, answer = lettered(correct, distractors, GRID_CELLS, rng, ctx.config.shuffle_options)
    return task.question, options, answer


def _dfm(task: Task, sample: Sample, geometry: Geometry | None, ctx: Context) -> Built:
    assert geometry is not None
    return task.question, None, format_boxes(geometry.boxes(ctx.config.dfm_min_area))


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("AD", "Is there any visible defect in this image?", False, _ad, partial(score_choices, balanced=True),
         "letter"),
    Task("DC", "There is a defect in the object. What is the type of the defect?", True, _dc, score_choices,
         "letter"),
    Task("RDL", "There is a defect of the object present in the image. Where is the defect located?", True, _rdl,
         score_choices, "letter"),
    Task("DFM", "There are defects in the picture. Find it and mark its location with Bounding Box.", True, _dfm,
         score_boxes, "boxes"),
)}
