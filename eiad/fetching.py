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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from eiad.download import download, extract, sha256_of
from eiad.errors import DataError, EiadError
from eiad.io import atomic_write_json

log = logging.getLogger(__name__)

RECORD = "fetch.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def is_commit(revision: str) -> bool:
    """A full commit hash: the only revision that cannot move under us."""
    return bool(_COMMIT.fullmatch(revision))


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
    digest = sha256 or sha256_of(path)
    if not sha256:
        log.warning("%s is not checksum-pinned; to pin it, set its sha256 param to %s", name, digest)
    return path, FetchedFile(name, url, revision, digest, path.stat().st_size)


@dataclass(frozen=True)
class HubRepo:
    """A Hub repository at a revision; ``endpoint`` None means the Hub itself (or ``$HF_ENDPOINT``)."""

    repo_id: str
    revision: str
    repo_type: str = "dataset"
    endpoint: str | None = None

    @property
    def page(self) -> str:
        kind = "datasets/" if self.repo_type == "dataset" else ""
        return f"{self.endpoint or 'https://huggingface.co'}/{kind}{self.repo_id}"

    def warn_if_unpinned(self) -> None:
        if not is_commit(self.revision):
            log.warning("%s @ %s is a moving reference; fetch.json records the commit it resolved to, pin that "
                        "commit as the revision for a fixed download", self.repo_id, self.revision)


@contextmanager
def hub_errors(repo: HubRepo, what: str) -> Iterator[None]:
    """Turn huggingface_hub's errors about ``what`` (a file, a snapshot) into messages that say what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError as err:
        raise EiadError(
            f"{repo.repo_id} is gated: open {repo.page} while logged in and accept its terms, then make your "
            "token available with `hf auth login` or the HF_TOKEN environment variable (it is read from there "
            "and never stored by this pipeline)"
        ) from err
    except RepositoryNotFoundError as err:
        raise EiadError(f"{repo.repo_id}: no such {repo.repo_type} repository, or your token cannot see it "
                        f"(log in with `hf auth login` or set HF_TOKEN)") from err
    except RevisionNotFoundError as err:
        raise EiadError(f"{repo.repo_id}: no revision {repo.revision!r}") from err
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as err:
        raise EiadError(f"cannot download {what} from {repo.repo_id}: the Hugging Face Hub is unreachable (offline, "
                        f"or HF_HUB_OFFLINE is set) and {what} @ {repo.revision} is not downloaded yet") from err
    except EntryNotFoundError as err:
        raise EiadError(f"{repo.repo_id} @ {repo.revision} has no file {what!r}") from err
    except HfHubHTTPError as err:
        raise EiadError(f"cannot download {what} from {repo.repo_id}: {err}") from err


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
    its sha256; the download then resumes, verifies and no-ops as :func:`eiad.download.download`
    does (huggingface_hub's own downloader no longer resumes across processes). A file already
    complete for a pinned commit needs no network at all.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    local = downloads_dir() / "hf" / repo.repo_type / repo.repo_id
    if is_commit(repo.revision) and (path := local / repo.revision / filename).is_file():
        digest = sha256_of(path)  # verified when it was downloaded; checked again against a pin
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
    return path, _record(repo, filename, str(metadata.commit_hash), path, sha256 or stated or sha256_of(path))


def _record(repo: HubRepo, filename: str, commit: str, path: Path, digest: str) -> FetchedFile:
    origin = f"hf://{repo.repo_type}s/{repo.repo_id}/{filename}"
    return FetchedFile(filename, origin, commit, digest, path.stat().st_size)


def fetch_hub_archives(repo: HubRepo, archives: dict[str, str], dest: Path, what: str) -> None:
    """Each archive of ``repo`` (its path -> a folder name) unpacked into ``dest``, all recorded in fetch.json."""
    repo.warn_if_unpinned()
    records = []
    for filename, folder in tqdm(archives.items(), desc=f"{what}: fetching", unit="archive"):
        archive, record = hub_file(repo, filename)
        unpack(archive, dest, folder)
        records.append(record)
    write_record(dest, records)


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
