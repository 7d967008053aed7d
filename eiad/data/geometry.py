"""Mask geometry the DDQA tasks and the demo benchmark are built from: components, grid cells, boxes.

Conventions (documented in the README): connected components use 8-connectivity; a pixel
(col, row) covers [col, col+1) x [row, row+1); boxes are pixel-edge boxes and the centroid is the
mean of pixel centres, both normalised by the image width and height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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


@dataclass(frozen=True)
class Region:
    """One connected component of a mask, in pixels."""

    area: int
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (pixel edges, x2/y2 exclusive)
    centroid: tuple[float, float]  # x, y of the mean pixel centre


def regions(mask: np.ndarray) -> list[Region]:
    """Connected components (8-connectivity), largest first; ties by position."""
    # label only the rows and columns that hold defect pixels: cost follows the defect's
    # extent, not the image size (masks are mostly background)
    rows_hit = np.flatnonzero(mask.any(axis=1))
    cols_hit = np.flatnonzero(mask.any(axis=0))
    if rows_hit.size == 0:
        return []
    top, left = int(rows_hit[0]), int(cols_hit[0])
    crop = mask[top : rows_hit[-1] + 1, left : cols_hit[-1] + 1]
    labels, count = ndimage.label(crop, structure=_EIGHT_CONNECTED)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    area = np.bincount(ids, minlength=count + 1)[1:]
    mean_x = np.bincount(ids, weights=cols, minlength=count + 1)[1:] / area + left + 0.5
    mean_y = np.bincount(ids, weights=rows, minlength=count + 1)[1:] / area + top + 0.5
    found = [
        Region(int(size), (left + cs.start, top + rs.start, left + cs.stop, top + rs.stop), (float(x), float(y)))
        for size, (rs, cs), x, y in zip(area, ndimage.find_objects(labels), mean_x, mean_y)
    ]
    return sorted(found, key=lambda r: (-r.area, r.box[1], r.box[0]))


def grid_cell(centroid: tuple[float, float], width: int, height: int) -> str:
    """The 3x3 grid cell that holds a point; a point on a cell border goes right / down."""
    col = min(int(3 * centroid[0] / width), 2)
    row = min(int(3 * centroid[1] / height), 2)
    return GRID_CELLS[3 * row + col]


def normalised_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[float, ...]:
    x1, y1, x2, y2 = box
    return (x1 / width, y1 / height, x2 / width, y2 / height)
