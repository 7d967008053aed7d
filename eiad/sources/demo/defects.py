"""The demo's defect kinds as a table: how each is placed on a part, shaped and seen."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

import numpy as np

from eiad.sources.demo.products import Array, Product, sdf_segment


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


def _on_surface(product: Product) -> Callable[[float, float], bool]:
    """Inside the material, away from the rim and from designed features."""

    def accept(px: float, py: float) -> bool:
        grid = np.array([px]), np.array([py])
        return bool(product.outer(*grid)[0] < -0.1 and product.features(*grid)[0] > 0.06)

    return accept


def _on_rim(product: Product) -> Callable[[float, float], bool]:
    def accept(px: float, py: float) -> bool:
        return bool(abs(product.outer(np.array([px]), np.array([py]))[0]) < 0.015)

    return accept


Segments = tuple[tuple[float, float, float, float, float], ...]


def _disk(cx: float, cy: float, area: float, rng: np.random.Generator) -> Segments:
    return ((cx, cy, cx, cy, math.sqrt(area / math.pi)),)


def _bite(cx: float, cy: float, area: float, rng: np.random.Generator) -> Segments:
    # centred on the rim, so about half of the disk lies on the part
    r = math.sqrt(2 * area / math.pi)
    return ((cx, cy, cx, cy, r),)


def _scratch(cx: float, cy: float, area: float, rng: np.random.Generator) -> Segments:
    aspect = rng.uniform(4.0, 7.0)
    r = math.sqrt(area / (4 * aspect + math.pi))
    dx, dy = _unit(rng.uniform(0, math.pi))
    half = aspect * r
    return ((cx - dx * half, cy - dy * half, cx + dx * half, cy + dy * half, r),)


def _crack(cx: float, cy: float, area: float, rng: np.random.Generator) -> Segments:
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
    return tuple((*a, *b, r) for a, b in pairwise(shifted))


def _stain(cx: float, cy: float, area: float, rng: np.random.Generator) -> Segments:
    r = math.sqrt(area / (math.pi * 1.7))
    blobs = []
    for _ in range(3):
        ox, oy = rng.normal(0, 0.45 * r, size=2)
        rr = r * rng.uniform(0.7, 1.0)
        blobs.append((cx + ox, cy + oy, cx + ox, cy + oy, rr))
    return tuple(blobs)


@dataclass(frozen=True)
class DefectKind:
    """How a kind of defect is placed, shaped and seen.

    ``look``: ``dark`` or ``bright`` shifts the surface by a contrast drawn from the render
    config's range; ``missing`` removes the material (the background shows through).
    """

    name: str
    place: Callable[[Product], Callable[[float, float], bool]]
    shape: Callable[[float, float, float, np.random.Generator], Segments]  # (centre x, y, area, rng)
    look: Literal["dark", "bright", "missing"]


DEFECT_KINDS: dict[str, DefectKind] = {kind.name: kind for kind in (
    DefectKind("scratch", _on_surface, _scratch, "dark"),
    DefectKind("hole", _on_surface, _disk, "dark"),
    DefectKind("crack", _on_surface, _crack, "dark"),
    DefectKind("stain", _on_surface, _stain, "bright"),
    DefectKind("missing_part", _on_rim, _bite, "missing"),
)}
DEFECTS = tuple(DEFECT_KINDS)


def initial_defect(kind: DefectKind, product: Product, area: float, rng: np.random.Generator) -> Defect:
    """A defect shape of roughly ``area`` (part units squared); sizes are refined later."""
    cx, cy = _sample_point(rng, kind.place(product))
    return Defect(kind.name, (cx, cy), kind.shape(cx, cy, area, rng))
