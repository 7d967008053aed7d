"""Fetching a source's files from a URL or the Hugging Face Hub, with a record of what came.

Downloads live outside the DVC outputs, in ``$EIAD_DOWNLOADS`` (default ``data/downloads``,
git-ignored; Hub files under ``hf/<type>/<repo>/<commit>/``), so that an interrupted fetch
resumes and a repeated one downloads nothing. Each fetched folder gets a ``fetch.json``
listing every file with its origin, the revision it was resolved to and its sha256, so the
DVC lock file pins the exact bytes a dataset was built from.

Hub access tokens are never handled here: ``huggingface_hub`` reads them from ``HF_TOKEN`` or
``hf auth login``, and nothing of them reaches params, logs or outputs.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from eiad.data.download import download, extract, forget, verified_sha256
from eiad.data.hub import HubRepo, hub_errors, is_commit
from eiad.errors import DataError, EiadError
from eiad.io import atomic_write_json

log = logging.getLogger(__name__)

RECORD = "fetch.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FetchedFile:
    """One downloaded file as ``fetch.json`` records it."""

    name: str
    origin: str  # the URL, or hf://<repo type>s/<repo id>/<path>
    revision: str  # the commit a Hub revision resolved to; the pinned ref for a URL
    sha256: str
    size: int


def downloads_dir() -> Path:
    return Path(os.environ.get("EIAD_DOWNLOADS", "data/downloads"))


def write_record(dest: Path, files: list[FetchedFile]) -> None:
    """``dest/fetch.json``: what was fetched, sorted so identical fetches give identical bytes."""
    atomic_write_json(dest / RECORD, {"files": [asdict(f) for f in sorted(files, key=lambda f: f.name)]})


def fetch_url(url: str, name: str, sha256: str = "", revision: str = "") -> tuple[Path, FetchedFile]:
    """Download ``url`` as ``name`` into the downloads folder, verified when ``sha256`` is set.

    Without a pinned checksum the file's digest is logged so that it can be pinned.
    """
    if sha256 and not _SHA256.fullmatch(sha256):
        raise EiadError(f"sha256 for {name} must be 64 lower-case hex digits, got {sha256!r}")
    path = download(url, downloads_dir() / name, sha256 or None)
    digest = sha256 or verified_sha256(path)
    if not sha256:
        log.warning("%s is not checksum-pinned; to pin it, set its sha256 param to %s", name, digest)
    return path, FetchedFile(name, url, revision, digest, path.stat().st_size)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection errors (huggingface_hub does not wrap them in its own)."""
    try:
        import httpx2 as client  # huggingface_hub >= 2
    except ImportError:
        import httpx as client  # type: ignore[no-redef]
    return (client.TransportError,)


def hub_file(repo: HubRepo, filename: str, sha256: str = "") -> tuple[Path, FetchedFile]:
    """One file of a Hub repository at ``repo.revision``, downloaded into the downloads folder.

    The Hub resolves the revision to a commit and states the file's size and, for LFS files,
    its sha256; the download then resumes, verifies and no-ops as :func:`eiad.data.download.download`
    does (huggingface_hub's own downloader no longer resumes across processes). A file already
    complete for a pinned commit needs no network at all.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    local = downloads_dir() / "hf" / repo.repo_type / repo.repo_id
    if is_commit(repo.revision) and (path := local / repo.revision / filename).is_file():
        digest = verified_sha256(path)  # hashed when it was downloaded; checked again against a pin
        if sha256 and digest != sha256:
            raise DataError(path, f"checksum mismatch: expected sha256 {sha256}, got {digest}; delete it and fetch again")
        return path, _record(repo, filename, repo.revision, path, digest)
    url = hf_hub_url(repo.repo_id, filename, repo_type=repo.repo_type, revision=repo.revision, endpoint=repo.endpoint)
    with hub_errors(repo, filename):
        try:
            metadata = get_hf_file_metadata(url, endpoint=repo.endpoint)
        except _transport_errors() as err:
            raise EiadError(f"cannot download {filename} from {repo.repo_id}: the Hugging Face Hub is unreachable "
                            f"(offline?) and {filename} @ {repo.revision} is not in {local}") from err
    stated = metadata.etag if metadata.etag and _SHA256.fullmatch(metadata.etag) else ""
    if sha256 and stated and sha256 != stated:
        raise DataError(local / filename, f"pinned sha256 {sha256} differs from the {stated} the Hub states "
                                          f"for {filename} @ {metadata.commit_hash}")
    dest = local / str(metadata.commit_hash) / filename
    # the token goes only to the Hub itself, not to the storage a large file redirects to
    same_host = urlsplit(metadata.location).netloc == urlsplit(url).netloc
    headers = build_hf_headers() if same_host else {}
    path = download(metadata.location, dest, sha256 or stated or None, headers=headers)
    return path, _record(repo, filename, str(metadata.commit_hash), path, sha256 or stated or verified_sha256(path))


def _record(repo: HubRepo, filename: str, commit: str, path: Path, digest: str) -> FetchedFile:
    origin = f"hf://{repo.repo_type}s/{repo.repo_id}/{filename}"
    return FetchedFile(filename, origin, commit, digest, path.stat().st_size)


def fetch_hub_archives(repo: HubRepo, archives: dict[str, str], dest: Path, what: str, keep_archives: bool) -> None:
    """Each archive of ``repo`` (its path -> a folder name) unpacked into ``dest``, all recorded in
    fetch.json; the archives are then deleted unless ``keep_archives``."""
    repo.warn_if_unpinned()
    records, paths = [], []
    for filename, folder in tqdm(archives.items(), desc=f"{what}: fetching", unit="archive"):
        archive, record = hub_file(repo, filename)
        unpack(archive, dest, folder)
        records.append(record)
        paths.append(archive)
    write_record(dest, records)
    discard_downloads(paths, keep_archives)


def discard_downloads(paths: list[Path], keep: bool) -> None:
    """After a fetch verified and unpacked them, delete the downloads (unless ``keep``): the
    fetched folder and its fetch.json are what DVC tracks, so a no-op repro never needs them,
    and a changed fetch downloads them again."""
    if keep:
        return
    for path in paths:
        forget(path)
    log.info("deleted %d verified download(s) from %s (keep_archives: true keeps them)", len(paths), downloads_dir())


def unpack(archive: Path, dest: Path, name: str) -> Path:
    """Extract ``archive`` into ``dest/name``, whether or not it wraps its content in one folder.

    Archives differ in whether they hold ``<name>/...`` or the content itself; both end as
    ``dest/name``. Extraction refuses members escaping the target (see :func:`extract`).
    """
    target = dest / name
    if target.exists():
        raise DataError(archive, f"unpacking would overwrite {target}")
    scratch = dest / f".{name}.unpacking"
    shutil.rmtree(scratch, ignore_errors=True)
    extract(archive, scratch)
    entries = [entry for entry in scratch.iterdir() if entry.name != "__MACOSX"]
    inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch
    os.replace(inner, target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target
