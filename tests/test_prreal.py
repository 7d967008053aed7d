"""PR-REAL: only the unified layout is accepted, validated strictly; MMAD: references checked."""

import json
import shutil

import numpy as np
import pytest
from conftest import params
from native import make_prreal
from PIL import Image

from eiad.data.images import read_mask
from eiad.data.layout import read_manifest
from eiad.errors import BadSampleError, DataError, LayoutError
from eiad.sources import get_source
from eiad.sources.mmad import report_missing

PRREAL = get_source("prreal")


def _organise(raw, out, **options):
    out.mkdir()
    return PRREAL.organise({**params("sources.prreal.organise"), **options}, raw, out)


def test_unified_layout_is_copied_with_masks_and_groups(tmp_path):
    raw = make_prreal(tmp_path / "raw" / "PR-REAL")  # inside one wrapping folder, as archives often are
    report = _organise(tmp_path / "raw", tmp_path / "out").to_json()
    assert report["per_defect"] == {"OK": 3, "burr": 2, "dent": 2}
    samples = read_manifest(tmp_path / "out")
    assert {s.dataset for s in samples} == {"PR-REAL"} and {s.cls for s in samples} == {"PRR"}
    dent = next(s for s in samples if s.defect == "dent")
    source = read_mask(raw / "PRR" / "NG" / "dent" / "mask" / "dent_0.png")
    assert (read_mask(tmp_path / "out" / dent.mask) == source).all()
    assert len({s.group for s in samples}) == len(samples)


def test_an_archive_of_one_class_keeps_its_class(tmp_path, monkeypatch):
    from native import zip_folder

    from eiad.data.fetching import FetchedFile
    from eiad.sources import prreal

    one_class = make_prreal(tmp_path / "layout")
    archive = tmp_path / "PR-REAL.zip"
    archive.write_bytes(zip_folder(one_class))  # PRR/ at the top: a class, not a wrapper
    monkeypatch.setattr(prreal, "fetch_url", lambda url, name, sha256: (archive, FetchedFile(
        name, url, "", "0" * 64, archive.stat().st_size)))
    raw = tmp_path / "raw"
    raw.mkdir()
    PRREAL.fetch({**params("sources.prreal.fetch"), "url": "http://mirror.invalid/prreal"}, raw)
    _organise(raw, tmp_path / "out")
    assert {s.cls for s in read_manifest(tmp_path / "out")} == {"PRR"}


def test_grey_masks_are_thresholded(tmp_path):
    raw = make_prreal(tmp_path / "raw")
    mask = raw / "PRR" / "NG" / "dent" / "mask" / "dent_0.png"
    grey = np.zeros((24, 32), dtype=np.uint8)
    grey[2:9, 3:12] = 100  # below 127: no defect pixel under the default threshold
    grey[4, 5] = 200
    Image.fromarray(grey).save(mask)
    _organise(raw, tmp_path / "a")
    organised = next(s for s in read_manifest(tmp_path / "a") if s.image.endswith("dent_0.png"))
    assert read_mask(tmp_path / "a" / organised.mask).sum() == 1
    _organise(raw, tmp_path / "b", mask_threshold=50)
    organised = next(s for s in read_manifest(tmp_path / "b") if s.image.endswith("dent_0.png"))
    assert read_mask(tmp_path / "b" / organised.mask).sum() == 7 * 9


@pytest.mark.parametrize("break_it, message", [
    (lambda root: (root / "PRR" / "NG" / "dent" / "mask" / "dent_1.png").unlink(),
     r"do not pair up by stem: \['dent_1'\]"),
    (lambda root: (root / "PRR" / "train").mkdir(), r"holds OK/ and/or NG/, found \['NG', 'OK', 'train'\]"),
    (lambda root: shutil.rmtree(root / "PRR" / "NG" / "burr" / "mask"), "a defect folder holds image/ and mask/"),
    (lambda root: (root / "PRR" / "OK" / "image" / "notes.txt").write_text("x"), "not images"),
    (lambda root: (root / "readme.txt").write_text("x"), "expected only class folders"),
])
def test_anything_but_the_unified_layout_is_refused_with_the_expected_layout(tmp_path, break_it, message):
    raw = make_prreal(tmp_path / "raw")
    break_it(raw)
    with pytest.raises(LayoutError, match=message) as caught:
        _organise(raw, tmp_path / "out")
    assert "PR-REAL must come in the unified layout" in str(caught.value)


def test_bad_samples_stop_or_are_skipped(tmp_path):
    raw = make_prreal(tmp_path / "raw")
    Image.new("L", (10, 10)).save(raw / "PRR" / "NG" / "burr" / "mask" / "burr_0.png")  # wrong size
    with pytest.raises(BadSampleError, match="mask is 10x10 but the image is 32x24"):
        _organise(raw, tmp_path / "a")
    report = _organise(raw, tmp_path / "b", on_bad_sample="skip").to_json()
    assert report["skipped"] == 1 and report["per_defect"]["burr"] == 1


def test_mmad_references_are_all_checked(demo_benchmark, tmp_path):
    root = tmp_path / "mmad"
    shutil.copytree(demo_benchmark, root)
    report_missing(root)  # complete: no error
    entries = json.loads((root / "mmad.json").read_text())
    defective = next(key for key, entry in entries.items() if entry["mask_path"])
    (root / defective).unlink()
    (root / entries[defective]["mask_path"]).unlink()
    template = entries[defective]["random_templates"][0]
    (root / template).unlink()
    with pytest.raises(DataError, match=rf"1 images \(e.g. {defective}\); 1 masks .*; 1 templates \(e.g. {template}\)"):
        report_missing(root)
