"""A throwaway git + DVC project made of the repository's tracked files, and ways to drive it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml
from conftest import REPO

ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, stderr: bool = True) -> str:
    """Run a command in ``cwd``; its stdout (and stderr unless told not to), asserting success."""
    done = subprocess.run(args, check=False, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + (done.stderr if stderr else "")


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def set_param(root: Path, dotted: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_project(root: Path) -> Path:
    """Copy the repository's tracked files (no data, metrics or lock) into ``root``."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).split()
    for name in listed:
        if (REPO / name).is_file() and not name.startswith(("data/", "metrics/")) and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    return root


def commit_all(root: Path, message: str) -> None:
    if not (root / ".git").is_dir():
        run("git", "init", "-q", "-b", "main", cwd=root)
    run("git", "add", "-A", cwd=root)
    run("git", "commit", "-qm", message, cwd=root)
