"""What every stage command shares: logging, clear messages for expected errors, path options."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from eiad.errors import EiadError

F = TypeVar("F", bound=Callable[..., Any])


def stage(function: F) -> F:
    """Run a stage body with logging set up; an :class:`EiadError` becomes a one-line error."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return function(*args, **kwargs)
        except EiadError as err:
            raise click.ClickException(str(err)) from err

    return wrapper  # type: ignore[return-value]


params_option = click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False),
    default="params.yaml",
    show_default=True,
    help="Parameters file to read.",
)


def folder(name: str, help: str) -> Callable[[F], F]:
    """A required folder the stage reads (it must exist)."""
    return click.option(name, type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help=help)


def input_file(name: str, help: str) -> Callable[[F], F]:
    """A required file the stage reads (it must exist)."""
    return click.option(name, type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help=help)


def output_folder(name: str, help: str) -> Callable[[F], F]:
    """A required folder the stage writes (replaced atomically)."""
    return click.option(name, type=click.Path(file_okay=False, path_type=Path), required=True, help=help)


def output_file(name: str, help: str) -> Callable[[F], F]:
    """A required file the stage writes (atomically)."""
    return click.option(name, type=click.Path(dir_okay=False, path_type=Path), required=True, help=help)
