"""Shared fixtures: a small demo dataset generated once per test session."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from eiad.data.layout import Sample, read_manifest
from eiad.sources.demo import SOURCE as DEMO

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def params(dotted: str) -> Any:
    """A copy of the value at ``dotted`` in the repository's params.yaml."""
    node: Any = PARAMS
    for part in dotted.split("."):
        node = node[part]
    return copy.deepcopy(node)


def config(cls: Any, key: str, **changes: Any) -> Any:
    """``cls`` (a Params class) from params.yaml's ``key`` block with ``changes`` on top."""
    return cls.parse({**params(key), **changes}, key)

SMALL_RENDER = {"image_size": 40, "defect_area": [0.03, 0.15], "dark_contrast": [90, 125],
                "bright_contrast": [70, 95], "noise": 3.0}
VOCABULARY = {"products": ["washer", "plate", "screw_head", "pcb"],
              "defects": ["scratch", "hole", "crack", "stain", "missing_part"]}
SMALL_FETCH: dict[str, Any] = {
    "seed": 3,
    **VOCABULARY,
    "normal_parts_per_product": 3,
    "defective_parts_per_defect": 2,
    "views_per_part": 2,
    "render": SMALL_RENDER,
}
SMALL_BENCHMARK: dict[str, Any] = {
    "seed": 1000,
    **VOCABULARY,
    "normal_per_product": 2,
    "defective_per_defect": 1,
    "templates_per_product": 2,
    "render": SMALL_RENDER,
}


@pytest.fixture(scope="session")
def small_fetch_params() -> dict[str, Any]:
    return copy.deepcopy(SMALL_FETCH)


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw") / "demo"
    raw.mkdir()
    DEMO.fetch(copy.deepcopy(SMALL_FETCH), raw)
    return raw


@pytest.fixture(scope="session")
def demo_organised(tmp_path_factory: pytest.TempPathFactory, demo_raw: Path) -> Path:
    out = tmp_path_factory.mktemp("organised") / "demo"
    out.mkdir()
    DEMO.organise({"on_bad_sample": "error"}, demo_raw, out)
    return out


@pytest.fixture(scope="session")
def demo_samples(demo_organised: Path) -> list[Sample]:
    return read_manifest(demo_organised)


@pytest.fixture(scope="session")
def demo_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("benchmark")
    DEMO.fetch_benchmark(copy.deepcopy(SMALL_BENCHMARK), out)
    return out


def label_components(mask: Any) -> list[list[tuple[int, int]]]:
    """Connected components by a plain breadth-first flood fill (8-connectivity).

    Written independently of eiad.masks so that tests check the builder against it.
    """
    height, width = len(mask), len(mask[0])
    seen = [[False] * width for _ in range(height)]
    components = []
    for row in range(height):
        for col in range(width):
            if not mask[row][col] or seen[row][col]:
                continue
            seen[row][col] = True
            queue, pixels = [(row, col)], []
            while queue:
                r, c = queue.pop()
                pixels.append((r, c))
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < height and 0 <= cc < width and mask[rr][cc] and not seen[rr][cc]:
                            seen[rr][cc] = True
                            queue.append((rr, cc))
            components.append(pixels)
    return components


def shares_blocks(a: str | Path, b: str | Path) -> bool:
    """Whether two paths hold one file's bytes without a second copy: a hard link, or a reflink
    on a file system that makes them (btrfs, XFS), where the two files are the same size."""
    if os.path.samefile(a, b):
        return True
    return reflinks_here(Path(a).parent) and Path(a).stat().st_size == Path(b).stat().st_size


def reflinks_here(folder: Path) -> bool:
    """Whether the file system of ``folder`` makes reflinks (tried once on a scratch file)."""
    from eiad.data.files import place

    probe = Path(tempfile.mkdtemp(dir=folder))
    try:
        (probe / "a").write_bytes(b"probe")
        return place(probe / "a", probe / "b") == "reflink"
    finally:
        shutil.rmtree(probe)


def load_stage(name: str) -> Any:
    """The click command of ``stages/<name>.py`` (stages are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


TINY = {"seed": 0, "vocab_size": 320, "hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1,
        "intermediate_size": 64, "vision_depth": 1, "vision_width": 32, "vision_heads": 2, "patch_size": 14,
        "merge_size": 1, "image_size": 28, "initializer_range": 0.1}


def model_handle(family: str = "qwen2_vl", tiny: dict[str, Any] | None = None) -> Any:
    """The handle of a tiny model of ``family`` (TINY sizes unless given)."""
    from eiad.models.config import ModelConfig, ModelHandle

    model = {**params("model"), "family": family, "source": "tiny", "tiny": TINY if tiny is None else tiny}
    return ModelHandle.from_config(ModelConfig.parse(model, "model"))


@pytest.fixture(scope="session")
def small_ddqa(tmp_path_factory: pytest.TempPathFactory, demo_samples: list[Sample]) -> Path:
    from eiad.ddqa.build import DDQAConfig, build_ddqa

    out = tmp_path_factory.mktemp("ddqa")
    build_ddqa(demo_samples, out / "ddqa", out / "counts.json", config(DDQAConfig, "ddqa", test_ratio=0.5))
    return out / "ddqa"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, small_ddqa: Path) -> Path:
    from eiad.models.fetch import fetch_base_model

    out = tmp_path_factory.mktemp("models") / "base"
    out.mkdir()
    fetch_base_model(model_handle(), out, small_ddqa)
    return out


def train_config(lora: dict[str, Any] | None = None, launch: dict[str, Any] | None = None, **changes: Any) -> Any:
    """A TrainConfig from params.yaml's ``train`` block with ``changes`` (and LoRA or launch keys) on top."""
    from eiad.training.config import TrainConfig

    block = {**params("train"), **changes}
    block["lora"] = {**params("train.lora"), **(lora or {})}
    block["launch"] = {**params("train.launch"), **(launch or {})}
    return TrainConfig.parse(block, "train")
