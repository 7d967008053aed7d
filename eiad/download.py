"""Downloads that resume, verify and never leave a partial file, and archive extraction that
cannot write outside its target folder."""

from __future__ import annotations

import hashlib
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
    (e.g. a Hub token) are sent but never logged.
    """
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        log.info("%s already complete", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={**(headers or {}), **({"Range": f"bytes={offset}-"} if offset else {})})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is already whole
            response = None
        else:
            raise EiadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise EiadError(f"cannot download {url}: {getattr(err, 'reason', err)} (offline?)") from err
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                offset = 0  # the server ignored the range: start over
            remaining = int(response.headers.get("Content-Length") or 0)
            check_free_space(dest.parent, remaining)
            with open(part, "ab" if resumed else "wb") as handle, tqdm(
                total=offset + remaining or None, initial=offset, unit="B", unit_scale=True, desc=dest.name
            ) as progress:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    progress.update(len(block))
    if sha256 is not None and (actual := sha256_of(part)) != sha256:
        part.unlink()
        raise DataError(dest, f"checksum mismatch: expected sha256 {sha256}, got {actual}; the download was deleted")
    os.replace(part, dest)
    return dest


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed * DISK_MARGIN > free:
        raise EiadError(f"{folder}: {needed / 1e9:.1f} GB to download but only {free / 1e9:.1f} GB free")


def extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into ``target``, refusing any member that would land outside
    it (absolute paths, ``..``) and, for tar, links pointing outside and special files."""
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
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
