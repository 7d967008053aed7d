"""Downloads that resume, verify and never leave a partial file, and archive extraction that
cannot write outside its target folder."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from eiad.errors import DataError, EiadError

log = logging.getLogger(__name__)
CHUNK = 1 << 20
DISK_MARGIN = 1.1  # keep 10% more free space than the download needs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0,
             headers: dict[str, str] | None = None) -> Path:
    """Fetch ``url`` into ``dest``, resuming a ``dest.part`` left by an interrupted run.

    A complete ``dest`` with the expected checksum is a no-op. The checksum is verified before
    the file is renamed into place; a mismatch deletes the partial file and raises. ``headers``
    (e.g. a Hub token) go to ``url``'s host only, never to a host it redirects to, and are
    never logged.
    """
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        log.info("%s already complete", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_into(url, part, timeout, headers or {})
    if sha256 is not None and (actual := sha256_of(part)) != sha256:
        part.unlink()
        raise DataError(dest, f"checksum mismatch: expected sha256 {sha256}, got {actual}; the download was deleted")
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, timeout: float, headers: dict[str, str]) -> None:
    """Append the rest of ``url`` to ``part``. A transfer cut short keeps what came, and raises."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    for name, value in headers.items():
        request.add_unredirected_header(name, value)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is already whole
            return
        raise EiadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise EiadError(f"cannot download {url}: {getattr(err, 'reason', err)} (offline?)") from err
    with response:
        resumed = response.status == 206
        if not resumed:
            offset = 0  # the server ignored the range: start over
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
                    received += len(block)
                    progress.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise EiadError(f"download of {url} interrupted after {offset + received} bytes ({err}); "
                            "run the stage again to resume") from err
    # http.client returns b"" when a connection closes early instead of raising
    if remaining and received < remaining:
        raise EiadError(f"download of {url} stopped after {offset + received} of {offset + remaining} bytes; "
                        "run the stage again to resume")


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed * DISK_MARGIN > free:
        raise EiadError(f"{folder}: {needed / 1e9:.1f} GB to download but only {free / 1e9:.1f} GB free")


def extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into ``target``, refusing any member that would land outside
    it (absolute paths, ``..``) and, for tar, links pointing outside and special files."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, target, target.resolve())
    except (zipfile.BadZipFile, tarfile.ReadError, EOFError, OSError) as err:
        raise DataError(archive, f"cannot be unpacked ({err}); delete it and fetch again") from err


def _extract(archive: Path, target: Path, root: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            _refuse_escapes(archive, root, bundle.namelist())
            bundle.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            _refuse_escapes(archive, root, bundle.getnames())
            try:
                bundle.extractall(target, filter="data")  # the stdlib's guard: paths, links, devices
            except tarfile.FilterError as err:
                raise DataError(archive, f"unsafe member refused ({err})") from err
    else:
        raise DataError(archive, "is neither a zip nor a tar archive")


def _refuse_escapes(archive: Path, root: Path, names: list[str]) -> None:
    """Every member must land inside ``root``: no absolute path, no ``..`` climbing out."""
    for name in names:
        if os.path.isabs(name) or not (root / name).resolve().is_relative_to(root):
            raise DataError(archive, f"member {name!r} would be written outside {root}; refusing the archive")
