"""Answers kept as they come, so an evaluation killed at any point continues where it stopped.

Each process appends to its own file (``answers.rank<N>.jsonl``) one JSON line per answered
question, flushed and fsync'ed, under a header naming the run: a digest of the model's files, the
benchmark, the test split, the package's source and every setting that changes an answer. A cache
of another run is cleared; a line cut short by a crash is dropped. The cache is scratch, not a DVC output (DVC would
delete an output before re-running its stage), like training checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eiad.data.download import sha256_of

HEADER = "run"


def tree_digest(paths: Iterable[Path], pattern: str = "*") -> str:
    """sha256 over every file under ``paths`` whose name matches ``pattern`` (relative names and
    contents, in sorted order)."""
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob(pattern) if p.is_file())
        for path in files:
            digest.update(f"{path.relative_to(root.parent)}\0{sha256_of(path)}\0".encode())
    return digest.hexdigest()


class AnswerCache:
    """The answers of one run, read from every process's file and appended to this process's."""

    def __init__(self, folder: Path, run: str, rank: int) -> None:
        self.folder, self.run = folder, run
        self.file = folder / f"answers.rank{rank}.jsonl"

    def reset_if_stale(self) -> None:
        """Clear the folder unless every file in it belongs to this run (called by rank 0 alone)."""
        files = sorted(self.folder.glob("answers.rank*.jsonl")) if self.folder.is_dir() else []
        if any(_header(path) != self.run for path in files):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, Any]:
        """Every complete answer of this run in the folder (all processes' files), by question id."""
        answers: dict[str, Any] = {}
        for path in sorted(self.folder.glob("answers.rank*.jsonl")):
            answers.update(_entries(path))
        return answers

    def open(self) -> None:
        """Start this process's file (its header), or cut a line left half-written by a crash."""
        if not self.file.is_file() or _header(self.file) != self.run:
            self._write(json.dumps({HEADER: self.run}) + "\n", "w")
            return
        data = self.file.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            with open(self.file, "r+b") as handle:
                handle.truncate(keep)

    def append(self, answers: dict[str, Any]) -> None:
        """Add answers durably: they are on disk when this returns."""
        self._write("".join(json.dumps({"id": key, "answer": value}) + "\n" for key, value in answers.items()), "a")

    def _write(self, text: str, mode: str) -> None:
        with open(self.file, mode, encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def _header(path: Path) -> str | None:
    with open(path, encoding="utf-8") as handle:
        try:
            return json.loads(handle.readline()).get(HEADER)
        except (json.JSONDecodeError, AttributeError):
            return None


def _entries(path: Path) -> dict[str, Any]:
    entries = {}
    with open(path, encoding="utf-8") as handle:
        next(handle, None)
        for line in handle:
            if not line.endswith("\n"):
                break  # cut short by a crash
            row = json.loads(line)
            entries[row["id"]] = row["answer"]
    return entries
