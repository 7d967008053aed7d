"""The unified layout every source is organised into, and its manifest.

``<root>/<CLASS>/NG/<defect>/image/<stem>.<ext>`` with the mask at
``<root>/<CLASS>/NG/<defect>/mask/<stem>.png`` (single-channel, 0/255), and
``<root>/<CLASS>/OK/image/<stem>.<ext>`` for normal images. ``<root>/manifest.jsonl`` has one
row per sample, paths relative to ``<root>``.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from eiad.data.images import encode_mask_png, read_image_size
from eiad.errors import BadSampleError, DataError
from eiad.io import atomic_write_text, jsonl_text, read_jsonl
from eiad.params import Params

log = logging.getLogger(__name__)

OK = "OK"
MANIFEST = "manifest.jsonl"
SKIPPED = "skipped.jsonl"  # bad samples left out under on_bad_sample: skip, with the reason
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

BadSamplePolicy = Literal["error", "skip"]
MaskLoader = Callable[[int, int], np.ndarray]  # (image width, height) -> boolean mask


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
    stay on one side of a split.
    """

    cls: str
    defect: str | None
    stem: str
    image: Path
    mask: MaskLoader | None
    group: str


@dataclass(frozen=True)
class Sample:
    """One manifest row. ``defect`` is ``OK`` for a normal image; ``mask`` is None then."""

    dataset: str
    cls: str
    defect: str
    image: str
    mask: str | None
    group: str

    @property
    def is_defective(self) -> bool:
        return self.defect != OK

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["class"] = row.pop("cls")
        return {key: row[key] for key in ("dataset", "class", "defect", "image", "mask", "group")}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Sample:
        return cls(row["dataset"], row["class"], row["defect"], row["image"], row["mask"], row["group"])


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


class LayoutWriter:
    """Writes samples into the unified layout under ``root`` and keeps the manifest.

    Every sample is validated before anything of it is written: the image must decode
    completely, the mask must have the image's size and, for a defective sample, be non-empty.
    A bad sample raises :class:`BadSampleError`, or is skipped and counted when the policy is
    ``skip``.
    """

    def __init__(self, root: Path, dataset: str, on_bad_sample: BadSamplePolicy = "error") -> None:
        self.root = root
        self.dataset = dataset
        self.on_bad_sample = on_bad_sample
        self.samples: list[Sample] = []
        self.report = OrganiseReport(dataset)

    def add(self, sample: NativeSample) -> None:
        """Validate and write one sample; a bad one raises, or is skipped and listed under ``skip``."""
        try:
            self._add(sample)
        except BadSampleError as err:
            if self.on_bad_sample == "error":
                raise
            log.warning("skipping bad sample: %s", err)
            self.report.skipped.append({"path": str(err.path), "problem": err.problem})

    def _add(self, sample: NativeSample) -> None:
        cls, defect, stem, image, group = sample.cls, sample.defect, sample.stem, sample.image, sample.group
        width, height = read_image_size(image)
        mask = None
        if defect is None:
            folder = Path(cls) / OK
        else:
            if sample.mask is None:
                raise BadSampleError(image, "defective image has no mask")
            mask = sample.mask(width, height)
            if mask.shape != (height, width):
                raise BadSampleError(
                    image, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}"
                )
            if not mask.any():
                raise BadSampleError(image, "defective image has an empty mask (no defect pixel)")
            folder = Path(cls) / "NG" / defect
        image_rel = folder / "image" / f"{stem}{image.suffix.lower()}"
        if (self.root / image_rel).exists():
            raise DataError(image, f"two samples map to the same organised file {image_rel}")
        (self.root / image_rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, self.root / image_rel)
        mask_rel = None
        if mask is not None:
            mask_rel = folder / "mask" / f"{stem}.png"
            (self.root / mask_rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / mask_rel).write_bytes(encode_mask_png(mask))
        label = defect or OK
        self.samples.append(
            Sample(self.dataset, cls, label, image_rel.as_posix(), mask_rel and mask_rel.as_posix(), group)
        )
        self.report.counts[label] += 1

    def finish(self) -> OrganiseReport:
        """Write the manifest (sorted, so the bytes do not depend on discovery order)."""
        if not self.samples:
            raise DataError(self.root, f"no usable sample was organised for {self.dataset}")
        rows = sorted(self.samples, key=lambda s: s.image)
        atomic_write_text(self.root / MANIFEST, jsonl_text(s.to_json() for s in rows))
        atomic_write_text(self.root / SKIPPED, jsonl_text(self.report.skipped))
        return self.report


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
