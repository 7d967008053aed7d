"""Download, resume, checksum and safe extraction against a loopback HTTP server."""

import hashlib
import http.server
import io
import json
import tarfile
import threading
import urllib.request
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from eiad.data import download as download_module
from eiad.data.download import download, extract, forget, verified_sha256
from eiad.errors import DataError, EiadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` from memory, honouring single ``bytes=N-`` ranges, and counts requests."""

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, str | None]]] = []
    cut: ClassVar[set[str]] = set()

    def do_GET(self):
        body = self.files.get(self.path)
        self.requests.append((self.path, self.headers.get("Range")))
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/payload.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        if start >= len(body) and start:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        # a connection that drops: the first answer stops half way, without an error
        end = start + (len(body) - start) // 2 if self.path in self.cut and len(self.requests) == 1 else len(body)
        self.wfile.write(body[start:end])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.files = {"/payload.bin": PAYLOAD}
    RangeHandler.requests = []
    RangeHandler.cut = set()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_is_a_no_op_when_complete(server, tmp_path):
    dest = download(f"{server}/payload.bin", tmp_path / "payload.bin", SHA)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "payload.bin.part").exists()
    download(f"{server}/payload.bin", dest, SHA)
    assert len(RangeHandler.requests) == 1  # the second call asked nothing


def test_a_verified_download_is_hashed_once_until_it_changes(server, tmp_path, monkeypatch):
    dest = download(f"{server}/payload.bin", tmp_path / "payload.bin", SHA)
    assert json.loads((tmp_path / "payload.bin.sha256").read_text())["sha256"] == SHA  # hashed as it came

    def rehash(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(download_module, "sha256_of", rehash)
    assert verified_sha256(dest) == SHA and download(f"{server}/payload.bin", dest, SHA) == dest
    monkeypatch.undo()
    dest.write_bytes(PAYLOAD[::-1])  # changed: the stamp no longer holds
    assert verified_sha256(dest) == hashlib.sha256(PAYLOAD[::-1]).hexdigest()
    forget(dest)
    assert list(tmp_path.iterdir()) == []


def test_download_resumes_a_partial_file(server, tmp_path):
    (tmp_path / "payload.bin.part").write_bytes(PAYLOAD[:300_000])
    download(f"{server}/payload.bin", tmp_path / "payload.bin", SHA)
    assert RangeHandler.requests == [("/payload.bin", "bytes=300000-")]
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_transfer_cut_short_keeps_what_came_and_resumes(server, tmp_path):
    RangeHandler.cut = {"/payload.bin"}
    dest = tmp_path / "payload.bin"
    with pytest.raises(EiadError, match=r"stopped after 524288 of 1048576 bytes; run the stage again to resume"):
        download(f"{server}/payload.bin", dest)  # no checksum pinned: the length alone must catch it
    assert not dest.exists() and (tmp_path / "payload.bin.part").stat().st_size == len(PAYLOAD) // 2
    download(f"{server}/payload.bin", dest, SHA)
    assert RangeHandler.requests[-1] == ("/payload.bin", "bytes=524288-") and dest.read_bytes() == PAYLOAD


def test_a_token_is_not_sent_on_to_a_redirect(server, tmp_path):
    seen = []

    class Recorder(urllib.request.BaseHandler):
        def http_request(self, request):
            seen.append((request.full_url, request.has_header("Authorization")))
            return request

    RangeHandler.files["/moved"] = None  # answered with a redirect to /payload.bin by the handler below
    opener = urllib.request.build_opener(Recorder())
    urllib.request.install_opener(opener)
    try:
        download(f"{server}/moved", tmp_path / "p.bin", SHA, headers={"Authorization": "Bearer secret"})
    finally:
        urllib.request.install_opener(None)
    assert seen == [(f"{server}/moved", True), (f"{server}/payload.bin", False)]


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    with pytest.raises(DataError, match="checksum mismatch"):
        download(f"{server}/payload.bin", tmp_path / "payload.bin", "0" * 64)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "payload.bin.part").write_bytes(PAYLOAD[:1000])  # a resumed download is checked whole
    with pytest.raises(DataError, match="checksum mismatch"):
        download(f"{server}/payload.bin", tmp_path / "payload.bin", "0" * 64)


def test_unreachable_and_missing(server, tmp_path):
    with pytest.raises(EiadError, match="HTTP 404"):
        download(f"{server}/nothing.bin", tmp_path / "x")
    with pytest.raises(EiadError, match="offline"):
        download("http://127.0.0.1:9/payload.bin", tmp_path / "y", timeout=2)


def _tar(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(target)
                bundle.addfile(info, io.BytesIO(target))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, target
                bundle.addfile(info)
    return buffer.getvalue()


def _zip(names):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name in names:
            bundle.writestr(name, b"data")
    return buffer.getvalue()


def test_safe_archives_extract(server, tmp_path):
    RangeHandler.files["/good.tar.gz"] = _tar([("BSData/data/a.jpg", "file", b"jpeg")])
    RangeHandler.files["/good.zip"] = _zip(["MMAD/mmad.json"])
    extract(download(f"{server}/good.tar.gz", tmp_path / "good.tar.gz"), tmp_path / "t")
    extract(download(f"{server}/good.zip", tmp_path / "good.zip"), tmp_path / "z")
    assert (tmp_path / "t/BSData/data/a.jpg").read_bytes() == b"jpeg"
    assert (tmp_path / "z/MMAD/mmad.json").read_bytes() == b"data"


@pytest.mark.parametrize(
    ("name", "archive"),
    [
        ("escape.tar.gz", _tar([("../escaped.txt", "file", b"x")])),
        ("absolute.tar.gz", _tar([("/tmp/absolute-eiad.txt", "file", b"x")])),
        ("link.tar.gz", _tar([("innocent", "link", "/etc/passwd")])),
        ("escape.zip", _zip(["ok.txt", "../../escaped.txt"])),
    ],
    ids=["dotdot-tar", "absolute-tar", "symlink-out-tar", "dotdot-zip"],
)
def test_malicious_archives_are_refused(server, tmp_path, name, archive):
    RangeHandler.files[f"/{name}"] = archive
    path = download(f"{server}/{name}", tmp_path / name)
    with pytest.raises(DataError, match=name):
        extract(path, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/absolute-eiad.txt").exists()


def test_not_an_archive(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"nope")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        extract(tmp_path / "x.bin", tmp_path / "out")
