"""Profiles: named sets of params overrides (``profiles/<name>.yaml``), run as DVC experiments.

``python -m eiad.profiles NAME [KEY=VALUE ...]`` merges the profile (and any extra settings)
into ``params.yaml`` in memory, checks the result as the stages will, and prints the ``-S``
arguments for ``dvc exp run``. ``params.yaml`` and its comments stay as committed; the run is
an experiment that ``dvc exp show`` lists and ``dvc exp apply`` can make the workspace's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from eiad.data.hub import is_commit
from eiad.errors import ConfigError, EiadError

PROFILES = Path("profiles")  # beside params.yaml, in the project's root


def load_profile(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path) if name_or_path.endswith((".yaml", ".yml")) else PROFILES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
        raise ConfigError(f"no profile {name_or_path!r} ({path} does not exist); profiles: {known}")
    profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(profile, dict):
        raise ConfigError(f"{path}: a profile is a mapping of params keys to values")
    return profile


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested overrides as dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a mapping in params.yaml")
    node[last] = value


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML, as ``dvc exp run -S`` reads it."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value) if value else ""


def check(params: dict[str, Any]) -> None:
    """The checks the stages make first, so a profile fails here rather than hours into a run."""
    from eiad.ddqa.build import DDQAConfig
    from eiad.evaluation.runner import EvalConfig
    from eiad.models.config import ModelConfig
    from eiad.sources import get_source
    from eiad.training.config import TrainConfig

    for key in params["datasets"]:
        source, blocks = get_source(key), params["sources"].get(key, {})
        source.parse_params(source.fetch_params, blocks.get("fetch"), f"sources.{key}.fetch")
        source.parse_params(source.organise_params, blocks.get("organise"), f"sources.{key}.organise")
    benchmark = get_source(params["benchmark"]["source"])
    benchmark.parse_params(benchmark.benchmark_params, params["benchmark"][benchmark.key], f"benchmark.{benchmark.key}")
    DDQAConfig.parse(params["ddqa"], "ddqa")
    model = ModelConfig.parse(params["model"], "model")
    if model.source == "hub" and not is_commit(model.hub.revision):
        raise ConfigError(f"model.hub.revision must be a 40-hex commit of {model.hub.repo_id} (its Hub page, "
                          f"'Files and versions'); add model.hub.revision=<commit> to the command")
    TrainConfig.parse(params["train"], "train")
    EvalConfig.parse(params["evaluate"], "evaluate")


def exp_run_arguments(overrides: dict[str, Any]) -> list[str]:
    """``-S key=value`` pairs; values as compact JSON (which is YAML) so the shell keeps each whole.

    A string stays bare only when it reads back as itself: "256" or "true" are quoted, or DVC
    would store a number or a boolean.
    """
    arguments = []
    for key, value in overrides.items():
        bare = isinstance(value, str) and value and yaml.safe_load(value) == value
        text = value if bare else json.dumps(value, separators=(",", ":"))
        if any(c.isspace() for c in f"{key}{text}"):
            raise ConfigError(f"{key}: a value with spaces cannot pass through $(...); set it with -S by hand")
        arguments += ["-S", f"{key}={text}"]
    return arguments


def resolve(name: str, settings: tuple[str, ...], params_file: str = "params.yaml") -> list[str]:
    overrides = flatten(load_profile(name))
    overrides.update(parse_setting(text) for text in settings)
    params = yaml.safe_load(Path(params_file).read_text(encoding="utf-8"))
    for key, value in overrides.items():
        set_dotted(params, key, value)
    check(params)
    return exp_run_arguments(overrides)


@click.command()
@click.argument("name")
@click.argument("settings", nargs=-1)
@click.option("--params", "params_file", default="params.yaml", show_default=True, help="Parameters file to check against.")
def main(name: str, settings: tuple[str, ...], params_file: str) -> None:
    """Print `dvc exp run` arguments for profile NAME (profiles/NAME.yaml), plus KEY=VALUE SETTINGS."""
    try:
        arguments = resolve(name, settings, params_file)
    except EiadError as err:
        raise click.ClickException(str(err)) from err
    if any(a.endswith("trust_remote_code=true") for a in arguments):
        click.echo(f"note: profile {name} opts in to running the model repository's own code", err=True)
    click.echo(" ".join(arguments))


if __name__ == "__main__":
    main()
