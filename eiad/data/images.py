"""Reading images and masks; a bad file raises :class:`BadSampleError` naming it.

A mask pixel is a defect pixel when its grey value is above the threshold (127 for the organised
0/255 masks; sources pass their own, e.g. 0 for label maps).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from eiad.errors import BadSampleError


def read_image_size(path: Path) -> tuple[int, int]:
    """Fully decode an image (catching truncation) and return its (width, height)."""
    with _open(path) as image:
        return image.size


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB, fully decoded; a bad file raises :class:`BadSampleError` naming it."""
    with _open(path) as image:
        return image.convert("RGB")


def read_mask(path: Path, threshold: int = 127) -> np.ndarray:
    """Read a mask of any format as a boolean array: True where grey value > ``threshold``.

    A JPEG mask is never trusted to be binary: thresholding is what makes it one.
    """
    with _open(path) as image:
        # bilevel ("1"), palette and colour masks become 0-255 grey first, so one threshold fits all
        grey = image if image.mode in ("L", "I", "I;16") else image.convert("L")
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
