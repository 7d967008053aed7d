"""PR-REAL (EIAD's fourth source; one Google Drive file): fetcher and strict validator.

PR-REAL's native layout and origin could not be established from public material, so it is
not guessed at: the organiser accepts the archive only when it already holds the unified
layout (optionally inside one wrapping folder), validates it strictly and copies it through
the same writer as every other source (so masks that are not 0/255 PNGs are re-encoded, and all counted)::

    <CLASS>/OK/image/<stem>.<ext>                normal images
    <CLASS>/NG/<defect>/image/<stem>.<ext>       defective images
    <CLASS>/NG/<defect>/mask/<stem>.<ext>        one mask per defective image, same stem and size

Anything else stops with an error that describes this layout.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from eiad.data.download import extract
from eiad.data.fetching import RECORD, discard_downloads, fetch_url, write_record
from eiad.data.images import MaskFile
from eiad.data.layout import OK, NativeSample, OrganiseParams, check_name
from eiad.errors import LayoutError
from eiad.params import Params
from eiad.sources import Source

DRIVE_ID = "1EBapy9BGnwmZJ9Rxh0uTF-Xii9FU0YCG"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
EXPECTED_LAYOUT = (
    "PR-REAL must come in the unified layout: <CLASS>/OK/image/<stem>.<ext> for normal images, "
    "<CLASS>/NG/<defect>/image/<stem>.<ext> for defective ones and <CLASS>/NG/<defect>/mask/<stem>.<ext> "
    "with one mask of the same stem and size per defective image (optionally all inside one folder)"
)


@dataclass(frozen=True)
class PRRealFetchParams(Params):
    # Google Drive's direct-download form of the file EIAD links (confirm=t skips the virus-scan page)
    url: str
    sha256: str  # no checksum is published: pin the one fetch.json records after a first download
    keep_archives: bool  # keep the verified archive in the downloads folder after unpacking it


@dataclass(frozen=True)
class PRRealOrganiseParams(OrganiseParams):
    mask_threshold: int  # grey value above which a mask pixel is a defect pixel


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith("."))


def _expect(path: Path, condition: bool, problem: str) -> None:
    if not condition:
        raise LayoutError(path, f"{problem}. {EXPECTED_LAYOUT}")


def _images(folder: Path) -> dict[str, Path]:
    """The images of an ``image/`` or ``mask/`` folder by stem; nothing else may be there."""
    _expect(folder, folder.is_dir(), "missing folder")
    files = _folders(folder)
    strays = [f.name for f in files if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES]
    _expect(folder, not strays, f"holds entries that are not images: {strays[:5]}")
    stems = {f.stem: f for f in files}
    _expect(folder, len(stems) == len(files), "holds two images with the same stem")
    return stems


def layout_root(raw: Path) -> Path:
    """``raw`` itself, or the one folder wrapping the layout (archives often add one)."""
    entries = [entry for entry in _folders(raw) if entry.name != RECORD]
    if len(entries) == 1 and entries[0].is_dir() and not (entries[0] / OK).is_dir() \
            and not (entries[0] / "NG").is_dir():
        return entries[0]
    return raw


class PRRealSource(Source):
    key = "prreal"
    name = "PR-REAL"
    fetch_params = PRRealFetchParams
    organise_params = PRRealOrganiseParams

    def download(self, config: PRRealFetchParams, dest: Path) -> None:
        # named by its URL: a download from another URL (a mirror, a new file) is not mistaken for this one
        name = f"PR-REAL-{hashlib.sha256(config.url.encode()).hexdigest()[:12]}.archive"
        archive, record = fetch_url(config.url, name, config.sha256)
        # extracted as it is: a wrapping folder is told from a class folder when organising
        extract(archive, dest)
        write_record(dest, [record])
        discard_downloads([archive], config.keep_archives)

    def catalogue(self, config: PRRealOrganiseParams, raw: Path) -> list[NativeSample]:
        root = layout_root(raw)
        classes = [entry for entry in _folders(root) if entry.name != RECORD]
        _expect(root, bool(classes) and all(c.is_dir() for c in classes), "expected only class folders here")
        samples = []
        for cls in classes:
            check_name(cls.name, "class", cls)
            samples.extend(_class_samples(cls, config.mask_threshold))
        return samples


def _class_samples(cls: Path, threshold: int) -> list[NativeSample]:
    parts = {p.name for p in _folders(cls)}
    _expect(cls, bool(parts) and parts <= {OK, "NG"}, f"a class folder holds OK/ and/or NG/, found {sorted(parts)}")
    samples = []
    if OK in parts:
        _expect(cls / OK, {p.name for p in _folders(cls / OK)} == {"image"}, "OK/ must hold only image/")
        samples.extend(NativeSample(cls.name, None, stem, image, None, group=f"{cls.name}-{stem}")
                       for stem, image in sorted(_images(cls / OK / "image").items()))
    if "NG" in parts:
        for defect in _folders(cls / "NG"):
            check_name(defect.name, "defect", defect)
            samples.extend(_defect_samples(cls.name, defect, threshold))
    return samples


def _defect_samples(cls: str, defect: Path, threshold: int) -> list[NativeSample]:
    _expect(defect, {p.name for p in _folders(defect)} == {"image", "mask"}, "a defect folder holds image/ and mask/")
    images, masks = _images(defect / "image"), _images(defect / "mask")
    unpaired = sorted(set(images) ^ set(masks))
    _expect(defect, not unpaired, f"images and masks do not pair up by stem: {unpaired[:5]}")
    return [NativeSample(cls, defect.name, stem, image, MaskFile(masks[stem], threshold),
                         group=f"{cls}-{defect.name}-{stem}")
            for stem, image in sorted(images.items())]


SOURCE = PRRealSource()
