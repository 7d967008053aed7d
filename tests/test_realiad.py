"""The Real-IAD organiser on a generated copy of its native layout and file naming."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import params, shares_blocks
from native import make_realiad
from PIL import Image

from eiad.data.layout import read_manifest
from eiad.errors import BadSampleError, DataError, LayoutError
from eiad.sources import get_source

REALIAD = get_source("realiad")


def _organise(raw, out, **options):
    out.mkdir()
    return REALIAD.organise({**params("sources.realiad.organise"), **options}, raw, out)


def test_json_decides_normal_and_views_share_a_group(tmp_path):
    raw = make_realiad(tmp_path / "raw")
    report = _organise(raw, tmp_path / "out").to_json()
    assert report["per_defect"] == {"OK": 7, "scratch": 3, "contamination": 5}
    samples = read_manifest(tmp_path / "out")
    groups = Counter(s.group for s in samples)
    assert groups == {"audiojack-audiojack_0001": 5, "audiojack-audiojack_0057": 5, "audiojack-audiojack_0058": 5}
    hidden = [s for s in samples if "_0057_NG_HS_C4" in s.image]
    assert hidden[0].defect == "OK" and "/audiojack/OK/image/" in hidden[0].image
    scratch = next(s for s in samples if s.defect == "scratch")
    assert "/audiojack/NG/scratch/image/" in scratch.image
    assert (np.asarray(Image.open(scratch.mask)) > 127).sum() == 50


def test_bad_native_data(tmp_path):
    raw = make_realiad(tmp_path / "raw")
    data = json.loads((raw / "realiad_jsons/audiojack.json").read_text())
    data["test"][-1]["anomaly_class"] = "XX"
    (raw / "realiad_jsons/audiojack.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="unknown Real-IAD defect code 'XX'"):
        _organise(raw, tmp_path / "a")
    with pytest.raises(LayoutError, match=r"categories \['bottle'\] need both"):
        _organise(raw, tmp_path / "b", categories=["bottle"])
    raw2 = make_realiad(tmp_path / "raw2")
    missing = next((raw2 / "audiojack/NG/ZW/S0058").glob("*C2*.jpg"))
    missing.unlink()
    with pytest.raises(BadSampleError, match="cannot be read"):
        _organise(raw2, tmp_path / "c")
    report = _organise(raw2, tmp_path / "d", on_bad_sample="skip").to_json()
    assert report["skipped"] == 1 and report["samples"] == 14
    with pytest.raises(LayoutError, match="realiad_jsons/ is missing"):
        _organise(tmp_path, tmp_path / "e")


def test_images_and_binary_masks_are_placed_not_rewritten(tmp_path):
    raw = make_realiad(tmp_path / "raw")
    grey = next((raw / "audiojack/NG/ZW/S0058").glob("*C1*.png"))
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[4:9, 10:20] = 128  # a grey mask: thresholded and re-encoded, not taken as it is
    Image.fromarray(mask).save(grey)
    _organise(raw, tmp_path / "out")
    for sample in read_manifest(tmp_path / "out"):
        native = next(raw.rglob(Path(sample.image).name))
        assert Path(sample.image).read_bytes() == native.read_bytes() and shares_blocks(sample.image, native)
        if sample.mask:
            source = native.with_suffix(".png")
            assert shares_blocks(sample.mask, source) == (source != grey), sample.mask
            assert np.array_equal(np.asarray(Image.open(sample.mask)) > 127, np.asarray(Image.open(source)) > 127)


def test_official_split_is_the_json_files_train_and_test(tmp_path):
    raw = make_realiad(tmp_path / "raw")
    _organise(raw, tmp_path / "out")
    data = json.loads((raw / "realiad_jsons/audiojack.json").read_text())
    splits = {Path(s.image).stem: s.split for s in read_manifest(tmp_path / "out")}
    assert splits == {Path(e["image_path"]).stem: split for split in ("train", "test") for e in data[split]}
