"""DDQA: the four defect question-answering tasks of EIAD, built from organised samples.

Conventions (the README's "DDQA" section explains them):

* **AD** on every image: "No." / "Yes.".
* **DC** on defective images: the true defect and up to 3 distractors from the other defect
  names of the same dataset; when the dataset has too few, the pool of every dataset in the
  build fills in. An image whose pool offers no distractor at all gets no DC record (counted).
* **RDL** on defective images: the 3x3 grid cell holding the centroid of the mask's largest
  connected component (8-connectivity); several defects: the largest decides.
* **DFM** on defective images: one pixel-edge box per connected component whose area is at
  least ``dfm_min_area`` of the image (the largest component is always kept), normalised to
  [0, 1] with 3 decimals: ``[x1, y1, x2, y2]`` for one box, ``[[x1, y1, x2, y2], ...]`` sorted
  top to bottom, then left to right, for several.
* Options are shuffled per record by a generator keyed by (seed, task, image), or kept in the
  figure's order (No/Yes, grid order, vocabulary order) when ``shuffle_options`` is false.
* The test split holds whole groups (parts photographed several times), drawn per stratum
  (dataset, class, defect) with ``test_ratio``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from eiad.errors import ConfigError, DataError
from eiad.io import atomic_directory, atomic_write_json, jsonl_text
from eiad.layout import OK, Sample
from eiad.masks import GRID_CELLS, Region, grid_cell, load_rgb, normalised_box, read_mask, regions
from eiad.questions import format_question, lettered, pick_distractors, readable
from eiad.seeding import stable_random

TASK_FILES = {"AD": "Task_AD.jsonl", "DC": "Task_DC.jsonl", "RDL": "Task_RDL.jsonl", "DFM": "Task_DFM.jsonl"}
QUESTIONS = {
    "AD": "Is there any visible defect in this image?",
    "DC": "There is a defect in the object. What is the type of the defect?",
    "RDL": "There is a defect of the object present in the image. Where is the defect located?",
    "DFM": "There are defects in the picture. Find it and mark its location with Bounding Box.",
}
AD_OPTIONS = ("No.", "Yes.")


@dataclass(frozen=True)
class DDQAConfig:
    seed: int = 0
    tasks: tuple[str, ...] = ("AD", "DC", "RDL", "DFM")
    test_ratio: float = 0.2
    shuffle_options: bool = True
    num_options: int = 4
    dfm_min_area: float = 0.0005

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASK_FILES))
        if unknown or not self.tasks:
            raise ConfigError(f"ddqa.tasks: unknown or empty {unknown or list(self.tasks)}; known: {list(TASK_FILES)}")
        if not 0 <= self.test_ratio < 1:
            raise ConfigError(f"ddqa.test_ratio must be in [0, 1), got {self.test_ratio}")
        if not 2 <= self.num_options <= 26:
            raise ConfigError(f"ddqa.num_options must be in [2, 26], got {self.num_options}")
        if not 0 <= self.dfm_min_area < 1:
            raise ConfigError(f"ddqa.dfm_min_area must be a fraction of the image in [0, 1), got {self.dfm_min_area}")


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


def format_boxes(boxes: list[tuple[float, ...]]) -> str:
    """``[x1, y1, x2, y2]`` for one box, ``[[...], [...]]`` for several; 3 decimals."""
    texts = ["[" + ", ".join(f"{value:.3f}" for value in box) + "]" for box in boxes]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


@dataclass
class Context:
    """What every task builder may consult besides the sample itself."""

    config: DDQAConfig
    vocabulary: dict[str, list[str]]  # dataset -> readable defect names, sorted
    pool: list[str]  # readable defect names of every dataset, sorted
    skipped: Counter[str]


Question = tuple[str, "dict[str, str] | None", str]  # question text, lettered options, answer
TaskBuilder = Callable[[Sample, "Geometry | None", Context], "Question | None"]


def _ad(sample: Sample, geometry: Geometry | None, ctx: Context) -> tuple[str, dict[str, str], str]:
    correct = "Yes." if sample.is_defective else "No."
    rng = stable_random(ctx.config.seed, "AD", sample.dataset, sample.image)
    distractors = [option for option in AD_OPTIONS if option != correct]
    options, answer = lettered(correct, distractors, AD_OPTIONS, rng, ctx.config.shuffle_options)
    return QUESTIONS["AD"], options, answer


def _dc(sample: Sample, geometry: Geometry | None, ctx: Context) -> tuple[str, dict[str, str], str] | None:
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
    return QUESTIONS["DC"], options, answer


def _rdl(sample: Sample, geometry: Geometry | None, ctx: Context) -> tuple[str, dict[str, str], str]:
    assert geometry is not None
    correct = geometry.cell()
    rng = stable_random(ctx.config.seed, "RDL", sample.dataset, sample.image)
    distractors = pick_distractors(correct, GRID_CELLS, ctx.config.num_options - 1, rng)
    options, answer = lettered(correct, distractors, GRID_CELLS, rng, ctx.config.shuffle_options)
    return QUESTIONS["RDL"], options, answer


def _dfm(sample: Sample, geometry: Geometry | None, ctx: Context) -> tuple[str, None, str]:
    assert geometry is not None
    return QUESTIONS["DFM"], None, format_boxes(geometry.boxes(ctx.config.dfm_min_area))


BUILDERS: dict[str, tuple[bool, TaskBuilder]] = {  # task -> (defective images only, builder)
    "AD": (False, _ad),
    "DC": (True, _dc),
    "RDL": (True, _rdl),
    "DFM": (True, _dfm),
}


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


def split_test_groups(samples: list[Sample], test_ratio: float, seed: int) -> set[str]:
    """Groups held out for testing: per stratum (dataset, class, defect), ``test_ratio`` of them.

    A group's stratum is that of its first defective image (by path), else OK, so groups
    whose views disagree (a defect visible in some views only) still land in one stratum.
    """
    by_group: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_group[sample.group].append(sample)
    strata: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for group, members in by_group.items():
        defective = sorted((s for s in members if s.is_defective), key=lambda s: s.image)
        first = defective[0] if defective else members[0]
        strata[(first.dataset, first.cls, first.defect if defective else OK)].append(group)
    test: set[str] = set()
    for stratum, groups in sorted(strata.items()):
        groups.sort()
        stable_random(seed, "split", *stratum).shuffle(groups)
        test.update(groups[: math.floor(test_ratio * len(groups) + 0.5)])
    return test


def _geometries(samples: list[Sample]) -> Iterator[tuple[Sample, Geometry | None]]:
    for sample in tqdm(samples, desc="build_ddqa: reading masks", unit="image"):
        if sample.is_defective and sample.mask is not None:
            yield sample, Geometry.of_mask(Path(sample.mask))
        else:
            yield sample, None


def build_records(
    samples: list[Sample], config: DDQAConfig
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], Counter[str]]:
    """Records per split ("train"/"test") and task, and the count of skipped records."""
    vocabulary: dict[str, set[str]] = {sample.dataset: set() for sample in samples}
    for sample in samples:
        if sample.is_defective:
            vocabulary[sample.dataset].add(readable(sample.defect))
    ctx = Context(
        config=config,
        vocabulary={name: sorted(names) for name, names in vocabulary.items()},
        pool=sorted(set().union(*vocabulary.values())),
        skipped=Counter(),
    )
    test_groups = split_test_groups(samples, config.test_ratio, config.seed)
    ordered = sorted(samples, key=lambda s: (s.dataset, s.cls, s.defect, s.image))
    records: dict[str, dict[str, list[dict[str, Any]]]] = {
        split: {task: [] for task in config.tasks} for split in ("train", "test")
    }
    for sample, geometry in _geometries(ordered):
        split = "test" if sample.group in test_groups else "train"
        for task in config.tasks:
            defective_only, builder = BUILDERS[task]
            if defective_only and not sample.is_defective:
                continue
            built = builder(sample, geometry, ctx)
            if built is not None:
                records[split][task].append(make_record(task, sample, *built))
    return records, ctx.skipped


def summarise(records: dict[str, dict[str, list[dict[str, Any]]]], skipped: Counter[str]) -> dict[str, Any]:
    """Counts per split and task, and per split, task, dataset, class and defect."""
    detail: dict[str, Any] = {}
    for split, tasks in records.items():
        for task, rows in tasks.items():
            node = detail.setdefault(split, {}).setdefault(task, {})
            for row in rows:
                by_class = node.setdefault(row["source_dataset"], {}).setdefault(row["class"], {})
                by_class[row["defect"]] = by_class.get(row["defect"], 0) + 1
    return {
        "records": {split: {task: len(rows) for task, rows in tasks.items()} for split, tasks in records.items()},
        "images": {split: len({r["images"][0] for rows in tasks.values() for r in rows})
                   for split, tasks in records.items()},
        "skipped": dict(sorted(skipped.items())),
        "by_label": _sorted_tree(detail),
    }


def _sorted_tree(node: Any) -> Any:
    return {k: _sorted_tree(v) for k, v in sorted(node.items())} if isinstance(node, dict) else node


def write_ddqa(records: dict[str, dict[str, list[dict[str, Any]]]], out: Path) -> None:
    """``Task_*.jsonl`` and ``train.jsonl`` (train split), ``test/Task_*.jsonl`` and ``test.jsonl``."""
    with atomic_directory(out) as staging:
        for split, folder, combined in (("train", staging, "train.jsonl"), ("test", staging / "test", "test.jsonl")):
            folder.mkdir(exist_ok=True)
            texts = {task: jsonl_text(rows) for task, rows in records[split].items()}
            for task, text in texts.items():
                (folder / TASK_FILES[task]).write_text(text, encoding="utf-8")
            (staging / combined).write_text("".join(texts.values()), encoding="utf-8")


def build_ddqa(samples: Iterable[Sample], out: Path, summary: Path, config: DDQAConfig) -> dict[str, Any]:
    """Build DDQA from manifest samples and write it to ``out`` and its counts to ``summary``.

    Image paths in the records are the samples' paths as read (relative to the working
    directory when the manifests were read from a relative folder).
    """
    records, skipped = build_records(list(samples), config)
    write_ddqa(records, out)
    counts = summarise(records, skipped)
    atomic_write_json(summary, counts)
    return counts


def record_prompt(record: dict[str, Any], root: Path = Path(".")) -> tuple[list[str | Image.Image], str]:
    """A DDQA (ms-swift) record as a prompt of text and images in order, and its answer.

    Each ``<image>`` in the user turn is replaced by the next image of ``images``.
    """
    user, assistant = record["messages"][0]["content"], record["messages"][1]["content"]
    pieces = user.split("<image>")
    if len(pieces) - 1 != len(record["images"]):
        raise DataError(root, f"record has {len(pieces) - 1} <image> tags but {len(record['images'])} images")
    prompt: list[str | Image.Image] = []
    for index, text in enumerate(pieces):
        if index:
            prompt.append(load_rgb(root / record["images"][index - 1]))
        if text:
            prompt.append(text)
    return prompt, assistant
