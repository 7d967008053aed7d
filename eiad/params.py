"""Reading ``params.yaml`` into typed, validated configuration objects.

``params.yaml`` is the one home of every value: a configuration class (a :class:`Params`
dataclass) states the keys, their types and their checks, and has no defaults, so nothing in
the code can drift from what the file says. A profile (``profiles/*.yaml``) changes some values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from eiad.errors import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


def load_params(key: str, path: str | Path = DEFAULT_PARAMS) -> Any:
    """Return the value at a dotted ``key`` (``sources.Demo.fetch``) of a params file."""
    with open(path, encoding="utf-8") as handle:
        node: Any = yaml.safe_load(handle)
    walked = []
    for part in key.split("."):
        walked.append(part)
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{path}: missing key '{'.'.join(walked)}'")
        node = node[part]
    return node


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    return value


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a params mapping; unknown, missing or mistyped keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


class Params:
    """Base of every configuration read from ``params.yaml``: subclasses are frozen dataclasses
    without defaults (see the module's docstring), checked in ``__post_init__``."""

    @classmethod
    def parse(cls, data: Any, where: str) -> Self:
        """Build from the mapping found at ``where`` (a dotted params key, named in errors)."""
        return from_dict(cls, data, where)

    @classmethod
    def load(cls, key: str, path: str | Path = DEFAULT_PARAMS) -> Self:
        """Build from the value at dotted ``key`` of the params file."""
        return from_dict(cls, load_params(key, path), key)
