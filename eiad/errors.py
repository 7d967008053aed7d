"""Errors that name the file and the problem, so a user can fix their data."""

from __future__ import annotations

from pathlib import Path


class EiadError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class ConfigError(EiadError):
    """A parameter in ``params.yaml`` is missing, unknown or out of range."""


class DataError(EiadError):
    """A file or folder does not hold what the pipeline expects.

    The message always starts with the offending path.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # rebuilt from path and problem when it crosses a process boundary (organise's workers)
        return type(self), (self.path, self.problem)


class LayoutError(DataError):
    """A native dataset layout has an unexpected structure (never skipped)."""


class BadSampleError(DataError):
    """One sample (image or mask) is unusable; may be skipped when params allow it."""
