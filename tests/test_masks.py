import io

import numpy as np
import pytest
from PIL import Image

from eiad.data.geometry import grid_cell, regions
from eiad.data.images import (
    NOT_SEQUENTIAL,
    MaskFile,
    encode_mask_png,
    read_image_size,
    read_mask,
    sequential_jpeg_problem,
)
from eiad.ddqa.boxes import format_boxes
from eiad.ddqa.tasks import Geometry
from eiad.errors import BadSampleError


def test_jpeg_mask_is_thresholded_to_binary(tmp_path):
    mask = np.zeros((48, 64), dtype=bool)
    mask[10:30, 20:40] = True
    path = tmp_path / "mask.jpg"
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, quality=60)
    raw = np.asarray(Image.open(path))
    assert len(np.unique(raw)) > 2  # JPEG really is not binary
    read = read_mask(path)
    assert read.dtype == bool
    assert (read != mask).sum() <= 0.02 * mask.size


def test_rgb_and_label_masks(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[2:4, 2:4] = (255, 0, 0)  # red mask as some tools save it
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert read_mask(tmp_path / "rgb.png", threshold=0).sum() == 4
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[5, 5] = 1
    Image.fromarray(labels).save(tmp_path / "labels.png")
    assert read_mask(tmp_path / "labels.png", threshold=0).sum() == 1
    assert read_mask(tmp_path / "labels.png").sum() == 0
    Image.fromarray(labels.astype(bool)).save(tmp_path / "bilevel.png")  # mode "1", as some tools save
    assert Image.open(tmp_path / "bilevel.png").mode == "1"
    assert read_mask(tmp_path / "bilevel.png").sum() == 1


def test_encoded_mask_is_single_channel_binary():
    mask = np.eye(5, dtype=bool)
    image = Image.open(io.BytesIO(encode_mask_png(mask)))
    assert image.mode == "L" and image.format == "PNG"
    assert set(np.unique(np.asarray(image))) == {0, 255}


def test_regions_use_eight_connectivity_and_pixel_edge_boxes():
    mask = np.zeros((9, 9), dtype=bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal: one component
    mask[6:9, 5:9] = True  # a 3x4 block
    found = regions(mask)
    assert [r.area for r in found] == [12, 3]
    assert found[0].box == (5, 6, 9, 9)
    assert found[0].centroid == pytest.approx((7.0, 7.5))
    assert found[1].box == (1, 1, 4, 4)
    assert regions(np.zeros((3, 3), dtype=bool)) == []


@pytest.mark.parametrize(
    ("point", "cell"),
    [((0.5, 0.5), "top left"), ((45.0, 10.0), "top"), ((89.9, 1.0), "top right"), ((30.0, 45.0), "center"),
     ((29.99, 45.0), "left"), ((1.0, 89.9), "bottom left"), ((90.0, 90.0), "bottom right")],
)
def test_grid_cell_borders_go_right_and_down(point, cell):
    assert grid_cell(point, 90, 90) == cell


def test_box_formats():
    assert format_boxes([(0.415, 0.737, 0.473, 0.8)]) == "[0.415, 0.737, 0.473, 0.800]"
    assert format_boxes([(0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)]) == "[[0.000, 0.000, 0.500, 0.500], [0.500, 0.500, 1.000, 1.000]]"


def test_small_components_dropped_but_largest_always_kept(tmp_path):
    mask = np.zeros((100, 100), dtype=bool)
    mask[60:80, 10:30] = True  # 400 px
    mask[5, 90] = True  # 1 px speck above it
    path = tmp_path / "m.png"
    path.write_bytes(encode_mask_png(mask))
    geometry = Geometry.of_mask(path)
    assert geometry.boxes(0.001) == [(0.1, 0.6, 0.3, 0.8)]
    assert geometry.boxes(0.0) == [(0.9, 0.05, 0.91, 0.06), (0.1, 0.6, 0.3, 0.8)]
    assert geometry.boxes(0.5) == [(0.1, 0.6, 0.3, 0.8)]
    assert geometry.cell() == "bottom left"


def test_truncated_and_non_images_are_named(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert read_image_size(good) == (32, 32)
    for path in (truncated, text, tmp_path / "missing.png", tmp_path):
        with pytest.raises(BadSampleError) as caught:
            read_image_size(path)
        assert str(path) in str(caught.value)


def _jpeg(progressive: bool = False) -> bytes:
    """A 320x240 photo-like JPEG (smooth, so its entropy-coded data is not random)."""
    rng = np.random.default_rng(0)
    pixels = np.asarray(Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).resize((40, 30))
                        .resize((320, 240), Image.BILINEAR))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, progressive=progressive)
    return buffer.getvalue()


def _draft_decode_fails(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft(image.mode, (1, 1))
            image.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_short_anywhere_is_caught(tmp_path, progressive):
    """Sequential JPEGs are checked by their markers, progressive ones by a draft decode: either way
    every cut is caught, and the size is the stored one."""
    data = _jpeg(progressive)
    assert (sequential_jpeg_problem(data) == NOT_SEQUENTIAL) == progressive
    good = tmp_path / "good.jpg"
    good.write_bytes(data)
    assert read_image_size(good) == (320, 240)
    for cut in [*range(2, len(data), max(1, len(data) // 97)), len(data) - 2, len(data) - 1]:
        truncated = tmp_path / f"cut_{cut}.jpg"
        truncated.write_bytes(data[:cut])
        with pytest.raises(BadSampleError, match="truncated or corrupt|not an image") as caught:
            read_image_size(truncated)
        assert str(truncated) in str(caught.value)


def test_the_marker_walk_catches_what_a_draft_decode_of_a_sequential_jpeg_catches():
    """Damage inside the entropy-coded data: Pillow's decoder raises for few such files (it warns on
    the rest); every one it rejects the marker walk rejects too."""
    data = _jpeg()
    scan = data.index(b"\xff\xda") + 20
    rng = np.random.default_rng(1)
    rejected_by_decode = rejected_by_walk = 0
    for _ in range(300):
        damaged = bytearray(data)
        for position, value in zip(rng.integers(scan, len(data) - 2, 8), rng.integers(0, 256, 8)):
            damaged[position] = value
        by_decode, by_walk = _draft_decode_fails(bytes(damaged)), sequential_jpeg_problem(bytes(damaged)) is not None
        assert by_walk or not by_decode
        rejected_by_decode += by_decode
        rejected_by_walk += by_walk
    assert 0 < rejected_by_decode <= rejected_by_walk


def test_a_thumbnail_in_the_header_does_not_make_a_cut_jpeg_whole(tmp_path):
    """An application segment may hold a whole JPEG (an EXIF thumbnail, with its own end marker):
    segments are skipped by length, so only the image's own end counts."""
    data, thumbnail = _jpeg(), _jpeg()[:2000] + b"\xff\xd9"
    segment = b"\xff\xef" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_thumbnail = data[:2] + segment + data[2:]
    assert sequential_jpeg_problem(with_thumbnail) is None
    assert "cut short" in sequential_jpeg_problem(with_thumbnail[:len(segment) + 3000])
    path = tmp_path / "thumb.jpg"
    path.write_bytes(with_thumbnail)
    assert read_image_size(path) == (320, 240)


def test_a_mask_file_tells_whether_it_is_already_an_organised_mask(tmp_path):
    values = np.zeros((8, 10), dtype=np.uint8)
    values[2:4, 3:6] = 255
    cases = {"binary.png": (values, True), "grey.png": (values // 2, False), "labels.png": (values // 255, False),
             "binary.jpg": (values, False)}
    for name, (pixels, reusable) in cases.items():
        Image.fromarray(pixels).save(tmp_path / name)
        mask, binary = MaskFile(tmp_path / name, threshold=0).read()
        assert binary == reusable, name
        assert mask[2:4, 3:6].all() and mask.sum() >= 6, name
    assert MaskFile(tmp_path / "binary.png", threshold=127).read()[1]
