"""Building DDQA from organised samples: records per task, the held-out split, files and counts."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from eiad.data.layout import OK, Sample
from eiad.ddqa.records import make_record
from eiad.ddqa.tasks import TASKS, Context, Geometry
from eiad.errors import ConfigError
from eiad.io import atomic_directory, atomic_write_json, jsonl_text
from eiad.params import Params
from eiad.questions import readable
from eiad.seeding import stable_random


@dataclass(frozen=True)
class DDQAConfig(Params):
    seed: int
    tasks: tuple[str, ...]
    test_ratio: float  # share of groups held out per (dataset, class, defect)
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
        for name in config.tasks:
            task = TASKS[name]
            if task.defective_only and not sample.is_defective:
                continue
            built = task.build(task, sample, geometry, ctx)
            if built is not None:
                records[split][name].append(make_record(name, sample, *built))
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
                (folder / TASKS[task].file).write_text(text, encoding="utf-8")
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


