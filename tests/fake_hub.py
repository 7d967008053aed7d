"""A loopback HTTP server that answers like the Hugging Face Hub's file endpoints (and plain URLs).

It serves ``/<type>s/<repo>/resolve/<revision>/<path>`` with the headers huggingface_hub
reads (``X-Repo-Commit``, ``ETag`` = the sha256, as for LFS files, ``Content-Length``),
honours ``Range`` so interrupted downloads resume, answers gated repositories as the Hub
does (403, ``X-Error-Code: GatedRepo``) and records every request.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class HubState:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body (plain URLs)
    repos: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)  # (type, repo) -> files
    commits: dict[str, str] = field(default_factory=dict)  # revision -> commit
    gated: set[str] = field(default_factory=set)
    stated_sha256: dict[str, str] = field(default_factory=dict)  # filename -> the sha256 to state (or a wrong one)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    authorizations: set[str] = field(default_factory=set)  # Authorization headers received

    def add_repo(self, repo_type: str, repo_id: str, files: dict[str, bytes]) -> None:
        self.repos[(repo_type, repo_id)] = files


def _handler(state: HubState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            state.requests.append((self.command, path, self.headers.get("Range")))
            if self.headers.get("Authorization"):
                state.authorizations.add(self.headers["Authorization"])
            found = self._hub_file(path) if "/resolve/" in path else (state.files.get(path), {})
            content, headers = found
            if content is None:
                return
            start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            if start and start >= len(content):
                self._fail(416, {})
                return
            self.send_response(206 if start else 200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content) - start))
            self.end_headers()
            if body:
                self.wfile.write(content[start:])

        def _hub_file(self, path: str) -> tuple[bytes | None, dict[str, str]]:
            kind, rest = path.lstrip("/").split("/", 1)
            repo_id, tail = rest.split("/resolve/", 1)
            repo_type = kind.rstrip("s") if kind in ("datasets", "spaces") else "model"
            if kind not in ("datasets", "spaces"):
                repo_id = f"{kind}/{repo_id}"
            revision, filename = self._split_revision(tail)
            if repo_id in state.gated:
                self._fail(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this repo is restricted"})
                return None, {}
            files = state.repos.get((repo_type, repo_id))
            if files is None:
                self._fail(404, {"X-Error-Code": "RepoNotFound"})
                return None, {}
            if revision not in state.commits:
                self._fail(404, {"X-Error-Code": "RevisionNotFound"})
                return None, {}
            if filename not in files:
                self._fail(404, {"X-Error-Code": "EntryNotFound"})
                return None, {}
            content = files[filename]
            sha256 = state.stated_sha256.get(filename) or hashlib.sha256(content).hexdigest()
            return content, {"X-Repo-Commit": state.commits[revision], "ETag": f'"{sha256}"'}

        @staticmethod
        def _split_revision(tail: str) -> tuple[str, str]:
            """``refs/pr/1/a/b.zip`` -> (``refs/pr/1``, ``a/b.zip``): known revisions win."""
            for revision in sorted(state.commits, key=len, reverse=True):
                if tail.startswith(revision + "/"):
                    return revision, tail[len(revision) + 1:]
            revision, _, filename = tail.partition("/")
            return revision, filename

        def _fail(self, code: int, headers: dict[str, str]) -> None:
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(state: HubState) -> Iterator[str]:
    """Run the server on a free loopback port for the ``with`` block; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
