"""The unified layout every source is organised into, and its manifest.

``<root>/<CLASS>/NG/<defect>/image/<stem>.<ext>`` with the mask at
``<root>/<CLASS>/NG/<defect>/mask/<stem>.png`` (single-channel, 0/255), and
``<root>/<CLASS>/OK/image/<stem>.<ext>`` for normal images. ``<root>/manifest.jsonl`` has one
row per sample, paths relative to ``<root>``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from eiad.errors import DataError
from eiad.io import read_jsonl
from eiad.params import Params

OK = "OK"
MANIFEST = "manifest.jsonl"
SKIPPED = "skipped.jsonl"  # bad samples left out under on_bad_sample: skip, with the reason
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

BadSamplePolicy = Literal["error", "skip"]
# (image width, height) -> boolean mask; a module-level function or a MaskFile, as workers get it pickled
MaskLoader = Callable[[int, int], np.ndarray]
Split = Literal["train", "test"]


@dataclass(frozen=True)
class OrganiseParams(Params):
    """What every source's ``organise`` block has: the bad-sample policy (README "Bad input")."""

    on_bad_sample: BadSamplePolicy


@dataclass(frozen=True)
class NativeSample:
    """One sample as a source's catalogue finds it in the native layout, before it is written.

    ``defect`` None is a normal image; otherwise ``mask`` loads its boolean mask, called with the
    image's width and height (polygon sources rasterise at that size), so that an unreadable mask
    falls under the bad-sample policy like an unreadable image. ``group`` ties images that must
    stay on one side of a split; ``split`` is the source's own split, where it ships one.
    """

    cls: str
    defect: str | None
    stem: str
    image: Path
    mask: MaskLoader | None
    group: str
    split: Split | None = None

    def folder(self) -> Path:
        """The sample's folder in the layout: ``<CLASS>/OK`` or ``<CLASS>/NG/<defect>``."""
        return Path(self.cls) / OK if self.defect is None else Path(self.cls) / "NG" / self.defect


@dataclass(frozen=True)
class Sample:
    """One manifest row. ``defect`` is ``OK`` for a normal image; ``mask`` is None then.
    ``split`` is the source's own split (``ddqa.split: official``), None where it has none."""

    dataset: str
    cls: str
    defect: str
    image: str
    mask: str | None
    group: str
    split: Split | None = None

    @property
    def is_defective(self) -> bool:
        return self.defect != OK

    def to_json(self) -> dict[str, Any]:
        row = {"dataset": self.dataset, "class": self.cls, "defect": self.defect, "image": self.image,
               "mask": self.mask, "group": self.group}
        # only a source that ships its own split has the key, so other manifests keep their bytes
        return row if self.split is None else {**row, "split": self.split}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Sample:
        return cls(row["dataset"], row["class"], row["defect"], row["image"], row["mask"], row["group"],
                   row.get("split"))


@dataclass
class OrganiseReport:
    """What an organiser wrote (counts, the metrics of the organise stage) and what it skipped."""

    dataset: str
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "samples": sum(self.counts.values()),
            "normal": self.counts[OK],
            "defective": sum(n for label, n in self.counts.items() if label != OK),
            "per_defect": dict(sorted(self.counts.items())),
            "skipped": len(self.skipped),
        }


def check_name(name: str, what: str, where: Path) -> str:
    """Class and defect names become folder names: keep them portable."""
    if not _SAFE_NAME.match(name) or name == OK:
        raise DataError(where, f"{what} name {name!r} cannot be a folder name in the unified layout")
    return name


def read_manifest(root: Path) -> list[Sample]:
    """Samples of one organised dataset, with image and mask paths joined to ``root``."""
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(path, "manifest missing: run the organise stage for this dataset first")
    samples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        try:
            sample = Sample.from_json(row)
            samples.append(replace(sample, image=(root / sample.image).as_posix(),
                                   mask=sample.mask and (root / sample.mask).as_posix()))
        except KeyError as err:
            raise DataError(path, f"row {number} lacks the key {err}") from err
    return samples
