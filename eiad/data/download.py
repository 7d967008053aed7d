"""Downloads that resume, verify and never leave a partial file, and archive extraction that
cannot write outside its target folder."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eiad.errors import DataError, EiadError
from eiad.io import atomic_write_json

log = logging.getLogger(__name__)
CHUNK = 1 << 20
DISK_MARGIN = 1.1  # keep 10% more free space than the download needs
STAMP_SUFFIX = ".sha256"  # beside a download: its digest, valid while its size and mtime stay


def sha256_of(path: Path) -> str:
    """The file's sha256, with a progress bar (a multi-GB archive takes tens of seconds)."""
    return _hashed(path).hexdigest()


def _hashed(path: Path) -> Any:
    """A sha256 object fed with the file's bytes, which can go on taking more."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle, _bytes_bar(path.stat().st_size, f"hashing {path.name}") as progress:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
            progress.update(len(block))
    return digest


def verified_sha256(path: Path) -> str:
    """The file's sha256, hashed once: a stamp beside it keeps the digest while the file's size and
    modification time are unchanged, so a kept archive is not re-read on every fetch."""
    stamp, state = _stamp(path), _file_state(path)
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        if recorded["state"] == state:
            return str(recorded["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no stamp, or an unreadable one: hash again
    digest = sha256_of(path)
    _write_stamp(path, digest)
    return digest


def forget(path: Path) -> None:
    """Delete a download and its stamp."""
    path.unlink(missing_ok=True)
    _stamp(path).unlink(missing_ok=True)


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _file_state(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def _write_stamp(path: Path, digest: str) -> None:
    atomic_write_json(_stamp(path), {"sha256": digest, "state": _file_state(path)})


def _bytes_bar(total: int, desc: str) -> Any:
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0,
             headers: dict[str, str] | None = None) -> Path:
    """Fetch ``url`` into ``dest``, resuming a ``dest.part`` left by an interrupted run.

    A complete ``dest`` with the expected checksum is a no-op (its digest is stamped, so not
    re-read). The checksum is computed as the bytes arrive and verified before the file is
    renamed into place; a mismatch deletes the partial file and raises. ``headers`` (e.g. a
    Hub token) go to ``url``'s host only, never to a host it redirects to, and are never logged.
    """
    if dest.is_file() and (sha256 is None or verified_sha256(dest) == sha256):
        log.info("%s already complete", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    actual = _fetch_into(url, part, timeout, headers or {})
    if sha256 is not None and actual != sha256:
        part.unlink()
        raise DataError(dest, f"checksum mismatch: expected sha256 {sha256}, got {actual}; the download was deleted")
    os.replace(part, dest)
    _write_stamp(dest, actual)
    return dest


def _fetch_into(url: str, part: Path, timeout: float, headers: dict[str, str]) -> str:
    """Append the rest of ``url`` to ``part`` and return the whole file's sha256. A transfer cut
    short keeps what came, and raises."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    for name, value in headers.items():
        request.add_unredirected_header(name, value)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is already whole
            return sha256_of(part)
        raise EiadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise EiadError(f"cannot download {url}: {getattr(err, 'reason', err)} (offline?)") from err
    with response:
        resumed = response.status == 206
        if not resumed:
            offset = 0  # the server ignored the range: start over
        # the bytes already there are hashed first, so the whole file is read once
        digest = _hashed(part) if resumed else hashlib.sha256()
        remaining = int(response.headers.get("Content-Length") or 0)
        check_free_space(part.parent, remaining)
        log.info("%s: %.2f GB to download", part.name.removesuffix(".part"), remaining / 1e9)
        received = 0
        try:
            with open(part, "ab" if resumed else "wb") as handle, tqdm(
                total=offset + remaining or None, initial=offset, unit="B", unit_scale=True, desc=part.name
            ) as progress:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    digest.update(block)
                    received += len(block)
                    progress.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise EiadError(f"download of {url} interrupted after {offset + received} bytes ({err}); "
                            "run the stage again to resume") from err
    # http.client returns b"" when a connection closes early instead of raising
    if remaining and received < remaining:
        raise EiadError(f"download of {url} stopped after {offset + received} of {offset + remaining} bytes; "
                        "run the stage again to resume")
    return digest.hexdigest()


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed * DISK_MARGIN > free:
        raise EiadError(f"{folder}: {needed / 1e9:.1f} GB to download but only {free / 1e9:.1f} GB free")


def extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into ``target``, refusing any member that would land outside
    it (absolute paths, ``..``) and, for tar, links pointing outside and special files. One pass
    over the archive, with a progress bar in archive bytes."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with _bytes_bar(archive.stat().st_size, f"unpacking {archive.name}") as progress:
            _extract(archive, target, os.path.realpath(target), progress)
    except (zipfile.BadZipFile, tarfile.ReadError, EOFError, OSError) as err:
        raise DataError(archive, f"cannot be unpacked ({err}); delete it and fetch again") from err


def _extract(archive: Path, target: Path, root: str, progress: Any) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:  # all checked before anything is written
                _refuse_escape(archive, root, member.filename)
            for member in members:
                bundle.extract(member, target)
                progress.update(member.compress_size)
    elif tarfile.is_tarfile(archive):
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw) as bundle:
            for member in bundle:  # streamed: a .tar.gz is decompressed once
                _refuse_escape(archive, root, member.name)
                try:
                    bundle.extract(member, target, filter="data")  # the stdlib's guard: paths, links, devices
                except tarfile.FilterError as err:
                    raise DataError(archive, f"unsafe member refused ({err})") from err
                progress.update(raw.tell() - progress.n)
    else:
        raise DataError(archive, "is neither a zip nor a tar archive")


def _refuse_escape(archive: Path, root: str, name: str) -> None:
    """A member must land inside ``root``: no absolute path, no ``..`` climbing out. (Checked on
    the names alone: nothing extracted so far can be a link, zip has none and tar's are filtered.)"""
    landing = os.path.normpath(os.path.join(root, name))
    if os.path.isabs(name) or not (landing == root or landing.startswith(root + os.sep)):
        raise DataError(archive, f"member {name!r} would be written outside {root}; refusing the archive")
