"""Procedural industrial inspection images with exact defect masks (the offline demo data).

Every shape is a signed distance function (SDF) in the part's own coordinate frame, so a
part can be photographed from several poses: each pixel centre is mapped into the part
frame and the SDFs are evaluated there. Coverage is anti-aliased from the distance, and a
pixel belongs to the defect mask when the defect covers at least half of it.

Image coordinates run over [-1, 1] on both axes (x right, y down); part units are the same
before the pose's scale is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

Array = np.ndarray
SDF = Callable[[Array, Array], Array]

PRODUCTS = ("washer", "plate", "screw_head", "pcb")
DEFECTS = ("scratch", "hole", "crack", "stain", "missing_part")
DARK_DEFECTS = frozenset({"scratch", "hole", "crack"})


@dataclass(frozen=True)
class RenderConfig:
    """How the demo images look; ``defect_area`` is a fraction of the part's visible area."""

    image_size: int = 56
    defect_area: tuple[float, float] = (0.03, 0.15)
    dark_contrast: tuple[float, float] = (90.0, 125.0)
    bright_contrast: tuple[float, float] = (70.0, 95.0)
    noise: float = 3.0

    def __post_init__(self) -> None:
        from eiad.errors import ConfigError

        if self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16, got {self.image_size}")
        for name in ("defect_area", "dark_contrast", "bright_contrast"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ConfigError(f"{name} must be [low, high] with 0 <= low <= high")
        if self.defect_area[1] >= 0.5:
            raise ConfigError("defect_area above 0.5 of the part is not a defect")


# --- signed distance functions -------------------------------------------------------------


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


# --- products --------------------------------------------------------------------------------


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


# --- defects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defect:
    """A defect in the part frame: a union of capsules (a disk is a zero-length capsule)."""

    kind: str
    centre: tuple[float, float]
    segments: tuple[tuple[float, float, float, float, float], ...]  # (ax, ay, bx, by, radius)
    contrast: float = 0.0

    def sdf(self, x: Array, y: Array) -> Array:
        return np.minimum.reduce([sdf_segment(x, y, (ax, ay), (bx, by), r) for ax, ay, bx, by, r in self.segments])

    def scaled(self, k: float) -> Defect:
        """The same defect with every length multiplied by ``k`` around its centre."""
        cx, cy = self.centre

        def about(px: float, py: float) -> tuple[float, float]:
            return cx + k * (px - cx), cy + k * (py - cy)

        segments = tuple((*about(ax, ay), *about(bx, by), r * k) for ax, ay, bx, by, r in self.segments)
        return replace(self, segments=segments)


def _unit(angle: float) -> tuple[float, float]:
    return math.cos(angle), math.sin(angle)


def _sample_point(rng: np.random.Generator, accept: Callable[[float, float], bool]) -> tuple[float, float]:
    for _ in range(10_000):
        px, py = rng.uniform(-0.8, 0.8, size=2)
        if accept(float(px), float(py)):
            return float(px), float(py)
    raise RuntimeError("could not place a defect on the part")  # geometry bug, not user input


def _initial_defect(kind: str, product: Product, area: float, rng: np.random.Generator) -> Defect:
    """A defect shape of roughly ``area`` (part units squared); sizes are refined later."""

    def on_surface(px: float, py: float) -> bool:
        grid = np.array([px]), np.array([py])
        return bool(product.outer(*grid)[0] < -0.1 and product.features(*grid)[0] > 0.06)

    def on_rim(px: float, py: float) -> bool:
        grid = np.array([px]), np.array([py])
        return bool(abs(product.outer(*grid)[0]) < 0.015)

    if kind == "missing_part":
        cx, cy = _sample_point(rng, on_rim)
        r = math.sqrt(2 * area / math.pi)
        return Defect(kind, (cx, cy), ((cx, cy, cx, cy, r),))
    cx, cy = _sample_point(rng, on_surface)
    if kind == "hole":
        return Defect(kind, (cx, cy), ((cx, cy, cx, cy, math.sqrt(area / math.pi)),))
    if kind == "scratch":
        aspect = rng.uniform(4.0, 7.0)
        r = math.sqrt(area / (4 * aspect + math.pi))
        dx, dy = _unit(rng.uniform(0, math.pi))
        half = aspect * r
        return Defect(kind, (cx, cy), ((cx - dx * half, cy - dy * half, cx + dx * half, cy + dy * half, r),))
    if kind == "crack":
        r = math.sqrt(area / 26)
        heading = rng.uniform(0, 2 * math.pi)
        points = [(cx, cy)]
        for _ in range(4):
            heading += rng.choice([-1, 1]) * rng.uniform(0.5, 1.0)
            dx, dy = _unit(heading)
            px, py = points[-1]
            points.append((px + dx * 3.2 * r, py + dy * 3.2 * r))
        mx = sum(p[0] for p in points) / len(points)
        my = sum(p[1] for p in points) / len(points)
        shifted = [(px - mx + cx, py - my + cy) for px, py in points]
        segments = tuple((*a, *b, r) for a, b in zip(shifted, shifted[1:]))
        return Defect(kind, (cx, cy), segments)
    if kind == "stain":
        r = math.sqrt(area / (math.pi * 1.7))
        blobs = []
        for _ in range(3):
            ox, oy = rng.normal(0, 0.45 * r, size=2)
            rr = r * rng.uniform(0.7, 1.0)
            blobs.append((cx + ox, cy + oy, cx + ox, cy + oy, rr))
        return Defect(kind, (cx, cy), tuple(blobs))
    raise ValueError(f"unknown defect kind {kind!r}; known: {DEFECTS}")


# --- poses and rendering ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    """Where and how the part lies in one capture, and how it is lit."""

    angle: float
    shift: tuple[float, float]
    scale: float
    gain: float
    background: float
    ramp: tuple[float, float]  # linear lighting gradient (grey levels per image unit)


def random_pose(rng: np.random.Generator) -> Pose:
    return Pose(
        angle=float(rng.uniform(0, 2 * math.pi)),
        shift=(float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.08, 0.08))),
        scale=float(rng.uniform(0.86, 1.0)),
        gain=float(rng.uniform(0.88, 1.12)),
        background=float(rng.uniform(22, 55)),
        ramp=(float(rng.uniform(-9, 9)), float(rng.uniform(-9, 9))),
    )


@dataclass(frozen=True)
class Part:
    """One physical part: a product, its surface texture phases and at most one defect."""

    product: str
    phases: tuple[float, ...]
    defect: Defect | None = None


@dataclass
class Capture:
    """A rendered image (H x W x 3 uint8) and its defect mask (H x W bool)."""

    image: Array
    mask: Array = field(repr=False)


def _part_frame(size: int, pose: Pose) -> tuple[Array, Array, float, Array, Array]:
    centres = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(centres, centres)
    cos, sin = math.cos(pose.angle), math.sin(pose.angle)
    du, dv = u - pose.shift[0], v - pose.shift[1]
    x = (cos * du + sin * dv) / pose.scale
    y = (-sin * du + cos * dv) / pose.scale
    return x, y, 2.0 / (size * pose.scale), u, v


def render(part: Part, pose: Pose, config: RenderConfig, rng: np.random.Generator) -> Capture:
    """Photograph ``part`` in ``pose``; ``rng`` only draws the sensor noise."""
    product = PRODUCT_TABLE[part.product]
    x, y, pixel, u, v = _part_frame(config.image_size, pose)
    body = coverage(product.outer(x, y), pixel)
    colour = product.surface(x, y, np.asarray(part.phases))
    mask = np.zeros(body.shape, dtype=bool)
    if part.defect is not None:
        hit = coverage(part.defect.sdf(x, y), pixel)
        mask = (hit >= 0.5) & (body >= 0.5)
        if part.defect.kind == "missing_part":
            body = body * (1 - hit)
        else:
            sign = -1.0 if part.defect.kind in DARK_DEFECTS else 1.0
            colour = colour + sign * part.defect.contrast * (hit * (body > 0))[..., None]
    lit = np.clip(colour, 0, 255) * pose.gain
    background = pose.background + pose.ramp[0] * u + pose.ramp[1] * v
    image = background[..., None] * (1 - body[..., None]) + lit * body[..., None]
    image = image + rng.normal(0, config.noise, size=image.shape)
    return Capture(np.clip(np.rint(image), 0, 255).astype(np.uint8), mask)


def _visible_area(part: Part, config: RenderConfig) -> tuple[int, int]:
    """(part pixels, defect pixels) of the part in a canonical pose, for sizing defects."""
    pose = Pose(0.0, (0.0, 0.0), 1.0, 1.0, 0.0, (0.0, 0.0))
    x, y, pixel, _, _ = _part_frame(config.image_size, pose)
    body = coverage(PRODUCT_TABLE[part.product].outer(x, y), pixel) >= 0.5
    if part.defect is None:
        return int(body.sum()), 0
    defect = coverage(part.defect.sdf(x, y), pixel) >= 0.5
    return int(body.sum()), int((defect & body).sum())


def make_part(product: str, defect: str | None, config: RenderConfig, rng: np.random.Generator) -> Part:
    """A part of ``product`` carrying ``defect`` (None for a normal part) sized per ``config``."""
    phases = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, size=3))
    part = Part(product, phases)
    if defect is None:
        return part
    target = float(rng.uniform(*config.defect_area))
    contrast_range = config.bright_contrast if defect == "stain" else config.dark_contrast
    contrast = float(rng.uniform(*contrast_range))
    part_pixels, _ = _visible_area(part, config)
    part_units = part_pixels * (2.0 / config.image_size) ** 2
    for _ in range(50):
        shape = replace(_initial_defect(defect, PRODUCT_TABLE[product], target * part_units, rng), contrast=contrast)
        for _ in range(3):  # two refinements bring the drawn area close to the target
            _, drawn = _visible_area(replace(part, defect=shape), config)
            if drawn == 0:
                break
            shape = shape.scaled(math.sqrt(target * part_pixels / drawn))
        _, drawn = _visible_area(replace(part, defect=shape), config)
        low, high = config.defect_area
        if drawn > 0 and 0.7 * low <= drawn / part_pixels <= 1.3 * high:
            return replace(part, defect=shape)
    raise RuntimeError(f"could not size a {defect} on a {product}")
