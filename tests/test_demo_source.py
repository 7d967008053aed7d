import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_FETCH, label_components
from PIL import Image

from eiad.data.layout import OK
from eiad.errors import ConfigError
from eiad.questions import readable
from eiad.sources import get_source, known_sources
from eiad.sources.demo import SOURCE as DEMO


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_registry_finds_the_demo_package():
    assert get_source("demo") is DEMO
    assert known_sources() == ["bsdata", "demo", "mmad", "prreal", "realiad", "vision"]
    with pytest.raises(ConfigError, match="unknown source 'nope'"):
        get_source("nope")


def test_native_layout_is_not_the_unified_one(demo_raw):
    assert sorted(p.name for p in demo_raw.iterdir()) == ["captures", "inspection.json", "labels"]
    log = json.loads((demo_raw / "inspection.json").read_text())
    products = len(SMALL_FETCH["products"])
    parts = products * (SMALL_FETCH["normal_parts_per_product"]
                        + len(SMALL_FETCH["defects"]) * SMALL_FETCH["defective_parts_per_defect"])
    assert len(log["captures"]) == parts * SMALL_FETCH["views_per_part"]
    assert not any(p.name in ("NG", OK) for p in demo_raw.rglob("*"))


def test_fetch_is_deterministic(tmp_path, demo_raw, small_fetch_params):
    again = tmp_path / "again"
    again.mkdir()
    DEMO.fetch(small_fetch_params, again)
    assert tree_digest(again) == tree_digest(demo_raw)


def test_unified_layout_and_manifest(demo_organised, demo_samples, demo_raw):
    log = json.loads((demo_raw / "inspection.json").read_text())
    assert len(demo_samples) == len(log["captures"])
    for sample in demo_samples:
        image = Path(sample.image)
        rel = image.relative_to(demo_organised).parts
        if sample.defect == OK:
            assert rel[:3] == (sample.cls, "OK", "image") and sample.mask is None
        else:
            assert rel[:4] == (sample.cls, "NG", sample.defect, "image")
            mask = Image.open(sample.mask)
            assert mask.mode == "L" and mask.size == Image.open(image).size
            values = np.unique(np.asarray(mask))
            assert set(values) == {0, 255}
    views = {}
    for sample in demo_samples:
        views.setdefault(sample.group, set()).add((sample.cls, sample.defect))
    assert all(len(labels) == 1 for labels in views.values())  # a part's views agree
    assert {len([s for s in demo_samples if s.group == g]) for g in views} == {SMALL_FETCH["views_per_part"]}


def test_benchmark_follows_mmad_schema_and_masks(demo_benchmark):
    data = json.loads((demo_benchmark / "mmad.json").read_text())
    types = {q["type"] for entry in data.values() for q in entry["conversation"]}
    assert {"Anomaly Detection", "Defect Classification", "Defect Localization", "Object Classification"} <= types
    for key, entry in data.items():
        assert (demo_benchmark / key).is_file() and key.split("/")[0] == "Demo"
        assert entry["conversation"][0]["type"] == "Anomaly Detection"
        for template in entry["similar_templates"] + entry["random_templates"]:
            assert "good" in template and (demo_benchmark / template).is_file()
        normal = "good" in key
        for question in entry["conversation"]:
            assert question["Answer"] in question["Options"]
            answer = question["Options"][question["Answer"]]
            if question["type"] == "Anomaly Detection":
                assert answer == ("No" if normal else "Yes")
            if question["type"] == "Defect Classification":
                assert answer == readable(key.split("/")[3])
            if question["type"] == "Object Classification":
                assert answer == readable(key.split("/")[1])
            if question["type"] == "Defect Localization":
                mask = np.asarray(Image.open(demo_benchmark / entry["mask_path"])) > 127
                largest = max(label_components(mask.tolist()), key=len)
                cx = sum(c + 0.5 for _, c in largest) / len(largest)
                cy = sum(r + 0.5 for r, _ in largest) / len(largest)
                col, row = min(int(3 * cx / mask.shape[1]), 2), min(int(3 * cy / mask.shape[0]), 2)
                words = ["top left", "top", "top right", "left", "center", "right",
                         "bottom left", "bottom", "bottom right"]
                assert answer == words[3 * row + col]
        assert normal == (entry["mask_path"] is None)


def test_bad_params_name_the_key(tmp_path, small_fetch_params):
    with pytest.raises(ConfigError, match="sources.demo.fetch: unknown key"):
        DEMO.fetch({**small_fetch_params, "colour": "red"}, tmp_path)
    with pytest.raises(ConfigError, match="demo defects"):
        DEMO.fetch({**small_fetch_params, "defects": ["dent"]}, tmp_path)
