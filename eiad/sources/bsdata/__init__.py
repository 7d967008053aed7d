"""BSData (ball-screw drive surfaces, GitHub 2Obe/BSData, CC BY-SA 4.0): fetcher and organiser.

Fetched as GitHub's archive of the repository at a pinned commit; only the dataset's own
files are kept (``data/``, ``label/``, ``image_data.json``, the licence and readme), not the
baseline model or the demo pictures.

Native layout::

    data/<stem>.jpg          1,104 images
    label/<stem>.json        394 labelme files: polygons labelled "Pitting"
    image_data.json          {"images": [{filename, train_test_split, type, wear_dev, annotations}]}

Masks are rasterised from the polygons exactly as labelme does it (its ``shape_to_mask``:
PIL ``ImageDraw.polygon`` with fill and outline both set), every polygon of an image into one
mask. The 710 unannotated images are wear-sequence frames, not certified defect-free; whether
they become ``BSD/OK`` (as the EIAD layout implies) or are left out is ``unannotated``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from eiad.data.fetching import fetch_url, unpack, write_record
from eiad.data.layout import NativeSample, OrganiseParams
from eiad.errors import BadSampleError, DataError, LayoutError
from eiad.params import Params
from eiad.sources import Source

CLASS = "BSD"
DEFECTS = {"Pitting": "pitting"}
NATIVE_FOLDERS = {"data", "label"}  # beside image_data.json; files (LICENSE, README) are tolerated
KEPT_FILES = ("image_data.json", "LICENSE", "README.md")


@dataclass(frozen=True)
class BSDataFetchParams(Params):
    commit: str  # a commit whose tree holds the dataset (data/, label/, image_data.json)
    url: str  # the archive's URL, with {commit}
    sha256: str  # of the archive; empty: recorded in fetch.json and logged, not verified


@dataclass(frozen=True)
class BSDataOrganiseParams(OrganiseParams):
    unannotated: Literal["ok", "skip"]  # ok: unannotated frames become BSD/OK images


def labelme_mask(label_file: Path, width: int, height: int) -> np.ndarray:
    """Every polygon of a labelme file drawn into one boolean mask, as labelme draws them."""
    try:
        label = json.loads(label_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BadSampleError(label_file, f"is not a readable labelme JSON file ({err})") from err
    if (label.get("imageWidth"), label.get("imageHeight")) != (width, height):
        raise BadSampleError(label_file, f"is for a {label.get('imageWidth')}x{label.get('imageHeight')} image, "
                                         f"the image is {width}x{height}")
    mask = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for number, shape in enumerate(label.get("shapes", [])):
        if shape.get("label") not in DEFECTS or shape.get("shape_type", "polygon") != "polygon":
            raise BadSampleError(label_file, f"shape {number} is a {shape.get('shape_type')!r} labelled "
                                             f"{shape.get('label')!r}; expected polygons labelled {sorted(DEFECTS)}")
        points = [(float(x), float(y)) for x, y in shape["points"]]
        if all(not (0 <= x < width and 0 <= y < height) for x, y in points):
            raise BadSampleError(label_file, f"polygon {number} lies entirely outside the {width}x{height} image")
        draw.polygon(points, outline=1, fill=1)
    return np.asarray(mask, dtype=bool)


def _image_index(raw: Path) -> list[dict[str, Any]]:
    if not raw.is_dir() or not all((raw / name).is_dir() for name in NATIVE_FOLDERS):
        raise LayoutError(raw, f"not a BSData folder: needs the folders {sorted(NATIVE_FOLDERS)} and image_data.json")
    unexpected = sorted(p.name for p in raw.iterdir() if p.is_dir() and p.name not in NATIVE_FOLDERS)
    if unexpected:
        raise LayoutError(raw, f"unexpected folders {unexpected} in the BSData layout; expected only "
                               f"{sorted(NATIVE_FOLDERS)}")
    index = raw / "image_data.json"
    try:
        images = json.loads(index.read_text(encoding="utf-8"))["images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(index, f"is not BSData's image index (needs an 'images' list): {err}") from err
    for entry in images:
        if not isinstance(entry, dict) or "filename" not in entry or "annotations" not in entry:
            raise DataError(index, f"malformed entry {entry!r}")
    return images


class BSDataSource(Source):
    key = "bsdata"
    name = "BSData"
    fetch_params = BSDataFetchParams
    organise_params = BSDataOrganiseParams

    def download(self, config: BSDataFetchParams, dest: Path) -> None:
        archive, record = fetch_url(config.url.format(commit=config.commit), f"BSData-{config.commit}.zip",
                                    config.sha256, revision=config.commit)
        repository = unpack(archive, dest, ".repository")
        for name in (*sorted(NATIVE_FOLDERS), *KEPT_FILES):
            if (repository / name).exists():
                (repository / name).rename(dest / name)
        shutil.rmtree(repository)
        try:
            _image_index(dest)  # the archive must hold the dataset, or the fetch fails here
        except DataError as err:
            raise DataError(archive, f"does not hold the BSData dataset: {err.problem}") from err
        write_record(dest, [record])

    def catalogue(self, config: BSDataOrganiseParams, raw: Path) -> list[NativeSample]:
        samples = []
        for entry in _image_index(raw):
            image = raw / "data" / entry["filename"]
            stem = Path(entry["filename"]).stem
            if entry["annotations"]:
                label = raw / "label" / entry["annotations"]
                if not label.is_file():
                    raise DataError(label, f"annotation file named by image_data.json for {entry['filename']} "
                                           "is missing")
                samples.append(NativeSample(CLASS, "pitting", stem, image,
                                            lambda width, height, label=label: labelme_mask(label, width, height),
                                            group=stem))
            elif config.unannotated == "ok":
                samples.append(NativeSample(CLASS, None, stem, image, None, group=stem))
        return samples


SOURCE = BSDataSource()
