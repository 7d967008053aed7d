"""Hugging Face Hub repositories as params name them, and the Hub's errors as messages that say what to do.

Access tokens are never handled here: ``huggingface_hub`` reads them from ``HF_TOKEN`` or
``hf auth login``, and nothing of them reaches params, logs or outputs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from eiad.errors import EiadError
from eiad.params import Params

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"[0-9a-f]{40}")


def is_commit(revision: str) -> bool:
    """A full commit hash: the only revision that cannot move under us."""
    return bool(_COMMIT.fullmatch(revision))


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


@dataclass(frozen=True)
class HubParams(Params):
    """A params block naming a Hub repository: ``repo_id``, ``revision`` (pin a 40-hex commit) and
    ``endpoint`` (null: the Hugging Face Hub, or ``$HF_ENDPOINT``)."""

    repo_id: str
    revision: str
    endpoint: str | None

    def repo(self, repo_type: str = "dataset") -> HubRepo:
        return HubRepo(self.repo_id, self.revision, repo_type, self.endpoint)


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
