"""Model families: one package per family in ``eiad/models/families``, each exposing ``ADAPTER``
(a :class:`~eiad.models.adapter.VLMAdapter` whose ``family`` is the package's name).

A family is imported only when asked for, so adding one is adding a package and a stage imports
only the family its params select.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from eiad.errors import ConfigError
from eiad.models import families

if TYPE_CHECKING:
    from eiad.models.adapter import VLMAdapter


def known_families() -> list[str]:
    """The names of every family package, without importing any of them."""
    return sorted(info.name for info in pkgutil.iter_modules(families.__path__) if info.ispkg)


def get_adapter(family: str) -> VLMAdapter:
    """The adapter of ``family``, importing its package (and nothing of the others)."""
    from eiad.models.adapter import VLMAdapter

    if family not in known_families():
        raise ConfigError(f"unknown model family {family!r}; known families: {known_families()}")
    adapter = getattr(importlib.import_module(f"{families.__name__}.{family}"), "ADAPTER", None)
    if not isinstance(adapter, VLMAdapter) or adapter.family != family:
        raise RuntimeError(f"{families.__name__}.{family} must define ADAPTER, a VLMAdapter whose family is {family!r}")
    return adapter


def family_of(model_type: str) -> str | None:
    """The family whose adapter handles a config.json ``model_type``, if any (imports every family)."""
    return next((name for name in known_families() if model_type in get_adapter(name).model_types), None)
