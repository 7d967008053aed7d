"""Image and mask reading, and the mask geometry the DDQA tasks are built from.

Conventions (documented in the README):

* a mask pixel is a defect pixel when its grey value is above the threshold (127 for the
  organised 0/255 masks; sources pass their own, e.g. 0 for label maps);
* connected components use 8-connectivity;
* a pixel (col, row) covers [col, col+1) x [row, row+1); boxes are pixel-edge boxes and the
  centroid is the mean of pixel centres, both normalised by the image width and height.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from eiad.errors import BadSampleError

GRID_CELLS = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def read_image_size(path: Path) -> tuple[int, int]:
    """Fully decode an image (catching truncation) and return its (width, height)."""
    with _open(path) as image:
        return image.size


def read_mask(path: Path, threshold: int = 127) -> np.ndarray:
    """Read a mask of any format as a boolean array: True where grey value > ``threshold``.

    A JPEG mask is never trusted to be binary: thresholding is what makes it one.
    """
    with _open(path) as image:
        grey = image if image.mode in ("L", "1", "P", "I", "I;16") else image.convert("L")
        if grey.mode == "P":
            grey = grey.convert("L")
        return np.asarray(grey) > threshold


def _open(path: Path) -> Image.Image:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BadSampleError(path, f"cannot be read ({err.strerror or err})") from err
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as err:
        raise BadSampleError(path, "is not an image file Pillow can decode") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadSampleError(path, f"is truncated or corrupt ({err})") from err
    return image


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as a single-channel 0/255 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Region:
    """One connected component of a mask, in pixels."""

    area: int
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (pixel edges, x2/y2 exclusive)
    centroid: tuple[float, float]  # x, y of the mean pixel centre


def regions(mask: np.ndarray) -> list[Region]:
    """Connected components (8-connectivity), largest first; ties by position."""
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count == 0:
        return []
    flat = labels.ravel()
    rows, cols = np.divmod(np.arange(flat.size), mask.shape[1])
    area = np.bincount(flat, minlength=count + 1)
    sum_x = np.bincount(flat, weights=cols, minlength=count + 1)
    sum_y = np.bincount(flat, weights=rows, minlength=count + 1)
    found = []
    for index, (row_slice, col_slice) in enumerate(ndimage.find_objects(labels), start=1):
        found.append(
            Region(
                area=int(area[index]),
                box=(col_slice.start, row_slice.start, col_slice.stop, row_slice.stop),
                centroid=(sum_x[index] / area[index] + 0.5, sum_y[index] / area[index] + 0.5),
            )
        )
    return sorted(found, key=lambda r: (-r.area, r.box[1], r.box[0]))


def grid_cell(centroid: tuple[float, float], width: int, height: int) -> str:
    """The 3x3 grid cell that holds a point; a point on a cell border goes right / down."""
    col = min(int(3 * centroid[0] / width), 2)
    row = min(int(3 * centroid[1] / height), 2)
    return GRID_CELLS[3 * row + col]


def normalised_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[float, ...]:
    x1, y1, x2, y2 = box
    return (x1 / width, y1 / height, x2 / width, y2 / height)
