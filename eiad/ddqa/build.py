"""Building DDQA from organised samples: records per task, the held-out split, files and counts.

Records are written as they are built (a record is a few hundred bytes, and Real-IAD alone has
151k images), so memory holds the samples and the counts, never the records.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from eiad.data.layout import OK, Sample, Split
from eiad.ddqa.records import make_record
from eiad.ddqa.tasks import TASKS, Context, Geometry
from eiad.errors import ConfigError
from eiad.io import atomic_directory, atomic_write_json
from eiad.params import Params
from eiad.questions import readable
from eiad.seeding import stable_random

log = logging.getLogger(__name__)
SPLITS: tuple[Split, ...] = ("train", "test")
Record = tuple[Split, str, dict[str, Any]]  # split, task, the record


@dataclass(frozen=True)
class DDQAConfig(Params):
    seed: int
    tasks: tuple[str, ...]
    # grouped: whole split groups held out (test_ratio of them per stratum); official: the sources' own split
    split: Literal["grouped", "official"]
    test_ratio: float  # share of groups held out per (dataset, class, defect), for split: grouped
    shuffle_options: bool  # false keeps the EIAD figure's order (No/Yes, grid, vocabulary)
    num_options: int  # DC and RDL: the answer and up to num_options - 1 distractors
    dfm_min_area: float  # DFM boxes: smallest component kept, as a fraction of the image
    wording: Literal["eiad", "varied"]  # eiad: EIAD's questions; varied: each record's drawn from its task's wordings

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ConfigError(f"ddqa.tasks: unknown or empty {unknown or list(self.tasks)}; known: {list(TASKS)}")
        if not 0 <= self.test_ratio < 1:
            raise ConfigError(f"ddqa.test_ratio must be in [0, 1), got {self.test_ratio}")
        if not 2 <= self.num_options <= 26:
            raise ConfigError(f"ddqa.num_options must be in [2, 26], got {self.num_options}")
        if not 0 <= self.dfm_min_area < 1:
            raise ConfigError(f"ddqa.dfm_min_area must be a fraction of the image in [0, 1), got {self.dfm_min_area}")


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


def official_test_images(samples: list[Sample]) -> set[str]:
    """The images each source's own split puts in its test set (its unassigned images train).

    Every dataset must ship a split. Groups the official split cuts through are counted in a
    warning: their near-duplicate images on both sides inflate test scores.
    """
    without = sorted({s.dataset for s in samples} - {s.dataset for s in samples if s.split is not None})
    if without:
        raise ConfigError(f"ddqa.split: official takes each source's own split, but {', '.join(without)} ships "
                          "none; use ddqa.split: grouped")
    sides: dict[str, set[bool]] = defaultdict(set)
    for sample in samples:
        sides[sample.group].add(sample.split == "test")
    cut = sorted(group for group, side in sides.items() if len(side) == 2)
    if cut:
        log.warning("the official split puts images of %d of %d split groups on both sides (e.g. %s): their "
                    "near-duplicates inflate the test scores; ddqa.split: grouped keeps each group on one side",
                    len(cut), len(sides), ", ".join(cut[:3]))
    return {s.image for s in samples if s.split == "test"}


def test_images(samples: list[Sample], config: DDQAConfig) -> set[str]:
    """The images of the test split, as ``ddqa.split`` decides."""
    if config.split == "official":
        return official_test_images(samples)
    groups = split_test_groups(samples, config.test_ratio, config.seed)
    return {s.image for s in samples if s.group in groups}


def _geometries(samples: list[Sample]) -> Iterator[tuple[Sample, Geometry | None]]:
    for sample in tqdm(samples, desc="build_ddqa: reading masks", unit="image"):
        if sample.is_defective and sample.mask is not None:
            yield sample, Geometry.of_mask(Path(sample.mask))
        else:
            yield sample, None


def build_records(samples: list[Sample], config: DDQAConfig, skipped: Counter[str]) -> Iterator[Record]:
    """Every record with its split and task, in file order; records not built are counted in ``skipped``."""
    vocabulary: dict[str, set[str]] = {sample.dataset: set() for sample in samples}
    for sample in samples:
        if sample.is_defective:
            vocabulary[sample.dataset].add(readable(sample.defect))
    ctx = Context(
        config=config,
        vocabulary={name: sorted(names) for name, names in vocabulary.items()},
        pool=sorted(set().union(*vocabulary.values())),
        skipped=skipped,
    )
    test = test_images(samples, config)
    ordered = sorted(samples, key=lambda s: (s.dataset, s.cls, s.defect, s.image))
    for sample, geometry in _geometries(ordered):
        split: Split = "test" if sample.image in test else "train"
        for name in config.tasks:
            task = TASKS[name]
            if task.defective_only and not sample.is_defective:
                continue
            built = task.build(task, sample, geometry, ctx)
            if built is not None:
                yield split, name, make_record(name, sample, *built)


class DDQACounts:
    """What was written: records per split and task, images per split, records per label."""

    def __init__(self, tasks: tuple[str, ...]) -> None:
        self.tasks = tasks
        self.records: Counter[tuple[str, str]] = Counter()
        self.images: dict[str, set[str]] = {split: set() for split in SPLITS}
        self.by_label: Counter[tuple[str, str, str, str, str]] = Counter()

    def add(self, split: Split, task: str, record: dict[str, Any]) -> None:
        self.records[split, task] += 1
        self.images[split].add(record["images"][0])
        self.by_label[split, task, record["source_dataset"], record["class"], record["defect"]] += 1

    def summary(self, skipped: Counter[str]) -> dict[str, Any]:
        """Counts per split and task, and per split, task, dataset, class and defect."""
        detail: dict[str, Any] = {split: {task: {} for task in self.tasks} for split in SPLITS}
        for (split, task, dataset, cls, defect), count in self.by_label.items():
            detail[split][task].setdefault(dataset, {}).setdefault(cls, {})[defect] = count
        return {
            "records": {split: {task: self.records[split, task] for task in self.tasks} for split in SPLITS},
            "images": {split: len(images) for split, images in self.images.items()},
            "skipped": dict(sorted(skipped.items())),
            "by_label": _sorted_tree(detail),
        }


def _sorted_tree(node: Any) -> Any:
    return {k: _sorted_tree(v) for k, v in sorted(node.items())} if isinstance(node, dict) else node


def write_ddqa(records: Iterable[Record], folder: Path, tasks: tuple[str, ...]) -> DDQACounts:
    """Each record into its split's ``Task_*.jsonl`` as it comes (train in ``folder``, test in
    ``folder/test``), then ``train.jsonl`` and ``test.jsonl``: each split's task files in task order."""
    paths = {(split, task): (folder if split == "train" else folder / "test") / TASKS[task].file
             for split in SPLITS for task in tasks}
    (folder / "test").mkdir(exist_ok=True)
    counts = DDQACounts(tasks)
    with ExitStack() as stack:
        files = {key: stack.enter_context(path.open("w", encoding="utf-8")) for key, path in paths.items()}
        for split, task, record in records:
            files[split, task].write(json.dumps(record, ensure_ascii=False) + "\n")
            counts.add(split, task, record)
    for split, combined in (("train", folder / "train.jsonl"), ("test", folder / "test.jsonl")):
        with combined.open("wb") as out:
            for task in tasks:
                with paths[split, task].open("rb") as part:
                    shutil.copyfileobj(part, out)
    return counts


def build_ddqa(samples: Iterable[Sample], out: Path, summary: Path, config: DDQAConfig) -> dict[str, Any]:
    """Build DDQA from manifest samples and write it to ``out`` and its counts to ``summary``.

    Image paths in the records are the samples' paths as read (relative to the working
    directory when the manifests were read from a relative folder).
    """
    skipped: Counter[str] = Counter()
    with atomic_directory(out) as staging:
        counts = write_ddqa(build_records(list(samples), config, skipped), staging, config.tasks).summary(skipped)
    atomic_write_json(summary, counts)
    return counts
