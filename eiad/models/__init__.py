"""Model families: one module per family, each exposing ``ADAPTER`` (a :class:`VLMAdapter`).

Adapters are found by scanning this package, so adding a family is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from eiad.errors import ConfigError
from eiad.models.base import VLMAdapter


@cache
def adapters() -> dict[str, VLMAdapter]:
    found: dict[str, VLMAdapter] = {}
    for info in pkgutil.iter_modules(__path__):
        adapter = getattr(importlib.import_module(f"{__name__}.{info.name}"), "ADAPTER", None)
        if isinstance(adapter, VLMAdapter):
            found[adapter.family] = adapter
    return found


def family_of(model_type: str) -> str | None:
    """The family whose adapter handles a config.json ``model_type``, if any."""
    return next((family for family, adapter in adapters().items() if model_type in adapter.model_types), None)


def get_adapter(family: str) -> VLMAdapter:
    try:
        return adapters()[family]
    except KeyError:
        raise ConfigError(f"unknown model family {family!r}; known families: {sorted(adapters())}") from None
