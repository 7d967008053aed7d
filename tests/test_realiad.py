"""The Real-IAD organiser on a generated copy of its native layout and file naming."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eiad.errors import BadSampleError, DataError, LayoutError
from eiad.layout import read_manifest
from eiad.sources import get_source

REALIAD = get_source("realiad")


def make_realiad(root: Path, category: str = "audiojack") -> Path:
    """Real-IAD's layout: one OK sample and two NG samples, 5 camera views each (32x24 JPEGs).

    Sample 0057 (HS, scratch) shows its defect in views C1-C3 only; C4 and C5 are labelled OK,
    as about 27k of Real-IAD's NG-folder images are. Sample 0058 is ZW (contamination).
    """
    rng = np.random.default_rng(0)
    entries = []

    def shot(folder: str, name: str, defect: bool) -> dict:
        path = root / category / folder / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        mask_path = None
        if defect:
            mask = np.zeros((24, 32), dtype=np.uint8)
            mask[4:9, 10:20] = 255
            Image.fromarray(mask).save(path.with_suffix(".png"))
            mask_path = f"{folder}/{name}.png"
        return {"image_path": f"{folder}/{name}.jpg", "mask_path": mask_path}

    for view in range(1, 6):
        entries.append({"category": category, "anomaly_class": "OK",
                        **shot("OK/S0001", f"{category}_0001_OK_C{view}_20230612101010", False)})
        visible = view <= 3
        entries.append({"category": category, "anomaly_class": "HS" if visible else "OK",
                        **shot("NG/HS/S0057", f"{category}_0057_NG_HS_C{view}_20230612111111", visible)})
        entries.append({"category": category, "anomaly_class": "ZW",
                        **shot("NG/ZW/S0058", f"{category}_0058_NG_ZW_C{view}_20230612121212", True)})
    jsons = root / "realiad_jsons"
    jsons.mkdir(parents=True, exist_ok=True)
    meta = {"prefix": f"{category}/", "normal_class": "OK"}
    (jsons / f"{category}.json").write_text(json.dumps({"meta": meta, "train": entries[:9], "test": entries[9:]}))
    return root


def _organise(raw, out, **params):
    out.mkdir()
    return REALIAD.organise(params, raw, out)


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
    with pytest.raises(LayoutError, match=r"no JSON file for categories \['bottle'\]"):
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
