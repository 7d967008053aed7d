"""Writing a source's native samples into the unified layout (:mod:`eiad.data.layout`), spread over
the machine's cores, with the images' bytes placed rather than copied where the file system allows."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from eiad.data.files import Placement, place
from eiad.data.images import MaskFile, encode_mask_png, read_image_size
from eiad.data.layout import MANIFEST, OK, SKIPPED, BadSamplePolicy, NativeSample, OrganiseReport, Sample
from eiad.data.parallel import ordered_map
from eiad.errors import BadSampleError, DataError
from eiad.io import atomic_write_text, jsonl_text

log = logging.getLogger(__name__)


class LayoutWriter:
    """Writes samples into the unified layout under ``root`` and keeps the manifest.

    Every sample is validated before anything of it is written: the image must be whole
    (:func:`eiad.data.images.read_image_size`), the mask must have the image's size and, for a
    defective sample, be non-empty. A bad sample raises :class:`BadSampleError`, or is skipped
    and listed when the policy is ``skip``. Images are placed without copying their bytes where
    the file system allows (:func:`eiad.data.files.place`), and so are masks that already are
    0/255 PNGs of the image's size; other masks are re-encoded. Samples are spread over
    ``workers`` processes; the outputs do not depend on how many.
    """

    def __init__(self, root: Path, dataset: str, on_bad_sample: BadSamplePolicy, workers: int) -> None:
        self.root = root
        self.dataset = dataset
        self.on_bad_sample = on_bad_sample
        self.workers = workers
        self.report = OrganiseReport(dataset)

    def write(self, samples: Sequence[NativeSample]) -> OrganiseReport:
        """Validate and write every sample, then the manifest; bad samples raise, or are skipped under ``skip``."""
        jobs = list(zip(samples, self._plan(samples)))
        size = max(1, min(256, len(jobs) // (8 * self.workers)))  # small enough to keep every worker busy
        batches = (jobs[start:start + size] for start in range(0, len(jobs), size))
        rows: list[Sample] = []
        placements: Counter[str] = Counter()
        outcomes = ordered_map(partial(_write_batch, self.root, self.dataset), batches, self.workers)
        for outcome in tqdm(outcomes, total=len(jobs), desc=f"{self.dataset}: organising", unit="image"):
            if isinstance(outcome, BadSampleError):
                self._bad(outcome)
                continue
            row, placed = outcome
            rows.append(row)
            placements.update(placed)
            self.report.counts[row.defect] += 1
        log.info("%s: files placed as %s", self.dataset, dict(sorted(placements.items())))
        return self._finish(rows)

    def _plan(self, samples: Sequence[NativeSample]) -> list[Targets]:
        """Each sample's image (and mask) path in the layout, checked for clashes before any work
        starts; the folders are made here, once each."""
        folders: dict[tuple[str, str | None], str] = {}
        targets, seen = [], {}
        for sample in samples:
            folder = folders.get((sample.cls, sample.defect))
            if folder is None:
                folder = folders[sample.cls, sample.defect] = sample.folder().as_posix()
                (self.root / folder / "image").mkdir(parents=True, exist_ok=True)
                if sample.defect is not None:
                    (self.root / folder / "mask").mkdir(exist_ok=True)
            image = f"{folder}/image/{sample.stem}{sample.image.suffix.lower()}"
            if image in seen:
                raise DataError(sample.image, f"maps to the same organised file {image} as {seen[image]}")
            seen[image] = sample.image
            targets.append(Targets(image, f"{folder}/mask/{sample.stem}.png" if sample.defect is not None else None))
        return targets

    def _bad(self, err: BadSampleError) -> None:
        if self.on_bad_sample == "error":
            raise err
        log.warning("skipping bad sample: %s", err)
        self.report.skipped.append({"path": str(err.path), "problem": err.problem})

    def _finish(self, rows: list[Sample]) -> OrganiseReport:
        """Write the manifest (sorted, so the bytes do not depend on discovery order)."""
        if not rows:
            raise DataError(self.root, f"no usable sample was organised for {self.dataset}")
        rows.sort(key=lambda s: s.image)
        atomic_write_text(self.root / MANIFEST, jsonl_text(s.to_json() for s in rows))
        atomic_write_text(self.root / SKIPPED, jsonl_text(self.report.skipped))
        return self.report


class Targets(NamedTuple):
    """Where a sample's files go, relative to the layout's root (POSIX paths, as the manifest holds them)."""

    image: str
    mask: str | None


Outcome = tuple[Sample, list[Placement]] | BadSampleError  # a sample's row and how its files were placed


def _write_batch(root: Path, dataset: str, jobs: list[tuple[NativeSample, Targets]]) -> list[Outcome]:
    """Organise a batch of samples (in a worker process); a bad sample's outcome is its error."""
    outcomes: list[Outcome] = []
    for sample, targets in jobs:
        try:
            outcomes.append(_write_sample(root, dataset, sample, targets))
        except BadSampleError as err:
            outcomes.append(err)
    return outcomes


def _write_sample(root: Path, dataset: str, sample: NativeSample, targets: Targets) -> tuple[Sample, list[Placement]]:
    """Validate one sample, then place its image and write (or place) its mask."""
    width, height = read_image_size(sample.image)
    mask = organised_mask = None
    if sample.defect is not None:
        mask, organised_mask = _mask(sample, width, height)
        if mask.shape != (height, width):
            raise BadSampleError(sample.image, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}")
        if not mask.any():
            raise BadSampleError(sample.image, "defective image has an empty mask (no defect pixel)")
    placed = [place(sample.image, root / targets.image)]
    if mask is not None:
        if organised_mask is not None:
            placed.append(place(organised_mask, root / targets.mask))
        else:
            (root / targets.mask).write_bytes(encode_mask_png(mask))
    row = Sample(dataset, sample.cls, sample.defect or OK, targets.image, targets.mask, sample.group, sample.split)
    return row, placed


def _mask(sample: NativeSample, width: int, height: int) -> tuple[np.ndarray, Path | None]:
    """The boolean mask, and its file when that already is an organised mask (a 0/255 PNG)."""
    if sample.mask is None:
        raise BadSampleError(sample.image, "defective image has no mask")
    if isinstance(sample.mask, MaskFile):
        mask, binary = sample.mask.read()
        return mask, sample.mask.path if binary else None
    return sample.mask(width, height), None
