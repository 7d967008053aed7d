"""Thumbnails for the report, drawn with Pillow: a DDQA image with its mask, boxes and grid cell."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from eiad.data.geometry import GRID_CELLS
from eiad.data.images import load_rgb, read_mask

THUMBNAIL = 192  # px, the longer side
MASK_TINT = (255, 40, 40)
BOX_COLOUR = (40, 220, 255)
CELL_COLOUR = (255, 210, 0)


def thumbnail(path: Path, side: int = THUMBNAIL) -> Image.Image:
    image = load_rgb(path)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def annotated(image_path: Path, mask_path: Path | None, boxes: Sequence[Sequence[float]], cell: str | None,
              side: int = THUMBNAIL) -> Image.Image:
    """The image at ``side`` px with the mask tinted, the DFM boxes drawn (normalised [x1, y1, x2, y2])
    and, for RDL, the 3x3 grid with the answer's cell outlined."""
    image = load_rgb(image_path)
    scale = side / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    if mask_path is not None:
        mask = Image.fromarray(read_mask(mask_path).astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
        tint = Image.new("RGB", image.size, MASK_TINT)
        image = Image.composite(Image.blend(image, tint, 0.55), image, mask)
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for x1, y1, x2, y2 in boxes:
        draw.rectangle((x1 * width, y1 * height, x2 * width - 1, y2 * height - 1), outline=BOX_COLOUR, width=2)
    if cell is not None:
        for third in (1, 2):
            draw.line((third * width / 3, 0, third * width / 3, height), fill=(255, 255, 255), width=1)
            draw.line((0, third * height / 3, width, third * height / 3), fill=(255, 255, 255), width=1)
        row, col = divmod(GRID_CELLS.index(cell), 3)
        draw.rectangle((col * width / 3, row * height / 3, (col + 1) * width / 3 - 1, (row + 1) * height / 3 - 1),
                       outline=CELL_COLOUR, width=3)
    return image


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()
