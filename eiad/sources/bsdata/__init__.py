"""BSData (ball-screw drive surfaces, GitHub 2Obe/BSData, CC BY-SA 4.0): fetcher and organiser.

Fetched as GitHub's archive of the repository at a pinned commit; only the dataset's own
files are kept (``data/``, ``label/``, ``image_data.json``, the licence and readme), not the
baseline model, the demo pictures or the split script. The repository's first commit
(``da45cf0``) held the dataset as ``data.zip`` and ``label.zip``; the folders exist from
:data:`FIRST_FOLDERS_COMMIT` on, and a pin older than that stops the fetch saying so.

Native layout::

    data/<stem>.jpg          1,104 images
    label/<stem>.json        394 labelme files: polygons labelled "Pitting"
    image_data.json          {"images": [{filename, train_test_split, type, wear_dev, annotations}]}

Masks are rasterised from the polygons exactly as labelme does it (its ``shape_to_mask``:
PIL ``ImageDraw.polygon`` with fill and outline both set), every polygon of an image into one
mask. The 710 unannotated images are wear-sequence frames, not certified defect-free; whether
they become ``BSD/OK`` (as the EIAD layout implies) or are left out is ``unannotated``.

Split groups follow the physics: the type-2 images are 27 wear developments of 69 frames
each, one spot of one ball screw photographed as its pitting grows (``wear_dev`` lists each
image's sequences), so every frame of a spot is in one group (:func:`wear_groups`); crops of
one photograph (``<photo>_crop_<n>``) share a group too. ``train_test_split`` is the authors'
split (``ddqa.split: official``; its unassigned frames train); it puts frames of one spot on
both sides.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from eiad.data.fetching import discard_downloads, fetch_url, unpack, write_record
from eiad.data.hub import is_commit
from eiad.data.layout import NativeSample, OrganiseParams
from eiad.errors import BadSampleError, ConfigError, DataError, LayoutError
from eiad.params import Params
from eiad.sources import Source

CLASS = "BSD"
DEFECTS = {"Pitting": "pitting"}
NATIVE_FOLDERS = {"data", "label"}  # beside image_data.json; files (LICENSE, README) are tolerated
KEPT_FILES = ("image_data.json", "LICENSE", "README.md")
FIRST_LAYOUT = ("data.zip", "label.zip")  # the initial commit's form of the dataset
FIRST_FOLDERS_COMMIT = "0d27ec19d8191a87bc39077f1339ad752beeee30"  # the first commit with data/ and label/
_PHOTO = re.compile(r"(?P<photo>.+)_crop_\d+")  # crops of one photograph: <photo>_crop_<n>


@dataclass(frozen=True)
class BSDataFetchParams(Params):
    commit: str  # a commit whose tree holds the dataset (data/, label/, image_data.json)
    url: str  # the archive's URL, with {commit}
    sha256: str  # of the archive; empty: recorded in fetch.json and logged, not verified
    keep_archives: bool  # keep the verified archive in the downloads folder after unpacking it

    def __post_init__(self) -> None:
        if not is_commit(self.commit):
            raise ConfigError(f"sources.bsdata.fetch.commit must be a 40-hex commit of 2Obe/BSData (a branch moves), "
                              f"got {self.commit!r}; the dataset's folders exist from {FIRST_FOLDERS_COMMIT} on")


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


def wear_groups(images: list[dict[str, Any]]) -> dict[str, str]:
    """Each image's split group (by file name): the frames of one spot's wear development share one.

    Images joined by a wear sequence (``wear_dev``) or by being crops of one photograph are
    one group: the connected components of the graph of sequences and photographs that an image
    links. A group is named after its first sequence (by name), or its photograph when it has none.
    """
    # "~" sorts after every sequence name, so a component's first link is a sequence if it has one
    links = {entry["filename"]: ["~" + _photo(entry["filename"]), *entry["wear_dev"]] for entry in images}
    index = {link: number for number, link in enumerate(sorted({link for row in links.values() for link in row}))}
    edges = [(index[a], index[b]) for row in links.values() for a, b in pairwise(row)]
    graph = coo_matrix((np.ones(len(edges)), ([a for a, _ in edges], [b for _, b in edges])), shape=(len(index),) * 2)
    _, component = connected_components(graph, directed=False)
    first: dict[int, str] = {}
    for link, number in index.items():  # in name order
        first.setdefault(component[number], link.lstrip("~"))
    return {name: first[component[index[row[0]]]] for name, row in links.items()}


def _photo(filename: str) -> str:
    stem = Path(filename).stem
    match = _PHOTO.fullmatch(stem)
    return match["photo"] if match else stem


def _refuse_first_layout(repository: Path, archive: Path, commit: str) -> None:
    """The initial commit zipped the dataset: say which commit to pin instead of failing on folders."""
    if not (repository / "data").is_dir() and all((repository / name).is_file() for name in FIRST_LAYOUT):
        raise DataError(archive, f"BSData at commit {commit} holds the dataset as {' and '.join(FIRST_LAYOUT)} "
                                 f"(the repository's first layout), not the data/ and label/ folders; set "
                                 f"sources.bsdata.fetch.commit to {FIRST_FOLDERS_COMMIT} or a later commit")


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
        if (not isinstance(entry, dict) or not {"filename", "annotations", "wear_dev"} <= set(entry)
                or not isinstance(entry["wear_dev"], list)
                or entry.get("train_test_split") not in ("train", "test", None)):
            raise DataError(index, f"malformed entry {entry!r} (needs filename, annotations, a wear_dev list and "
                                   "train_test_split train, test or null)")
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
        _refuse_first_layout(repository, archive, config.commit)
        for name in (*sorted(NATIVE_FOLDERS), *KEPT_FILES):
            if (repository / name).exists():
                (repository / name).rename(dest / name)
        shutil.rmtree(repository)
        try:
            _image_index(dest)  # the archive must hold the dataset, or the fetch fails here
        except DataError as err:
            raise DataError(archive, f"does not hold the BSData dataset: {err.problem}") from err
        write_record(dest, [record])
        discard_downloads([archive], config.keep_archives)

    def catalogue(self, config: BSDataOrganiseParams, raw: Path) -> list[NativeSample]:
        images = _image_index(raw)
        groups = wear_groups(images)
        samples = []
        for entry in images:
            image, stem = raw / "data" / entry["filename"], Path(entry["filename"]).stem
            group, split = f"{CLASS}-{groups[entry['filename']]}", entry.get("train_test_split")
            if entry["annotations"]:
                label = raw / "label" / entry["annotations"]
                if not label.is_file():
                    raise DataError(label, f"annotation file named by image_data.json for {entry['filename']} "
                                           "is missing")
                samples.append(NativeSample(CLASS, "pitting", stem, image, partial(labelme_mask, label), group, split))
            elif config.unannotated == "ok":
                samples.append(NativeSample(CLASS, None, stem, image, None, group, split))
        return samples


SOURCE = BSDataSource()
