"""Reading images and masks; a bad file raises :class:`BadSampleError` naming it.

A mask pixel is a defect pixel when its grey value is above the threshold (127 for the organised
0/255 masks; sources pass their own, e.g. 0 for label maps).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from eiad.errors import BadSampleError

ORGANISED_THRESHOLD = 127  # the organised masks are 0/255: above this is a defect pixel


def read_image_size(path: Path) -> tuple[int, int]:
    """Decode an image far enough to catch truncation and corruption; return its (width, height).

    A JPEG is decoded in draft mode (at 1/8 scale): every byte of its entropy-coded data is
    still read, so a truncated file fails as under a full decode, at about half the cost.
    """
    image, size = _open(path, draft=True)
    image.close()
    return size


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB, fully decoded; a bad file raises :class:`BadSampleError` naming it."""
    with _open(path)[0] as image:
        return image.convert("RGB")


def read_mask(path: Path, threshold: int = ORGANISED_THRESHOLD) -> np.ndarray:
    """Read a mask of any format as a boolean array: True where grey value > ``threshold``.

    A JPEG mask is never trusted to be binary: thresholding is what makes it one.
    """
    with _open(path)[0] as image:
        return _grey(image) > threshold


def _grey(image: Image.Image) -> np.ndarray:
    # bilevel ("1"), palette and colour masks become 0-255 grey first, so one threshold fits all
    return np.asarray(image if image.mode in ("L", "I", "I;16") else image.convert("L"))


@dataclass(frozen=True)
class MaskFile:
    """A mask stored as an image file; a pixel is a defect pixel when its grey value is above
    ``threshold``. Called with the image's size (as every mask loader is), it reads the mask."""

    path: Path
    threshold: int

    def __call__(self, width: int, height: int) -> np.ndarray:
        return read_mask(self.path, self.threshold)

    def read(self) -> tuple[np.ndarray, bool]:
        """The boolean mask, and whether the file already is an organised mask (a 0/255 PNG)."""
        with _open(self.path)[0] as image:
            values = _grey(image)
            png = image.format == "PNG" and image.mode == "L"
        binary = png and self.threshold < 255 and not np.any((values != 0) & (values != 255))
        return values > self.threshold, binary


def _open(path: Path, draft: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image and its size as stored (draft mode decodes JPEGs at a reduced size)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BadSampleError(path, f"cannot be read ({err.strerror or err})") from err
    try:
        image = Image.open(io.BytesIO(data))
        size = image.size
        if draft:
            image.draft(image.mode, (1, 1))  # JPEG only; a no-op for other formats
        image.load()
    except UnidentifiedImageError as err:
        raise BadSampleError(path, "is not an image file Pillow can decode") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadSampleError(path, f"is truncated or corrupt ({err})") from err
    return image, size


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as a single-channel 0/255 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
