"""The four real sources and MMAD through DVC, fetched from a loopback server holding their
native archives: one params change runs fetch -> organise -> build_ddqa over all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dvc_project import commit_all, make_project, run, set_param, stages_run
from fake_hub import HubState, serve
from native import (
    BSDATA_HEAD,
    BSDATA_SAMPLE,
    github_archive,
    make_bsdata_repository,
    make_mmad_files,
    make_prreal,
    make_realiad,
    make_vision,
    tar_gz_folder,
    zip_folder,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BSDATA_SAMPLE.is_dir(), reason=f"{BSDATA_SAMPLE} (the real BSData sample) is not here")]
HUB_COMMIT = "1" * 40
MMAD_COMMIT = "2" * 40
BSDATA_COMMIT = BSDATA_HEAD
TOKEN = "hf_NotARealTokenButSecretAnyway"
SOURCES = ["bsdata", "realiad", "vision", "prreal"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, demo_benchmark):
    """The sources' archives, laid out as GitHub, the Hub and Google Drive serve them."""
    work = tmp_path_factory.mktemp("native")
    state = HubState(commits={"main": HUB_COMMIT, "refs/pr/1": MMAD_COMMIT})
    bsdata = make_bsdata_repository(work / "bsdata", BSDATA_COMMIT)
    state.files[f"/2Obe/BSData/archive/{BSDATA_COMMIT}.zip"] = github_archive(bsdata, "BSData", BSDATA_COMMIT)
    realiad = make_realiad(work / "realiad")
    state.add_repo("dataset", "Real-IAD/Real-IAD", {
        "realiad_jsons.zip": zip_folder(realiad / "realiad_jsons", prefix="realiad_jsons/"),
        "realiad_256/audiojack.zip": zip_folder(realiad / "audiojack", prefix="audiojack/"),
    })
    vision = make_vision(work / "vision")
    state.add_repo("dataset", "VISION-Workshop/VISION-Datasets",
                   {f"{name}.tar.gz": tar_gz_folder(vision / name, name) for name in ("Casting", "Cylinder")})
    state.files["/drive/prreal"] = zip_folder(make_prreal(work / "prreal"), prefix="PR-REAL/")
    state.add_repo("dataset", "jiang-cc/MMAD", make_mmad_files(demo_benchmark, work / "mmad"))
    with serve(state) as url:
        yield state, url


@pytest.fixture(scope="module")
def project(tmp_path_factory, hub) -> Path:
    """The repository with each source's download location pointed at the loopback server."""
    _, url = hub
    root = make_project(tmp_path_factory.mktemp("real") / "repo")
    set_param(root, "sources.bsdata.fetch.url", f"{url}/2Obe/BSData/archive/{{commit}}.zip")
    set_param(root, "sources.bsdata.fetch.commit", BSDATA_COMMIT)
    set_param(root, "sources.realiad.fetch.endpoint", url)
    set_param(root, "sources.realiad.fetch.categories", ["audiojack"])
    set_param(root, "sources.vision.fetch.endpoint", url)
    set_param(root, "sources.vision.fetch.subsets", ["Casting", "Cylinder"])
    set_param(root, "sources.prreal.fetch.url", f"{url}/drive/prreal")
    set_param(root, "benchmark.mmad.endpoint", url)
    commit_all(root, "initial")
    return root


def test_one_params_change_builds_ddqa_from_every_real_source(project, hub, tmp_path):
    state, _ = hub
    env = {"EIAD_DOWNLOADS": str(tmp_path / "downloads"), "HF_TOKEN": TOKEN}
    settings = ["-S", f"datasets=[{','.join(SOURCES)}]", "-S", "benchmark.source=mmad"]
    output = run("dvc", "exp", "run", *settings, "build_ddqa", "fetch_benchmark", cwd=project, env=env)
    assert set(stages_run(output)) == {*(f"{stage}@{key}" for stage in ("fetch", "organise") for key in SOURCES),
                                       "build_ddqa", "fetch_benchmark"}
    counts = json.loads((project / "metrics/ddqa_counts.json").read_text())
    assert set(counts["by_label"]["train"]["AD"]) == {"BSData", "Real-IAD", "VISION", "PR-REAL"}
    organised = {key: json.loads((project / f"metrics/organise/{key}.json").read_text()) for key in SOURCES}
    assert organised["bsdata"]["per_defect"] == {"OK": 6, "pitting": 10}
    assert organised["realiad"]["per_defect"] == {"OK": 7, "contamination": 5, "scratch": 3}
    assert organised["prreal"]["per_defect"] == {"OK": 3, "burr": 2, "dent": 2}
    # every download is recorded with the commit it resolved to and its checksum
    realiad = json.loads((project / "data/raw/realiad/fetch.json").read_text())["files"]
    assert {f["revision"] for f in realiad} == {HUB_COMMIT} and all(len(f["sha256"]) == 64 for f in realiad)
    benchmark = json.loads((project / "data/benchmark/fetch.json").read_text())["files"]
    assert [f["name"] for f in benchmark] == ["ALL_DATA.zip", "domain_knowledge.json", "mmad.json"]
    assert {f["revision"] for f in benchmark} == {MMAD_COMMIT}
    assert not list((project / "data/raw/bsdata").glob("saved_model"))  # only the dataset is kept
    # keep_archives: false (the default): the verified archives are gone once unpacked
    assert not [path for path in (tmp_path / "downloads").rglob("*") if path.is_file()]
    # the token went to the Hub and nowhere else: not into outputs, the lock file or the logs
    assert f"Bearer {TOKEN}" in state.authorizations
    written = [p for folder in ("data", "metrics") for p in (project / folder).rglob("*") if p.is_file()]
    for path in [*written, project / "dvc.lock", project / "params.yaml"]:
        assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in output
    # nothing changed: nothing runs and nothing is downloaded again, though the archives are gone
    state.requests.clear()
    again = run("dvc", "exp", "run", *settings, "build_ddqa", "fetch_benchmark", cwd=project, env=env)
    assert stages_run(again) == []
    assert not [request for request in state.requests if request[0] == "GET"]
