"""MiniCPM-V 2.6's image slicing, as its image processor cuts an image, and the text each image becomes."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from PIL import Image

FAMILY = "minicpmv2_6"


@dataclass(frozen=True)
class ImageConfig:
    """The image processor's settings, as named in ``preprocessor_config.json``; defaults are its own.

    2.6 always slices images (``slice_mode: true``), the only mode implemented here.
    """

    image_feature_size: int = 64  # query slots per image or slice (the resampler's query_num)
    patch_size: int = 14
    scale_resolution: int = 448
    max_slice_nums: int = 9
    use_image_id: bool = False
    norm_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    norm_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    im_start: str = "<image>"
    im_end: str = "</image>"
    slice_start: str = "<slice>"
    slice_end: str = "</slice>"
    unk: str = "<unk>"
    im_id_start: str = "<image_id>"
    im_id_end: str = "</image_id>"

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> ImageConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in known})

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.im_start, self.im_end, self.slice_start, self.slice_end, self.unk, self.im_id_start,
                self.im_id_end)


Grid = tuple[int, int]  # (columns, rows) of slices


def _ensure_divide(length: float, patch: int) -> int:
    return max(round(length / patch) * patch, patch)


def best_resize(size: tuple[float, float], scale: int, patch: int, upscale: bool = False) -> tuple[int, int]:
    """(width, height) of about ``scale``² pixels with the aspect ratio kept, both multiples of ``patch``.

    Smaller images keep their size unless ``upscale``.
    """
    width, height = size
    if width * height > scale * scale or upscale:
        ratio = width / height
        height = int(scale / math.sqrt(ratio))
        width = int(height * ratio)
    return _ensure_divide(width, patch), _ensure_divide(height, patch)


def slice_grid(size: tuple[int, int], scale: int, max_slices: int) -> Grid | None:
    """The grid an image is cut into, or None when one ``scale``² tile holds it.

    As many slices as the image has tiles' worth of pixels (at most ``max_slices``), give or take
    one; of those counts' factorisations, the grid whose aspect ratio is closest to the image's.
    """
    width, height = size
    multiple = min(math.ceil(width * height / (scale * scale)), max_slices)
    if multiple <= 1:
        return None
    counts = [n for n in (multiple - 1, multiple, multiple + 1) if 1 < n <= max_slices]
    grids = [(m, n // m) for n in counts for m in range(1, n + 1) if n % m == 0]
    log_ratio = math.log(width / height)
    return min(grids, key=lambda grid: abs(log_ratio - math.log(grid[0] / grid[1])))  # first of equals, as theirs


def refine_size(size: tuple[int, int], grid: Grid, scale: int, patch: int) -> tuple[int, int]:
    """The size the image is resized to before cutting: every slice about ``scale``², patch-aligned."""
    columns, rows = grid
    cell = (_ensure_divide(size[0], columns) / columns, _ensure_divide(size[1], rows) / rows)
    width, height = best_resize(cell, scale, patch, upscale=True)
    return width * columns, height * rows


def slice_image(image: Image.Image, config: ImageConfig) -> tuple[list[Image.Image], Grid | None]:
    """What the vision encoder sees: the whole image resized, then the grid's slices row by row."""
    scale, patch = config.scale_resolution, config.patch_size
    grid = slice_grid(image.size, scale, config.max_slice_nums)
    source = image.resize(best_resize(image.size, scale, patch, upscale=grid is None), Image.Resampling.BICUBIC)
    if grid is None:
        return [source], None
    refined = image.resize(refine_size(image.size, grid, scale, patch), Image.Resampling.BICUBIC)
    width, height = refined.width // grid[0], refined.height // grid[1]
    slices = [refined.crop((c * width, r * height, (c + 1) * width, (r + 1) * height))
              for r in range(grid[1]) for c in range(grid[0])]
    return [source, *slices], grid


def image_placeholder(config: ImageConfig, index: int, grid: Grid | None) -> str:
    """The text an image becomes: its id, the whole image's query slots, then a line of slices per row.

    As the processor and ms-swift write it; the official fine-tuning script gives the id only to
    images it slices, so an image would read differently there in training than in ``chat()``.
    """
    slots = config.unk * config.image_feature_size
    text = f"{config.im_start}{slots}{config.im_end}"
    if config.use_image_id:
        text = f"{config.im_id_start}{index}{config.im_id_end}{text}"
    if grid is not None:
        row = f"{config.slice_start}{slots}{config.slice_end}" * grid[0]
        text += "\n".join([row] * grid[1])
    return text
