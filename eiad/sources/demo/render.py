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
from dataclasses import dataclass, field, replace

import numpy as np

from eiad.errors import ConfigError
from eiad.params import Params
from eiad.sources.demo.defects import DEFECT_KINDS, Defect, initial_defect
from eiad.sources.demo.products import PRODUCT_TABLE, Array, coverage


@dataclass(frozen=True)
class RenderConfig(Params):
    """How the demo images look (``render`` of the demo's params blocks)."""

    image_size: int
    defect_area: tuple[float, float]  # fraction of the part's visible area
    dark_contrast: tuple[float, float]  # grey levels darker than the part (scratch, hole, crack)
    bright_contrast: tuple[float, float]  # grey levels brighter than the part (stain)
    noise: float  # sensor noise, standard deviation in grey levels

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16, got {self.image_size}")
        for name in ("defect_area", "dark_contrast", "bright_contrast"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ConfigError(f"{name} must be [low, high] with 0 <= low <= high")
        if self.defect_area[1] >= 0.5:
            raise ConfigError("defect_area above 0.5 of the part is not a defect")


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
        look = DEFECT_KINDS[part.defect.kind].look
        if look == "missing":
            body = body * (1 - hit)
        else:
            sign = -1.0 if look == "dark" else 1.0
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
    kind = DEFECT_KINDS[defect]
    target = float(rng.uniform(*config.defect_area))
    # drawn for every kind (a missing part shows none), so each draw after it stays where it was
    contrast_range = config.bright_contrast if kind.look == "bright" else config.dark_contrast
    contrast = float(rng.uniform(*contrast_range))
    part_pixels, _ = _visible_area(part, config)
    part_units = part_pixels * (2.0 / config.image_size) ** 2
    for _ in range(50):
        shape = replace(initial_defect(kind, PRODUCT_TABLE[product], target * part_units, rng), contrast=contrast)
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
