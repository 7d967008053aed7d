"""The demo's products: signed distance functions (SDFs) in the part's own frame, and the product table.

Image coordinates run over [-1, 1] on both axes (x right, y down); part units are the same
before a pose's scale is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray
SDF = Callable[[Array, Array], Array]


def sdf_circle(x: Array, y: Array, cx: float, cy: float, r: float) -> Array:
    return np.hypot(x - cx, y - cy) - r


def sdf_round_box(x: Array, y: Array, hx: float, hy: float, radius: float) -> Array:
    qx = np.abs(x) - hx + radius
    qy = np.abs(y) - hy + radius
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - radius


def sdf_segment(x: Array, y: Array, a: tuple[float, float], b: tuple[float, float], r: float) -> Array:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy or 1e-12
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / length2, 0.0, 1.0)
    return np.hypot(x - ax - t * dx, y - ay - t * dy) - r


def coverage(distance: Array, pixel: float) -> Array:
    """Fraction of a pixel inside the shape, from the signed distance of its centre."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


@dataclass(frozen=True)
class Product:
    """A product: its silhouette, non-defect features, and surface colour in the part frame."""

    name: str
    outer: SDF  # silhouette (negative inside the material, holes excluded)
    features: SDF  # designed features (slots, traces): defects are not centred on them
    surface: Callable[[Array, Array, Array], Array]  # (x, y, phases) -> RGB float [..., 3]


def _washer_surface(x: Array, y: Array, ph: Array) -> Array:
    r = np.hypot(x, y)
    grey = 158 + 10 * np.sin(55 * r + ph[0]) + 6 * np.sin(7 * np.arctan2(y, x) + ph[1])
    return np.stack([grey, grey, grey * 1.02], axis=-1)


def _plate_surface(x: Array, y: Array, ph: Array) -> Array:
    grey = 140 + 8 * np.sin(6 * x + ph[0]) * np.sin(5 * y + ph[1]) + 4 * np.sin(31 * (x + y) + ph[2])
    return np.stack([grey * 0.96, grey, grey * 1.06], axis=-1)


def _screw_surface(x: Array, y: Array, ph: Array) -> Array:
    r = np.hypot(x, y)
    grey = 176 - 28 * r + 6 * np.sin(18 * np.arctan2(y, x) + ph[0])
    slot = coverage(_screw_slot(x, y), 0.04)
    grey = grey * (1 - slot) + 62 * slot
    return np.stack([grey * 1.03, grey, grey * 0.93], axis=-1)


def _screw_slot(x: Array, y: Array) -> Array:
    horizontal = sdf_round_box(x, y, 0.42, 0.07, 0.03)
    vertical = sdf_round_box(x, y, 0.07, 0.42, 0.03)
    return np.minimum(horizontal, vertical)


def _pcb_traces(x: Array, y: Array) -> Array:
    traces = np.minimum(
        np.minimum(sdf_round_box(x, y - 0.3, 0.6, 0.035, 0.0), sdf_round_box(x + 0.35, y, 0.035, 0.45, 0.0)),
        sdf_round_box(x - 0.3, y + 0.2, 0.035, 0.3, 0.0),
    )
    pads = np.minimum(sdf_circle(x, y, 0.55, 0.3, 0.08), sdf_circle(x, y, -0.35, -0.45, 0.08))
    return np.minimum(traces, pads)


def _pcb_surface(x: Array, y: Array, ph: Array) -> Array:
    # a light solder-mask green: bright enough that a dark defect can be 90-125 levels darker
    weave = 5 * np.sin(45 * x + ph[0]) * np.sin(45 * y + ph[1])
    board = np.stack([96 + weave, 176 + weave, 118 + weave], axis=-1)
    copper = coverage(_pcb_traces(x, y), 0.04)[..., None]
    return board * (1 - copper) + np.array([200.0, 160.0, 84.0]) * copper


def _no_features(x: Array, y: Array) -> Array:
    return np.full(np.broadcast(x, y).shape, 10.0)


def _plate_outer(x: Array, y: Array) -> Array:
    body = sdf_round_box(x, y, 0.76, 0.56, 0.12)
    holes = np.minimum.reduce([sdf_circle(x, y, sx * 0.52, sy * 0.32, 0.09) for sx in (-1, 1) for sy in (-1, 1)])
    return np.maximum(body, -holes)


PRODUCT_TABLE: dict[str, Product] = {
    "washer": Product(
        "washer",
        outer=lambda x, y: np.maximum(np.hypot(x, y) - 0.74, 0.3 - np.hypot(x, y)),
        features=_no_features,
        surface=_washer_surface,
    ),
    "plate": Product("plate", outer=_plate_outer, features=_no_features, surface=_plate_surface),
    "screw_head": Product(
        "screw_head",
        outer=lambda x, y: np.hypot(x, y) - 0.72,
        features=_screw_slot,
        surface=_screw_surface,
    ),
    "pcb": Product(
        "pcb", outer=lambda x, y: sdf_round_box(x, y, 0.78, 0.6, 0.06), features=_pcb_traces, surface=_pcb_surface
    ),
}
PRODUCTS = tuple(PRODUCT_TABLE)
