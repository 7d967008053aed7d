"""Hub and URL fetching against a loopback server that answers like the Hugging Face Hub."""

import hashlib
import io
import json
import zipfile

import pytest
from fake_hub import HubState, serve

from eiad.data.fetching import RECORD, HubRepo, fetch_url, hub_file, unpack, write_record
from eiad.errors import DataError, EiadError

COMMIT = "c" * 40
BIG = bytes(range(256)) * 2048  # 512 KiB


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub with one public and one gated dataset, and an empty downloads folder."""
    monkeypatch.setenv("EIAD_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    state = HubState(commits={"main": COMMIT, "refs/pr/1": "d" * 40, COMMIT: COMMIT})
    state.add_repo("dataset", "lab/open", {"big.bin": BIG, "sub/small.txt": b"hello"})
    state.add_repo("dataset", "lab/gated", {"big.bin": BIG})
    state.gated.add("lab/gated")
    with serve(state) as url:
        yield state, url


def test_hub_file_downloads_verifies_and_records_the_commit(hub):
    _, url = hub
    path, record = hub_file(HubRepo("lab/open", "main", endpoint=url), "sub/small.txt")
    assert path.read_bytes() == b"hello"
    assert record.revision == COMMIT and record.size == 5
    assert record.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert record.origin == "hf://datasets/lab/open/sub/small.txt"


def test_a_cached_pinned_file_needs_no_network(hub):
    state, url = hub
    hub_file(HubRepo("lab/open", COMMIT, endpoint=url), "big.bin")
    state.requests.clear()
    path, record = hub_file(HubRepo("lab/open", COMMIT, endpoint="http://127.0.0.1:9"), "big.bin")
    assert path.read_bytes() == BIG and record.revision == COMMIT
    assert state.requests == []


def test_an_interrupted_hub_download_resumes(hub, tmp_path):
    state, url = hub
    part = tmp_path / "downloads" / "hf" / "dataset" / "lab" / "open" / COMMIT / "big.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(BIG[:100_000])  # what a killed download leaves
    path, _ = hub_file(HubRepo("lab/open", "main", endpoint=url), "big.bin")
    assert path.read_bytes() == BIG
    assert ("GET", "/datasets/lab/open/resolve/main/big.bin", "bytes=100000-") in state.requests


def test_gated_missing_and_offline_say_what_to_do(hub, tmp_path):
    _, url = hub
    with pytest.raises(EiadError, match=r"lab/gated is gated: open .*/datasets/lab/gated .*accept its terms.*HF_TOKEN"):
        hub_file(HubRepo("lab/gated", "main", endpoint=url), "big.bin")
    with pytest.raises(EiadError, match="has no file 'nope.zip'"):
        hub_file(HubRepo("lab/open", "main", endpoint=url), "nope.zip")
    with pytest.raises(EiadError, match="no revision 'v9'"):
        hub_file(HubRepo("lab/open", "v9", endpoint=url), "big.bin")
    with pytest.raises(EiadError, match="no such dataset repository"):
        hub_file(HubRepo("lab/none", "main", endpoint=url), "big.bin")
    with pytest.raises(EiadError, match=r"unreachable \(offline\?\) and big.bin @ main is not in"):
        hub_file(HubRepo("lab/open", "main", endpoint="http://127.0.0.1:9"), "big.bin")


def test_content_must_match_the_pinned_and_the_stated_checksum(hub, tmp_path):
    state, url = hub
    with pytest.raises(DataError, match="pinned sha256 0+ differs from the [0-9a-f]{64} the Hub states"):
        hub_file(HubRepo("lab/open", "main", endpoint=url), "big.bin", sha256="0" * 64)
    state.stated_sha256["big.bin"] = "1" * 64  # corrupted in transit, or a lying mirror
    with pytest.raises(DataError, match="checksum mismatch: expected sha256 1+"):
        hub_file(HubRepo("lab/open", "main", endpoint=url), "big.bin")
    assert not list((tmp_path / "downloads").rglob("big.bin*"))  # nothing half-trusted is kept


def test_fetch_url_records_and_pins(hub, caplog):
    state, url = hub
    state.files["/archive.bin"] = BIG
    _, record = fetch_url(f"{url}/archive.bin", "archive.bin", revision="v1")
    assert record.sha256 == hashlib.sha256(BIG).hexdigest() and record.revision == "v1"
    assert "not checksum-pinned" in caplog.text and record.sha256 in caplog.text
    with pytest.raises(EiadError, match="64 lower-case hex"):
        fetch_url(f"{url}/archive.bin", "archive.bin", sha256="abc")


def test_record_is_sorted_and_stable(tmp_path):
    from eiad.data.fetching import FetchedFile

    files = [FetchedFile("b", "u", "", "1" * 64, 1), FetchedFile("a", "u", "", "2" * 64, 2)]
    write_record(tmp_path, files)
    first = (tmp_path / RECORD).read_bytes()
    write_record(tmp_path, files[::-1])
    assert (tmp_path / RECORD).read_bytes() == first
    assert [f["name"] for f in json.loads(first)["files"]] == ["a", "b"]


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("entries", [
    {"cat/OK/a.jpg": b"1", "cat/NG/b.jpg": b"2"},  # wrapped in one folder
    {"OK/a.jpg": b"1", "NG/b.jpg": b"2"},  # the content itself
])
def test_unpack_gives_the_same_folder_with_or_without_a_wrapper(tmp_path, entries):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip(entries))
    target = unpack(archive, tmp_path / "out", "cat") if (tmp_path / "out").mkdir() is None else None
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.jpg")) == ["NG/b.jpg", "OK/a.jpg"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cat"]
    with pytest.raises(DataError, match="would overwrite"):
        unpack(archive, tmp_path / "out", "cat")
