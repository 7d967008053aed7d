"""Reading images and masks; a bad file raises :class:`BadSampleError` naming it.

A mask pixel is a defect pixel when its grey value is above the threshold (127 for the organised
0/255 masks; sources pass their own, e.g. 0 for label maps).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from eiad.errors import BadSampleError

ORGANISED_THRESHOLD = 127  # the organised masks are 0/255: above this is a defect pixel


def read_image_size(path: Path) -> tuple[int, int]:
    """Check that an image is whole and readable; return its (width, height).

    A sequential JPEG (what cameras and most tools write) is checked by walking its markers
    (:func:`sequential_jpeg_problem`), which reads every byte and finds a file cut short anywhere
    or a stray marker in its entropy-coded data, without decoding a pixel. Every other image (a
    progressive JPEG, a PNG, ...) is decoded, a JPEG in draft mode (at 1/8 scale, still reading
    every byte). Pillow's decoder raises on truncation but only warns on corrupt entropy-coded
    data, so on a sequential JPEG the walk catches whatever a decode catches, at about 1/40 of
    the cost (``tests/test_masks.py`` compares the two on damaged files).
    """
    data = _read(path)
    with _pillow_errors(path), Image.open(io.BytesIO(data)) as image:
        size = image.size  # as stored: draft mode shrinks it
        problem = sequential_jpeg_problem(data) if image.format == "JPEG" else NOT_SEQUENTIAL
        if problem == NOT_SEQUENTIAL:
            image.draft(image.mode, (1, 1))  # JPEG only; a no-op for other formats
            image.load()
    if problem not in (None, NOT_SEQUENTIAL):
        raise BadSampleError(path, f"is truncated or corrupt ({problem})")
    return size


NOT_SEQUENTIAL = "not a sequential JPEG"
_SEQUENTIAL_FRAMES = {0xC0, 0xC1}  # SOF0 baseline, SOF1 extended sequential (Huffman coded)
_OTHER_FRAMES = {*range(0xC2, 0xD0), 0xF7} - {0xC4, 0xC8, 0xCC}  # progressive, lossless, arithmetic, JPEG-LS
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and the restart markers stand alone
# in entropy-coded data, 0xFF followed by 0x00 (a stuffed byte), 0xD0-0xD7 (a restart marker) or
# 0xFF (a fill byte) is still data: the first 0xFF followed by anything else is the next marker
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def sequential_jpeg_problem(data: bytes) -> str | None:
    """What makes a sequential JPEG's bytes incomplete or malformed, None if nothing does; or
    ``NOT_SEQUENTIAL`` for a JPEG of another process (progressive, lossless, arithmetic coded)
    or none stated, which is left to the decoder.

    The header's segments are skipped by their lengths (so an EXIF thumbnail's markers are never
    read as the image's); in entropy-coded data a 0xFF byte may only be followed by a stuffed
    0x00, a restart marker or, ending the scan, a marker. A file is whole when an end-of-image
    marker follows its scans: a file cut short anywhere has none.
    """
    if not data.startswith(b"\xff\xd8"):
        return "no JPEG start-of-image marker"
    position, in_scan, sequential = 2, False, False
    while True:
        if in_scan:  # a regular expression finds the scan's end at C speed (a Python loop took 0.15 ms)
            found = _MARKER_AFTER_SCAN.search(data, position)
            position = found.start() if found else len(data)
        if position + 1 >= len(data):
            return "cut short: no end-of-image marker"
        if data[position] != 0xFF:
            return f"no marker at byte {position}"
        marker = data[position + 1]
        if marker == 0xD9:
            return None if sequential else NOT_SEQUENTIAL
        if marker == 0xFF or marker in _NO_LENGTH:
            position += 1 if marker == 0xFF else 2  # a fill byte, a marker standing alone
            continue
        if marker < 0xC0:
            return f"invalid marker 0xFF{marker:02X} at byte {position}"
        if marker in _OTHER_FRAMES:
            return NOT_SEQUENTIAL
        sequential = sequential or marker in _SEQUENTIAL_FRAMES
        if position + 4 > len(data):
            return "cut short: no end-of-image marker"
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if length < 2:
            return f"segment length {length} at byte {position}"
        position += 2 + length
        in_scan = marker == 0xDA  # start of scan: entropy-coded data follows its header


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB, fully decoded; a bad file raises :class:`BadSampleError` naming it."""
    with _open(path) as image:
        return image.convert("RGB")


def read_mask(path: Path, threshold: int = ORGANISED_THRESHOLD) -> np.ndarray:
    """Read a mask of any format as a boolean array: True where grey value > ``threshold``.

    A JPEG mask is never trusted to be binary: thresholding is what makes it one.
    """
    with _open(path) as image:
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
        with _open(self.path) as image:
            values = _grey(image)
            png = image.format == "PNG" and image.mode == "L"
        binary = png and self.threshold < 255 and not np.any((values != 0) & (values != 255))
        return values > self.threshold, binary


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise BadSampleError(path, f"cannot be read ({err.strerror or err})") from err


@contextmanager
def _pillow_errors(path: Path) -> Iterator[None]:
    """Pillow's errors inside, as a :class:`BadSampleError` naming ``path``."""
    try:
        yield
    except UnidentifiedImageError as err:
        raise BadSampleError(path, "is not an image file Pillow can decode") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadSampleError(path, f"is truncated or corrupt ({err})") from err


def _open(path: Path) -> Image.Image:
    """The image, decoded."""
    data = _read(path)
    with _pillow_errors(path):
        image = Image.open(io.BytesIO(data))
        image.load()
    return image


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as a single-channel 0/255 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
