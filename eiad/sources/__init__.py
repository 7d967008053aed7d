"""Data sources: one package per source, each exposing ``SOURCE`` (a :class:`Source`).

A source fetches its native data and organises it into the unified layout; a benchmark source
fetches an MMAD-format benchmark. Every source follows one template: its params blocks are
:class:`~eiad.params.Params` classes, ``download`` fills the fetch folder, and ``catalogue``
lists the native samples that one writer loop (:meth:`Source.organise`) validates and writes.
Sources are found by name in this package and imported only when asked for, so adding one is
adding a package, and a stage imports only the source it runs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eiad.data.layout import NativeSample, OrganiseParams, OrganiseReport
from eiad.data.organise import LayoutWriter
from eiad.data.parallel import worker_count
from eiad.errors import ConfigError
from eiad.params import Params


class Source:
    """Base class of a data source.

    ``key`` is the package's name (used in ``params.yaml``, ``dvc.yaml`` and folder names);
    ``name`` is the dataset's name as DDQA records and metrics show it. The ``*_params`` classes
    parse the source's blocks: ``sources.<key>.fetch``, ``sources.<key>.organise`` and
    ``benchmark.<key>``.
    """

    key: str = ""
    name: str = ""
    fetch_params: type[Params] | None = None
    organise_params: type[OrganiseParams] | None = None
    benchmark_params: type[Params] | None = None

    def fetch(self, params: dict[str, Any], dest: Path) -> None:
        """Download or generate the native data into the empty folder ``dest``."""
        self.download(self.parse_params(self.fetch_params, params, f"sources.{self.key}.fetch"), dest)

    def organise(self, params: dict[str, Any], raw: Path, dest: Path) -> OrganiseReport:
        """Turn the native data in ``raw`` into the unified layout in the empty folder ``dest``."""
        config = self.parse_params(self.organise_params, params, f"sources.{self.key}.organise")
        return LayoutWriter(dest, self.name, config.on_bad_sample, worker_count()).write(self.catalogue(config, raw))

    def fetch_benchmark(self, params: dict[str, Any], dest: Path) -> None:
        """Download or generate an MMAD-format benchmark into the empty folder ``dest``."""
        self.download_benchmark(self.parse_params(self.benchmark_params, params, f"benchmark.{self.key}"), dest)

    # --- what a source implements ------------------------------------------------------------

    def download(self, config: Any, dest: Path) -> None:
        raise ConfigError(f"source {self.name} cannot fetch DDQA data")

    def catalogue(self, config: Any, raw: Path) -> Sequence[NativeSample]:
        """Every sample of the native layout in ``raw``; structural problems raise here."""
        raise ConfigError(f"source {self.name} has no organiser")

    def download_benchmark(self, config: Any, dest: Path) -> None:
        raise ConfigError(f"source {self.name} provides no benchmark")

    def parse_params(self, params_class: type[Params] | None, params: dict[str, Any], where: str) -> Any:
        """``params`` (the block at ``where``) as ``params_class``; a step the source lacks is an error."""
        if params_class is None:
            raise ConfigError(f"{where}: source {self.name} has no such step")
        return params_class.parse(params, where)


def known_sources() -> list[str]:
    """The keys of every source package, without importing any of them."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.ispkg)


def get_source(key: str) -> Source:
    """The source ``key``, importing its package (and nothing of the others)."""
    if key not in known_sources():
        raise ConfigError(f"unknown source {key!r}; known sources: {known_sources()}")
    source = getattr(importlib.import_module(f"{__name__}.{key}"), "SOURCE", None)
    if not isinstance(source, Source) or source.key != key:
        raise RuntimeError(f"{__name__}.{key} must define SOURCE, a Source whose key is {key!r}")
    return source
