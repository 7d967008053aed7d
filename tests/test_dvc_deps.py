"""Every DVC stage depends on exactly the code it runs.

A stage runs its script, the ``eiad`` modules the script imports (transitively: every import
statement, including those inside functions, counts) and the plugin its params select (the
source package named on its command line, the model family of ``model.family``). Its ``deps``
must cover each of those modules (else an edit leaves DVC thinking the outputs are current), and
every Python module its deps cover must be one of them (else an unrelated edit re-runs it, e.g.
a demo renderer change re-fetching Real-IAD). Checked for every source and every model family,
not only the ones ``params.yaml`` selects.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO

from eiad.models import known_families
from eiad.sources import known_sources

PACKAGE = REPO / "eiad"
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (``eiad.a.b``) in this repository, if it is one of ours."""
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(name: str) -> list[Path]:
    """``eiad/__init__.py`` ... for every package above module ``name`` (importing runs them)."""
    parts = name.split(".")
    return [file for i in range(1, len(parts)) if (file := module_file(".".join(parts[:i]))) is not None]


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never run)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        nodes.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def _imported(path: Path) -> set[str]:
    """The ``eiad`` modules an import statement anywhere in ``path`` names (outside TYPE_CHECKING)."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # `from eiad.a import b` may import the submodule b
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "eiad" or name.startswith("eiad.")}


def closure(roots: list[Path]) -> set[Path]:
    """Every file of ours that running ``roots`` may execute."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported(path):
            file = module_file(name)
            if file is not None:
                todo.extend([file, *_package_inits(name)])
    return seen


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node


def _interpolate(value: Any, scope: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return _lookup(scope, whole[1])
        return _PLACEHOLDER.sub(lambda match: str(_lookup(scope, match[1])), value)
    if isinstance(value, list):
        return [_interpolate(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: _interpolate(item, scope) for key, item in value.items()}
    return value


def resolved_stages(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``dvc.yaml``'s stages with ``foreach`` expanded and ``${...}`` filled in, as DVC does."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    stages = {}
    for name, stage in spec.items():
        if "foreach" not in stage:
            stages[name] = _interpolate(stage, params)
            continue
        items = _interpolate(stage["foreach"], params)
        pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
        for key, item in pairs:
            stages[f"{name}@{key}"] = _interpolate(stage["do"], {**params, "item": item, "key": key})
    return stages


def _dep_name(dep: Any) -> str:
    return next(iter(dep)) if isinstance(dep, dict) else dep


def covered(deps: list[str]) -> set[Path]:
    """The Python files of ours that ``deps`` name, directly or inside a folder."""
    files = set()
    for dep in deps:
        path = REPO / dep
        if path.is_dir():
            files.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.suffix == ".py":
            files.add(path)
    return files


def run_code(stage: dict[str, Any], params: dict[str, Any]) -> set[Path]:
    """The code a stage runs: its script's closure plus the plugin its command and params select."""
    argv = shlex.split(stage["cmd"])
    script = REPO / argv[1]
    roots = [script]
    files = closure([script])
    if PACKAGE / "sources" / "__init__.py" in files:  # the script gets a source by its first argument
        roots.append(PACKAGE / "sources" / argv[2] / "__init__.py")
    if PACKAGE / "models" / "config.py" in files:  # the model handle loads the family of model.family
        roots.append(PACKAGE / "models" / "families" / params["model"]["family"] / "__init__.py")
    return closure(roots)


def _variants() -> list[tuple[str, dict[str, Any]]]:
    """params.yaml, then with every source fetched and organised, with each benchmark, each family."""
    base = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    variants = [("params.yaml", base)]
    variants.append(("every source", {**base, "datasets": known_sources()}))
    for source in ("demo", "mmad"):
        variants.append((f"benchmark {source}", {**base, "benchmark": {**base["benchmark"], "source": source}}))
    for family in known_families():
        variants.append((f"family {family}", {**base, "model": {**base["model"], "family": family}}))
    return variants


def _plugin(path: Path) -> bool:
    """A file of a source's or a model family's own package (selected per stage by params)."""
    if not path.is_relative_to(PACKAGE):
        return False
    parts = path.relative_to(PACKAGE).parts  # sources/<key>/... or models/families/<family>/...
    return (parts[0] == "sources" and len(parts) > 2) or (parts[:2] == ("models", "families") and len(parts) > 3)


def _relative(paths: set[Path]) -> list[str]:
    return sorted(path.relative_to(REPO).as_posix() for path in paths)


def test_deps_cover_exactly_the_code_each_stage_runs() -> None:
    """Per stage and params variant: every module run is covered; every module covered is run.

    A stage's deps are one template for every variant (every source of a ``foreach``, every
    family), so shared code that any variant runs may be listed; a plugin's own package must be
    exactly the one its params select.
    """
    runs: dict[str, list[tuple[str, set[Path], set[Path]]]] = {}
    for variant, params in _variants():
        for name, stage in resolved_stages(params).items():
            deps = [_dep_name(dep) for dep in stage.get("deps", [])]
            absent = [dep for dep in deps if not (REPO / dep).exists() and not dep.startswith(("data/", "models/", "metrics/"))]
            assert not absent, f"{name} with {variant}: deps that do not exist: {absent}"
            runs.setdefault(name, []).append((variant, run_code(stage, params), covered(deps)))
    # one template per dvc.yaml stage: a foreach stage's items (fetch@demo, fetch@realiad) share it
    shared: dict[str, set[Path]] = {}
    for name, cases in runs.items():
        shared.setdefault(name.split("@")[0], set()).update(p for _, ran, _ in cases for p in ran if not _plugin(p))
    problems = []
    for name, cases in runs.items():
        for variant, ran, listed in cases:
            if uncovered := ran - listed:
                problems.append(f"{name} with {variant}: runs code its deps miss: {_relative(uncovered)}")
            if extra := listed - ran - shared[name.split("@")[0]]:
                problems.append(f"{name} with {variant}: depends on code it never runs: {_relative(extra)}")
    assert not problems, "\n".join(problems)


def test_closure_follows_imports_inside_functions(tmp_path: Path) -> None:
    """The walker itself: a function-level import counts, and so does a package's __init__."""
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from eiad.ddqa.boxes import box_iou\n")
    files = {path.relative_to(REPO).as_posix() for path in closure([script]) if path != script}
    assert files == {"eiad/__init__.py", "eiad/ddqa/__init__.py", "eiad/ddqa/boxes.py"}
