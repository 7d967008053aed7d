"""Data sources: one module per source, each exposing ``SOURCE`` (a :class:`Source`).

A source knows how to fetch its native data and how to organise it into the unified layout;
a benchmark source can also fetch an MMAD-format benchmark. Sources are found by scanning
this package, so adding one is adding a module: nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import Any

from eiad.errors import ConfigError
from eiad.layout import OrganiseReport


class Source:
    """Base class of a data source.

    ``key`` is the module's name (used in ``params.yaml``, ``dvc.yaml`` and folder names);
    ``name`` is the dataset's name as DDQA records and metrics show it.
    """

    key: str = ""
    name: str = ""

    def fetch(self, params: dict[str, Any], dest: Path) -> None:
        """Download or generate the native data into the empty folder ``dest``."""
        raise ConfigError(f"source {self.name} cannot fetch DDQA data")

    def organise(self, params: dict[str, Any], raw: Path, dest: Path) -> OrganiseReport:
        """Turn the native data in ``raw`` into the unified layout in the empty folder ``dest``."""
        raise ConfigError(f"source {self.name} has no organiser")

    def fetch_benchmark(self, params: dict[str, Any], dest: Path) -> None:
        """Download or generate an MMAD-format benchmark into the empty folder ``dest``."""
        raise ConfigError(f"source {self.name} provides no benchmark")


@cache
def registry() -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        source = getattr(module, "SOURCE", None)
        if isinstance(source, Source):
            if source.key != info.name:
                raise RuntimeError(f"{module.__name__}: SOURCE.key must be {info.name!r}")
            sources[source.key] = source
    return sources


def get_source(key: str) -> Source:
    try:
        return registry()[key]
    except KeyError:
        raise ConfigError(f"unknown source {key!r}; known sources: {sorted(registry())}") from None
