"""The BSData fetcher and organiser on the real sample in ../shared/fixtures/bsdata-sample, inside
the real repository's tree as GitHub archives it."""

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, config, params
from fake_hub import HubState, serve
from native import BSDATA_FOLDERS, BSDATA_HEAD, BSDATA_INITIAL, github_archive, make_bsdata_repository
from PIL import Image, ImageDraw

from eiad.data.layout import read_manifest
from eiad.ddqa.build import DDQAConfig, build_ddqa
from eiad.errors import BadSampleError, ConfigError, DataError, LayoutError
from eiad.sources import get_source

SAMPLE = SHARED / "fixtures" / "bsdata-sample"
BSDATA = get_source("bsdata")
ORGANISE = params("sources.bsdata.organise")
FETCH = params("sources.bsdata.fetch")
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


@pytest.fixture
def github(tmp_path, monkeypatch):
    """GitHub's archive of 2Obe/BSData at three commits of its history, over loopback."""
    monkeypatch.setenv("EIAD_DOWNLOADS", str(tmp_path / "downloads"))
    state = HubState()
    for commit in (BSDATA_INITIAL, BSDATA_FOLDERS, BSDATA_HEAD):
        tree = make_bsdata_repository(tmp_path / "trees" / commit, commit)
        state.files[f"/2Obe/BSData/archive/{commit}.zip"] = github_archive(tree, "BSData", commit)
    with serve(state) as url:
        yield f"{url}/2Obe/BSData/archive/{{commit}}.zip", state


def _fetch(github, tmp_path, commit, **changes):
    raw = tmp_path / f"raw-{commit[:7]}"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir()
    BSDATA.fetch({**FETCH, "url": github[0], "commit": commit, **changes}, raw)
    return raw


@pytest.mark.parametrize("commit", [BSDATA_FOLDERS, BSDATA_HEAD], ids=["pinned", "head"])
def test_the_real_tree_fetches_and_organises(github, tmp_path, commit):
    raw = _fetch(github, tmp_path, commit)
    assert sorted(p.name for p in raw.iterdir()) == ["LICENSE", "README.md", "data", "fetch.json",
                                                      "image_data.json", "label"]  # no model, demo, script
    assert (raw / "data" / "KGT1-V-168-A09_crop_0.jpg").read_bytes() == (
        SAMPLE / "data" / "KGT1-V-168-A09_crop_0.jpg").read_bytes()
    (record,) = json.loads((raw / "fetch.json").read_text())["files"]
    assert record["revision"] == commit and len(record["sha256"]) == 64
    assert not any((tmp_path / "downloads").iterdir())  # keep_archives: false
    out = tmp_path / f"organised-{commit[:7]}"
    out.mkdir()
    assert BSDATA.organise(ORGANISE, raw, out).to_json()["per_defect"] == {"OK": 6, "pitting": 10}


def test_a_kept_archive_is_not_downloaded_again(github, tmp_path):
    raw = _fetch(github, tmp_path, BSDATA_FOLDERS, keep_archives=True)
    assert (tmp_path / "downloads" / f"BSData-{BSDATA_FOLDERS}.zip").is_file()
    digest = json.loads((raw / "fetch.json").read_text())["files"][0]["sha256"]
    github[1].requests.clear()
    _fetch(github, tmp_path, BSDATA_FOLDERS, keep_archives=True, sha256=digest)  # pinned as the README says
    assert github[1].requests == []


def test_the_zipped_first_layout_names_the_commit_to_pin(github, tmp_path):
    with pytest.raises(DataError, match=f"holds the dataset as data.zip and label.zip .* {BSDATA_FOLDERS}"):
        _fetch(github, tmp_path, BSDATA_INITIAL)
    with pytest.raises(ConfigError, match="40-hex commit"):
        BSDATA.fetch({**FETCH, "commit": "main"}, tmp_path)


def _sequences() -> dict[str, set[str]]:
    """Wear sequence -> the stems of its frames, from the sample's image_data.json."""
    frames = defaultdict(set)
    for entry in json.loads((SAMPLE / "image_data.json").read_text())["images"]:
        for sequence in entry["wear_dev"]:
            frames[sequence].add(Path(entry["filename"]).stem)
    return frames


def _stem(record: dict) -> str:
    return Path(record["images"][0]).stem


def test_no_wear_sequence_straddles_the_split(tmp_path):
    out = tmp_path / "organised"
    out.mkdir()
    BSDATA.organise(ORGANISE, SAMPLE, out)
    samples = read_manifest(out)
    groups = {Path(s.image).stem: s.group for s in samples}
    # spot 277500_315: two sequences sharing frames, three frames (crops 1 and 2): one group
    spot = {stem for stem in groups if "_277500_315_" in stem}
    assert len(spot) == 3 and len({groups[stem] for stem in spot}) == 1
    assert len(_sequences()) == 14 and len(set(groups.values())) == 11
    held_out = set()
    for seed in range(6):
        build_ddqa(samples, tmp_path / "ddqa", tmp_path / "counts.json",
                   config(DDQAConfig, "ddqa", seed=seed, test_ratio=0.5))
        test = {_stem(json.loads(line)) for line in (tmp_path / "ddqa" / "test.jsonl").read_text().splitlines()}
        train = {_stem(json.loads(line)) for line in (tmp_path / "ddqa" / "train.jsonl").read_text().splitlines()}
        for sequence, frames in _sequences().items():
            assert frames <= test or frames <= train, sequence
            held_out |= {sequence for sequence, frames in _sequences().items() if frames <= test}
    assert len(held_out) > 1  # the check bites: sequences do land in the test split


def test_official_split_is_the_authors_train_test_split(tmp_path):
    out = tmp_path / "organised"
    out.mkdir()
    BSDATA.organise(ORGANISE, SAMPLE, out)
    build_ddqa(read_manifest(out), tmp_path / "ddqa", tmp_path / "counts.json",
               config(DDQAConfig, "ddqa", split="official"))
    entries = json.loads((SAMPLE / "image_data.json").read_text())["images"]
    authors_test = {Path(e["filename"]).stem for e in entries if e["train_test_split"] == "test"}
    test = {_stem(json.loads(line)) for line in (tmp_path / "ddqa" / "test.jsonl").read_text().splitlines()}
    train = {_stem(json.loads(line)) for line in (tmp_path / "ddqa" / "train.jsonl").read_text().splitlines()}
    assert test == authors_test and len(train) == 16 - len(authors_test)  # unassigned frames train
