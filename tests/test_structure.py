"""The house rules the code's layout promises: one home per value, plugins found by name,
data stages free of torch."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

import eiad
from eiad.errors import ConfigError
from eiad.models import get_adapter, known_families
from eiad.params import Params
from eiad.profiles import check
from eiad.sources import get_source, known_sources


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_all_subclasses(sub) for sub in found))


def test_no_params_class_has_a_default_so_params_yaml_is_the_one_home_of_every_value():
    for info in pkgutil.walk_packages(eiad.__path__, "eiad."):
        importlib.import_module(info.name)
    classes = _all_subclasses(Params)
    assert len(classes) >= 20  # every source, model, training and evaluation block
    defaults = [f"{cls.__qualname__}.{field.name}" for cls in classes for field in dataclasses.fields(cls)
                if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING]
    assert defaults == []


def test_params_yaml_and_every_profile_parse_as_the_stages_read_them():
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    check(params)
    ddqa_sources = [key for key in known_sources() if get_source(key).fetch_params is not None]
    assert ddqa_sources == ["bsdata", "demo", "prreal", "realiad", "vision"]
    check({**params, "datasets": ddqa_sources})  # every source's blocks, not only the demo's
    for benchmark in ("demo", "mmad"):
        check({**params, "benchmark": {**params["benchmark"], "source": benchmark}})
    profile = yaml.safe_load((REPO / "profiles" / "eiad-paper.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError, match="40-hex commit"):  # the paper's profile needs the reviewed commit
        check(_merged(params, profile))
    with pytest.raises(ConfigError, match="has no such step"):
        check({**params, "datasets": ["mmad"]})  # a benchmark, not a DDQA source


def _merged(base: dict, overrides: dict) -> dict:
    return {key: _merged(base.get(key, {}), value) if isinstance(value, dict) else value
            for key, value in {**base, **overrides}.items()} if isinstance(base, dict) else overrides


def test_every_plugin_is_found_by_its_package_name():
    assert {get_source(key).key for key in known_sources()} == set(known_sources())
    assert {get_adapter(name).family for name in known_families()} == set(known_families())


def test_data_stages_never_import_torch():
    """fetch, organise, fetch_benchmark and build_ddqa start in a fraction of a second and stay small."""
    script = (
        "import runpy, sys\n"
        "from eiad.sources import get_source, known_sources\n"
        "for name in ('fetch', 'organise', 'fetch_benchmark', 'build_ddqa'):\n"
        "    runpy.run_path(f'stages/{name}.py', run_name='stage')\n"
        "for key in known_sources():\n"
        "    get_source(key)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
