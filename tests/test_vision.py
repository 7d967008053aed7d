"""The VISION organiser on a generated copy of its native layout (Roboflow COCO exports)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import params
from native import HEIGHT, WIDTH, make_vision
from PIL import Image
from pycocotools.coco import COCO

from eiad.data.layout import read_manifest
from eiad.errors import BadSampleError, ConfigError, DataError, LayoutError
from eiad.sources import get_source
from eiad.sources.vision import defect_names, photo_group

VISION = get_source("vision")
# pycocotools' Cython decoder predates numpy 2's __array__(copy=) protocol; harmless, and outside
# pytest Python hides DeprecationWarnings raised in library code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def _organise(raw, out, **options):
    out.mkdir()
    return VISION.organise({**params("sources.vision.organise"), **options}, raw, out)


def _edit_coco(raw: Path, subset: str, split: str, edit) -> None:
    path = raw / subset / split / "_annotations.coco.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))


@pytest.fixture
def raw(tmp_path):
    return make_vision(tmp_path / "raw")


def test_counts_classes_defects_and_groups(raw, tmp_path):
    report = _organise(raw, tmp_path / "out").to_json()
    assert report["per_defect"] == {"inclusion": 2, "shrinkage": 2, "piston_miss": 1, "rcs": 1}
    assert report["normal"] == 0 and report["skipped"] == 0
    samples = read_manifest(tmp_path / "out")
    assert {s.cls for s in samples} == {"Casting", "Cylinder"} and {s.dataset for s in samples} == {"VISION"}
    assert Counter(s.group for s in samples) == {"Casting-train_000001": 1, "Casting-000002": 2,
                                                 "Casting-val_000001": 1, "Cylinder-train_cyl_a": 1,
                                                 "Cylinder-val_cyl_b": 1}
    # the official split is the folders': train trains, val tests
    assert {Path(s.image).name.split("_")[0]: s.split for s in samples} == {"train": "train", "val": "test"}
    names = sorted(s.image.split("/out/", 1)[1] for s in samples)
    assert "Casting/NG/inclusion/image/train_000002_jpg.rf.3f9c1a__inclusion.jpg" in names
    assert "Casting/NG/shrinkage/image/train_000002_jpg.rf.3f9c1a__shrinkage.jpg" in names
    assert "Casting/NG/shrinkage/image/val_000001.jpg" in names
    assert "Casting/NG/inclusion/image/train_000001.jpg" in names
    assert not any("000009" in name or "cyl_d" in name for name in names)  # inference/ is never read
    for sample in samples:
        split, stem = Path(sample.image).stem.split("__")[0].split("_", 1)
        assert Path(sample.image).read_bytes() == (raw / sample.cls / split / f"{stem}.jpg").read_bytes()


def test_roboflow_copies_of_one_photograph_share_a_group_across_splits():
    assert photo_group("PCB_1", "train", "01_jpg.rf.3f9c1a.jpg") == photo_group("PCB_1", "val", "01_jpg.rf.77e0b2.jpg")
    assert photo_group("PCB_1", "train", "01_jpg.rf.3f9c1a.jpg") != photo_group("PCB_1", "train", "02_jpg.rf.3f9c1a.jpg")
    # plain names say nothing about the photograph: train/000001.jpg and val/000001.jpg stay apart
    assert photo_group("Casting", "train", "000001.jpg") != photo_group("Casting", "val", "000001.jpg")


def _reference_masks(raw: Path, subset: str, split: str) -> dict[tuple[str, str], np.ndarray]:
    """(image stem, defect) -> the union of pycocotools' COCO.annToMask over that class's annotations."""
    coco = COCO(str(raw / subset / split / "_annotations.coco.json"))
    names = defect_names()[subset]
    masks: dict[tuple[str, str], np.ndarray] = {}
    for annotation in coco.dataset["annotations"]:
        stem = Path(coco.imgs[annotation["image_id"]]["file_name"]).stem
        key = (stem, names[coco.cats[annotation["category_id"]]["name"]])
        masks[key] = masks.get(key, np.zeros((HEIGHT, WIDTH), bool)) | coco.annToMask(annotation).astype(bool)
    return masks


def test_masks_equal_pycocotools(raw, tmp_path):
    _organise(raw, tmp_path / "out")
    reference = {}
    for subset, split in [("Casting", "train"), ("Casting", "val"), ("Cylinder", "train"), ("Cylinder", "val")]:
        reference |= {(subset, f"{split}_{stem}", defect): mask
                      for (stem, defect), mask in _reference_masks(raw, subset, split).items()}
    samples = read_manifest(tmp_path / "out")
    assert len(samples) == len(reference) == 6
    for sample in samples:
        mask = np.asarray(Image.open(sample.mask)) > 127
        expected = reference[(sample.cls, Path(sample.image).stem.split("__")[0], sample.defect)]
        assert expected.any() and np.array_equal(mask, expected), sample.image


def test_unannotated_images_are_ok_only_when_asked(raw, tmp_path):
    report = _organise(raw, tmp_path / "out", unannotated="ok").to_json()
    assert report["normal"] == 3 and report["defective"] == 6  # cyl_d in inference/ stays out
    normal = sorted(s.image.split("/out/", 1)[1] for s in read_manifest(tmp_path / "out") if s.defect == "OK")
    assert normal == ["Casting/OK/image/train_000003.jpg", "Casting/OK/image/val_000004.jpg",
                      "Cylinder/OK/image/val_cyl_c.jpg"]
    assert all(s.mask is None for s in read_manifest(tmp_path / "out") if s.defect == "OK")


def test_subsets_and_splits(raw, tmp_path):
    report = _organise(raw, tmp_path / "a", subsets=["Cylinder"], splits=["train"]).to_json()
    assert report["per_defect"] == {"piston_miss": 1}
    with pytest.raises(ConfigError, match=r"unknown sub-datasets \['Bottle'\]"):
        _organise(raw, tmp_path / "b", subsets=["Bottle"])
    with pytest.raises(LayoutError, match=r"sub-datasets \['Wood'\] are not here"):
        _organise(raw, tmp_path / "c", subsets=["Wood"])
    with pytest.raises(ConfigError, match="'inference' is not one of"):
        _organise(raw, tmp_path / "d", splits=["inference"])
    with pytest.raises(ConfigError, match="at least one of train, val"):
        _organise(raw, tmp_path / "e", splits=[])


def test_placeholder_is_found_from_categories_not_by_id(tmp_path):
    raw = make_vision(tmp_path / "raw", placeholder_id=5)
    report = _organise(raw, tmp_path / "out").to_json()
    assert report["per_defect"] == {"inclusion": 2, "shrinkage": 2, "piston_miss": 1, "rcs": 1}
    _edit_coco(raw, "Casting", "val", lambda coco: coco["annotations"][0].update(category_id=5))
    with pytest.raises(DataError, match="annotation 0 uses Roboflow's placeholder category 5"):
        _organise(raw, tmp_path / "bad")


def test_structural_errors(raw, tmp_path):
    _edit_coco(raw, "Casting", "train", lambda coco: coco["annotations"][1].update(category_id=42))
    with pytest.raises(DataError, match="annotation 1 has category id 42, which its categories do not define"):
        _organise(raw, tmp_path / "a")
    _edit_coco(raw, "Casting", "train", lambda coco: (coco["annotations"][1].update(category_id=1),
                                                       coco["categories"][1].update(name="Porosidade")))
    with pytest.raises(DataError, match=r"_annotations.coco.json: Casting class 'Porosidade' has no readable"):
        _organise(raw, tmp_path / "b")
    (raw / "Cylinder/val/_annotations.coco.json").unlink()
    with pytest.raises(LayoutError, match=r"Cylinder/val: has no _annotations.coco.json"):
        _organise(raw, tmp_path / "c", subsets=["Cylinder"])
    (raw / "Extra").mkdir()
    with pytest.raises(LayoutError, match=r"unexpected folders \['Extra'\]"):
        _organise(raw, tmp_path / "d")


def test_bad_samples_stop_or_are_skipped(raw, tmp_path):
    (raw / "Casting/val/000001.jpg").unlink()
    with pytest.raises(BadSampleError, match="000001.jpg: cannot be read"):
        _organise(raw, tmp_path / "a")
    outside = [[100, 100, 120, 100, 110, 120]]
    _edit_coco(raw, "Cylinder", "train", lambda coco: coco["annotations"][0].update(segmentation=outside))
    with pytest.raises(BadSampleError, match=r"cyl_a.jpg: annotation 0 of _annotations.coco.json: polygon 0 lies "
                                             r"entirely outside the 40x30 image"):
        _organise(raw, tmp_path / "b", subsets=["Cylinder"])
    _edit_coco(raw, "Cylinder", "val", lambda coco: coco["images"][0].update(width=80))
    with pytest.raises(BadSampleError, match=r"cyl_b.jpg: _annotations.coco.json gives it as 80x30"):
        _organise(raw, tmp_path / "c", subsets=["Cylinder"], splits=["val"])
    report = _organise(raw, tmp_path / "d", on_bad_sample="skip").to_json()
    assert report["skipped"] == 3 and report["per_defect"] == {"inclusion": 2, "shrinkage": 1}
    skipped = [json.loads(line) for line in (tmp_path / "d/skipped.jsonl").read_text().splitlines()]
    assert sorted(Path(row["path"]).name for row in skipped) == ["000001.jpg", "cyl_a.jpg", "cyl_b.jpg"]
