"""VISION (CVPR 2023 workshop; Hugging Face ``VISION-Workshop/VISION-Datasets``, gated): fetcher and organiser.

Fetched from the Hub, one ``<Name>.tar.gz`` per chosen sub-dataset, extracted side by side::

    <Name>/train/_annotations.coco.json   Roboflow COCO export: info, licenses, categories,
    <Name>/train/<file_name>              images [{id, file_name, width, height}], annotations
    <Name>/val/...                        [{id, image_id, category_id, segmentation, area, bbox,
    <Name>/inference/...                  iscrowd}] with polygon segmentations

``<Name>`` is one of the 14 sub-datasets (Cable, Capacitor, Casting, Console, Cylinder,
Electronics, Groove, Hemisphere, Lens, PCB_1, PCB_2, Ring, Screw, Wood) and becomes the class
folder; ``inference/`` is unlabelled and never read. Native class names become readable defect
names through ``classes.json`` beside this module (data, not code); a class missing from it stops the stage.

Masks are decoded exactly as the COCO tools do (pycocotools ``frPyObjects`` + ``decode``, as
``COCO.annToMask``), every annotation of one defect class in an image unioned into one mask.
An image with annotations of several classes gives one sample per class, its stem suffixed
``__<defect>``, all in the image's group. Groups follow what the file names allow: Roboflow names
the copies it derives from one photograph (augmentations) ``<original>_<ext>.rf.<hash>.<ext>``,
and those near-duplicates share a group across splits; any other image is its own group. The
official split (``ddqa.split: official``) is the folders': ``train`` trains, ``val`` tests.
Roboflow's placeholder category (named after the
project, supercategory ``none``, the parent of every real category) is recognised from the
file's ``categories``, never by id. Images without annotation are not certified defect-free:
``unannotated`` decides whether they become ``<Name>/OK`` or are left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as coco_rle

from eiad.data.fetching import fetch_hub_archives
from eiad.data.hub import HubParams
from eiad.data.layout import NativeSample, OrganiseParams, Split, check_name
from eiad.errors import BadSampleError, ConfigError, DataError, LayoutError
from eiad.sources import Source

TABLE = Path(__file__).with_name("classes.json")
ANNOTATIONS = "_annotations.coco.json"
NATIVE_SPLITS = ("train", "val", "inference")
PLACEHOLDER = None  # marks Roboflow's placeholder category in a category map

SplitFolder = Literal["train", "val"]
OFFICIAL_SPLIT: dict[str, Split] = {"train": "train", "val": "test"}
# Roboflow's name for a copy derived from an uploaded photograph: <original>_<ext>.rf.<hash>.<ext>
_ROBOFLOW_COPY = re.compile(r"(?P<original>.+)_(?:jpe?g|png|bmp)\.rf\.[0-9a-fA-F]+\.\w+", re.IGNORECASE)


@cache
def defect_names() -> dict[str, dict[str, str]]:
    """Sub-dataset -> native class name -> readable defect name (classes.json)."""
    table: dict[str, dict[str, str]] = json.loads(TABLE.read_text(encoding="utf-8"))["subsets"]
    for subset, classes in table.items():
        for readable in classes.values():
            check_name(readable, f"{subset} defect", TABLE)
    return table


@dataclass(frozen=True)
class VisionFetchParams(HubParams):
    subsets: tuple[str, ...]  # empty: all 14
    keep_archives: bool  # keep the verified archives in the downloads folder after unpacking them

    def __post_init__(self) -> None:
        unknown = sorted(set(self.subsets) - set(defect_names()))
        if unknown:
            raise ConfigError(f"sources.vision.fetch.subsets: unknown {unknown}; known: {sorted(defect_names())}")


@dataclass(frozen=True)
class VisionOrganiseParams(OrganiseParams):
    subsets: tuple[str, ...]  # empty: every sub-dataset folder present
    splits: tuple[SplitFolder, ...]  # inference/ is unlabelled and never read
    unannotated: Literal["ok", "skip"]  # ok: images without annotation become <Name>/OK

    def __post_init__(self) -> None:
        where = "sources.vision.organise"
        if not self.splits:
            raise ConfigError(f"{where}.splits: name at least one of train, val")
        unknown = sorted(set(self.subsets) - set(defect_names()))
        if unknown:
            raise ConfigError(f"{where}.subsets: unknown sub-datasets {unknown}; known: {sorted(defect_names())}")


@dataclass
class CocoImage:
    """One ``images`` entry of a COCO file, its annotations grouped by readable defect name."""

    path: Path
    width: int
    height: int
    by_defect: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def rasterise(annotations: list[dict[str, Any]], image: CocoImage, width: int, height: int) -> np.ndarray:
    """Every polygon of ``annotations`` decoded by pycocotools into one boolean mask (their union)."""
    if (image.width, image.height) != (width, height):
        raise BadSampleError(image.path, f"{ANNOTATIONS} gives it as {image.width}x{image.height}, "
                                         f"the image is {width}x{height}")
    polygons = [polygon for annotation in annotations for polygon in _polygons(annotation, image.path, width, height)]
    # merging the RLEs is a union, the same as OR-ing COCO.annToMask over the annotations
    return coco_rle.decode(coco_rle.merge(coco_rle.frPyObjects(polygons, height, width))).astype(bool)


def _polygons(annotation: dict[str, Any], image: Path, width: int, height: int) -> list[list[float]]:
    where = f"annotation {annotation.get('id')} of {ANNOTATIONS}"
    segmentation = annotation.get("segmentation")
    if not isinstance(segmentation, list) or not segmentation:
        raise BadSampleError(image, f"{where} has no polygon segmentation (got {segmentation!r})")
    for number, polygon in enumerate(segmentation):
        # fewer than 3 points is no polygon, and pycocotools would read a 4-number list as a box
        if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                or not all(isinstance(v, (int, float)) for v in polygon)):
            raise BadSampleError(image, f"{where}: polygon {number} is not a list of at least 3 x, y points")
        xs, ys = polygon[0::2], polygon[1::2]
        if max(xs) <= 0 or min(xs) >= width or max(ys) <= 0 or min(ys) >= height:
            raise BadSampleError(image, f"{where}: polygon {number} lies entirely outside the {width}x{height} image")
    return segmentation


def _read_coco(coco_file: Path) -> dict[str, Any]:
    try:
        coco = json.loads(coco_file.read_text(encoding="utf-8"))
        if not all(isinstance(coco[key], list) for key in ("categories", "images", "annotations")):
            raise TypeError("categories, images and annotations must be lists")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(coco_file, f"is not a COCO file with categories, images and annotations: {err}") from err
    return coco


def _categories(categories: list[Any], coco_file: Path) -> dict[Any, str | None]:
    """Category id -> native class name, or PLACEHOLDER for Roboflow's project category.

    Roboflow names the project in a category with supercategory "none" and gives it as the
    supercategory of every real class; its id varies, so it is found by that shape.
    """
    try:
        parents = {category["supercategory"] for category in categories}
        return {category["id"]: PLACEHOLDER if category["supercategory"] == "none" and category["name"] in parents
                else category["name"] for category in categories}
    except (KeyError, TypeError) as err:
        raise DataError(coco_file, f"malformed categories (each needs id, name, supercategory): {err}") from err


def _defect(annotation: dict[str, Any], categories: dict[Any, str | None], subset: str, coco_file: Path) -> str:
    category = annotation.get("category_id")
    if category not in categories:
        raise DataError(coco_file, f"annotation {annotation.get('id')} has category id {category!r}, "
                                   f"which its categories do not define")
    native = categories[category]
    if native is PLACEHOLDER:
        raise DataError(coco_file, f"annotation {annotation.get('id')} uses Roboflow's placeholder category "
                                   f"{category!r} (the project, not a defect class)")
    readable = defect_names()[subset].get(native)
    if readable is None:
        raise DataError(coco_file, f"{subset} class {native!r} has no readable defect name: add it to {TABLE}")
    return readable


def coco_images(folder: Path, subset: str) -> list[CocoImage]:
    """The images of one split folder with their annotations, in the COCO file's order."""
    coco_file = folder / ANNOTATIONS
    if not coco_file.is_file():
        raise LayoutError(folder, f"has no {ANNOTATIONS}: not a VISION split folder")
    coco = _read_coco(coco_file)
    categories = _categories(coco["categories"], coco_file)
    images: dict[Any, CocoImage] = {}
    for entry in coco["images"]:
        try:
            key, image = entry["id"], CocoImage(folder / entry["file_name"], int(entry["width"]), int(entry["height"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(coco_file, f"malformed images entry {entry!r} "
                                       "(needs id, file_name, width, height)") from err
        if key in images:
            raise DataError(coco_file, f"image id {key!r} appears twice")
        images[key] = image
    for annotation in coco["annotations"]:
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise DataError(coco_file, f"annotation {annotation.get('id')} refers to image id "
                                       f"{annotation.get('image_id')!r}, which its images do not define")
        image.by_defect.setdefault(_defect(annotation, categories, subset, coco_file), []).append(annotation)
    return list(images.values())


def _subsets(raw: Path, wanted: tuple[str, ...]) -> list[str]:
    if not raw.is_dir():
        raise LayoutError(raw, "not a VISION folder: it does not exist")
    present = sorted(p.name for p in raw.iterdir() if p.is_dir())
    unexpected = sorted(set(present) - set(defect_names()))
    if unexpected:
        raise LayoutError(raw, f"unexpected folders {unexpected}; VISION's sub-datasets are {sorted(defect_names())}")
    if not present:
        raise LayoutError(raw, f"not a VISION folder: none of the sub-datasets {sorted(defect_names())} is here")
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise LayoutError(raw, f"sub-datasets {missing} are not here; found {present}")
    return list(wanted) or present


def _split_folders(subset_dir: Path, splits: tuple[str, ...]) -> list[Path]:
    unexpected = sorted(p.name for p in subset_dir.iterdir() if p.is_dir() and p.name not in NATIVE_SPLITS)
    if unexpected:
        raise LayoutError(subset_dir, f"unexpected folders {unexpected}; expected only {list(NATIVE_SPLITS)}")
    absent = [split for split in splits if not (subset_dir / split).is_dir()]
    if absent:
        raise LayoutError(subset_dir, f"has no {', '.join(absent)} folder")
    return [subset_dir / split for split in splits]


def photo_group(subset: str, split: str, file_name: str) -> str:
    """The split group of an image: its original photograph when Roboflow's name tells it, else itself."""
    derived = _ROBOFLOW_COPY.fullmatch(Path(file_name).name)
    return f"{subset}-{derived['original']}" if derived else f"{subset}-{split}_{Path(file_name).stem}"


def _native(subset: str, split: str, image: CocoImage, unannotated: str) -> list[NativeSample]:
    """The samples of one COCO image: none or one normal, or one per defect class annotated."""
    # the split prefix keeps train/000001.jpg and val/000001.jpg apart in one class folder
    stem = f"{split}_{image.path.stem}"
    group = photo_group(subset, split, image.path.name)
    official = OFFICIAL_SPLIT[split]
    if not image.by_defect:
        return [NativeSample(subset, None, stem, image.path, None, group, official)] if unannotated == "ok" else []
    several = len(image.by_defect) > 1
    return [NativeSample(subset, defect, f"{stem}__{defect}" if several else stem, image.path,
                         partial(rasterise, polygons, image), group, official)
            for defect, polygons in sorted(image.by_defect.items())]


class VisionSource(Source):
    key = "vision"
    name = "VISION"
    fetch_params = VisionFetchParams
    organise_params = VisionOrganiseParams

    def download(self, config: VisionFetchParams, dest: Path) -> None:
        archives = {f"{subset}.tar.gz": subset for subset in config.subsets or sorted(defect_names())}
        fetch_hub_archives(config.repo(), archives, dest, self.name, config.keep_archives)

    def catalogue(self, config: VisionOrganiseParams, raw: Path) -> list[NativeSample]:
        return [sample
                for subset in _subsets(raw, config.subsets)
                for folder in _split_folders(raw / subset, config.splits)
                for image in coco_images(folder, subset)
                for sample in _native(subset, folder.name, image, config.unannotated)]


SOURCE = VisionSource()
