"""Bad native data: a clear error naming the file, or a counted skip; never a half-written output."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import load_stage
from PIL import Image

from eiad.errors import BadSampleError, ConfigError, DataError, LayoutError
from eiad.sources.demo import SOURCE as DEMO


@pytest.fixture
def raw(tmp_path, demo_raw):
    copy = tmp_path / "raw"
    shutil.copytree(demo_raw, copy)
    return copy


def _entries(raw: Path) -> list[dict]:
    return json.loads((raw / "inspection.json").read_text())["captures"]


def _first(raw: Path, verdict: str) -> dict:
    return next(e for e in _entries(raw) if e["verdict"] == verdict)


def _organise(raw: Path, out: Path, policy: str = "error"):
    out.mkdir()
    return DEMO.organise({"on_bad_sample": policy}, raw, out)


def _replace(path: Path, data: bytes) -> None:
    """A new file in place of ``path``, as DVC and editors change files: organised images are hard
    links of the native ones, so writing into the native file would change the organised one too."""
    path.unlink()
    path.write_bytes(data)


def _truncate(raw):
    entry = _first(raw, "OK")
    path = raw / entry["file"]
    _replace(path, path.read_bytes()[:100])
    return path, "truncated or corrupt"


def _mask_size(raw):
    entry = _first(raw, "NG")
    Image.fromarray(np.ones((10, 12), dtype=np.uint8)).save(raw / entry["label"])
    return raw / entry["file"], "mask is 12x10 but the image is 40x40"


def _empty_mask(raw):
    entry = _first(raw, "NG")
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(raw / entry["label"])
    return raw / entry["file"], "empty mask"


def _unreadable(raw):
    entry = _first(raw, "NG")
    (raw / entry["label"]).unlink()
    (raw / entry["label"]).mkdir()  # a folder where a file should be: unreadable even as root
    return raw / entry["label"], "cannot be read"


def _not_an_image(raw):
    entry = _first(raw, "OK")
    _replace(raw / entry["file"], b"lorem ipsum")
    return raw / entry["file"], "not an image"


BAD_SAMPLES = [_truncate, _mask_size, _empty_mask, _unreadable, _not_an_image]


@pytest.mark.parametrize("damage", BAD_SAMPLES, ids=lambda f: f.__name__.strip("_"))
def test_bad_sample_is_an_error_naming_the_file(raw, tmp_path, damage):
    path, problem = damage(raw)
    with pytest.raises(BadSampleError) as caught:
        _organise(raw, tmp_path / "out")
    assert str(path) in str(caught.value) and problem in str(caught.value)


@pytest.mark.parametrize("damage", BAD_SAMPLES, ids=lambda f: f.__name__.strip("_"))
def test_bad_sample_is_a_counted_skip_when_asked(raw, tmp_path, damage, caplog):
    path, problem = damage(raw)
    report = _organise(raw, tmp_path / "out", policy="skip")
    assert report.to_json()["skipped"] == 1
    assert report.to_json()["samples"] == len(_entries(raw)) - 1
    skipped = [json.loads(line) for line in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert skipped == [{"path": str(path), "problem": skipped[0]["problem"]}] and problem in skipped[0]["problem"]
    assert "skipping bad sample" in caplog.text
    manifest = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == len(_entries(raw)) - 1


def test_unexpected_folder_in_native_layout(raw, tmp_path):
    (raw / "extras").mkdir()
    with pytest.raises(LayoutError, match="unexpected entries \\['extras'\\]"):
        _organise(raw, tmp_path / "out")
    shutil.rmtree(raw / "extras")
    (raw / "captures" / "gearbox").mkdir()
    with pytest.raises(LayoutError) as caught:
        _organise(raw, tmp_path / "out2")
    assert str(raw / "captures" / "gearbox") in str(caught.value)


def test_missing_or_broken_inspection_log(raw, tmp_path):
    (raw / "inspection.json").write_text("{not json")
    with pytest.raises(DataError, match="inspection.json: is not valid JSON"):
        _organise(raw, tmp_path / "a")
    (raw / "inspection.json").unlink()
    with pytest.raises(LayoutError, match="inspection.json: missing"):
        _organise(raw, tmp_path / "b")


def test_failed_stage_keeps_the_previous_output_whole(raw, tmp_path, monkeypatch, small_fetch_params):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump({"sources": {"demo": {
        "fetch": small_fetch_params, "organise": {"on_bad_sample": "error"}}}}))
    organise = load_stage("organise")
    args = ["demo", "--raw", str(raw), "--out", "organised", "--report", "report.json"]
    result = CliRunner().invoke(organise, args)
    assert result.exit_code == 0, result.output
    before = {p: p.read_bytes() for p in Path("organised").rglob("*") if p.is_file()}
    report_before = Path("report.json").read_bytes()

    path, _ = _truncate(raw)
    result = CliRunner().invoke(organise, args)
    assert result.exit_code == 1
    assert f"Error: {path}: is truncated or corrupt" in result.output
    after = {p: p.read_bytes() for p in Path("organised").rglob("*") if p.is_file()}
    assert after == before and Path("report.json").read_bytes() == report_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["organised", "params.yaml", "raw", "report.json"]


def test_every_stage_explains_itself():
    for name in ("fetch", "organise", "fetch_benchmark", "build_ddqa"):
        result = CliRunner().invoke(load_stage(name), ["--help"])
        assert result.exit_code == 0 and "--params" in result.output and "Usage:" in result.output


def test_the_outputs_do_not_depend_on_the_number_of_workers(raw, tmp_path, monkeypatch):
    _truncate(raw)
    _empty_mask(raw)
    trees = []
    for workers in ("1", "3"):
        monkeypatch.setenv("EIAD_WORKERS", workers)
        out = tmp_path / f"out-{workers}"
        _organise(raw, out, policy="skip")
        trees.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] and len((tmp_path / "out-3" / "skipped.jsonl").read_text().splitlines()) == 2
    monkeypatch.setenv("EIAD_WORKERS", "0")
    with pytest.raises(ConfigError, match="EIAD_WORKERS must be a whole number >= 1, got '0'"):
        _organise(raw, tmp_path / "out-0")
