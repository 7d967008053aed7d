"""The BSData organiser on the real sample in ../shared/fixtures/bsdata-sample."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, params
from PIL import Image, ImageDraw

from eiad.data.layout import read_manifest
from eiad.errors import BadSampleError, DataError, LayoutError
from eiad.sources import get_source

SAMPLE = SHARED / "fixtures" / "bsdata-sample"
BSDATA = get_source("bsdata")
ORGANISE = params("sources.bsdata.organise")
pytestmark = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"{SAMPLE} is not here")


def _native(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("data", "label", "image_data.json"):
        source = SAMPLE / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, raw / name)
    return raw


def _labelme_reference(label_file):
    """labelme's shape_to_mask, per polygon, OR-ed: written here from its documented behaviour."""
    label = json.loads(label_file.read_text())
    mask = np.zeros((label["imageHeight"], label["imageWidth"]), dtype=bool)
    for shape in label["shapes"]:
        canvas = Image.fromarray(np.zeros(mask.shape, dtype=np.uint8))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in shape["points"]], outline=1, fill=1)
        mask |= np.array(canvas, dtype=bool)
    return mask


def test_real_sample_masks_equal_labelme(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    report = BSDATA.organise(ORGANISE, SAMPLE, out).to_json()
    assert report["defective"] == 10 and report["normal"] == 6 and report["per_defect"]["pitting"] == 10
    samples = read_manifest(out)
    defective = [s for s in samples if s.defect == "pitting"]
    assert len(defective) == 10 and {s.cls for s in samples} == {"BSD"}
    for sample in defective:
        assert "/BSD/NG/pitting/image/" in sample.image
        mask = np.asarray(Image.open(sample.mask)) > 127
        stem = sample.image.rsplit("/", 1)[1].rsplit(".", 1)[0]
        assert np.array_equal(mask, _labelme_reference(SAMPLE / "label" / f"{stem}.json")), stem
        assert (SAMPLE / "data" / f"{stem}.jpg").read_bytes() == Path(sample.image).read_bytes()


def test_unannotated_frames_can_be_left_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    report = BSDATA.organise({**ORGANISE, "unannotated": "skip"}, SAMPLE, out).to_json()
    assert report == {**report, "normal": 0, "defective": 10}


def test_bad_native_data(tmp_path):
    raw = _native(tmp_path)
    (raw / "label" / "KGT1-S-065-A02_crop_0.json").unlink()
    with pytest.raises(DataError, match="KGT1-S-065-A02_crop_0.json: annotation file .* is missing"):
        BSDATA.organise(ORGANISE, raw, tmp_path / "a")
    shutil.copy(SAMPLE / "label" / "KGT1-S-065-A02_crop_0.json", raw / "label")
    label_file = raw / "label" / "KGT1-V-168-A09_crop_0.json"
    label = json.loads(label_file.read_text())
    label["shapes"][0]["points"] = [[5000, 5000], [5100, 5000], [5100, 5100]]
    label_file.write_text(json.dumps(label))
    (tmp_path / "b").mkdir()
    with pytest.raises(BadSampleError, match=r"polygon 0 lies entirely outside the \d+x\d+ image"):
        BSDATA.organise(ORGANISE, raw, tmp_path / "b")
    (tmp_path / "c").mkdir()
    report = BSDATA.organise({**ORGANISE, "on_bad_sample": "skip"}, raw, tmp_path / "c").to_json()
    assert report["skipped"] == 1 and report["defective"] == 9
    (raw / "extra").mkdir()
    with pytest.raises(LayoutError, match="unexpected folders \\['extra'\\]"):
        BSDATA.organise(ORGANISE, raw, tmp_path / "d")
