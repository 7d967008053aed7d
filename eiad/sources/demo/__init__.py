"""The offline demo source: procedural inspection images in a native layout of their own.

Native layout written by :meth:`DemoSource.fetch` (deliberately not the unified one)::

    inspection.json            {"format": "eiad-demo-v1", "captures": [{file, product, part,
                                 verdict: "OK"|"NG", defect, label}, ...]}
    captures/<product>/<part>_v<view>.png
    labels/<product>/<part>_v<view>.png    label map: 1 = defect pixel, 0 = background

Each physical part is photographed ``views_per_part`` times in different poses and lighting;
its views form one group so that a train/test split never separates them.

:meth:`DemoSource.fetch_benchmark` writes held-out images (a separate seed) as an
MMAD-format benchmark: ``mmad.json``, query images, masks and normal templates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from eiad.benchmark.mmad import benchmark_entry, conversation_item, write_benchmark
from eiad.data.geometry import GRID_CELLS, grid_cell, regions
from eiad.data.images import MaskFile, encode_mask_png
from eiad.data.layout import NativeSample, OrganiseParams, check_name
from eiad.errors import ConfigError, DataError, LayoutError
from eiad.io import atomic_write_json
from eiad.params import Params
from eiad.questions import lettered, pick_distractors, readable
from eiad.seeding import stable_random, stable_rng
from eiad.sources import Source
from eiad.sources.demo.defects import DEFECTS
from eiad.sources.demo.products import PRODUCTS
from eiad.sources.demo.render import Capture, RenderConfig, make_part, random_pose, render

FORMAT = "eiad-demo-v1"
NATIVE_ENTRIES = {"inspection.json", "captures", "labels"}


@dataclass(frozen=True)
class DemoFetchParams(Params):
    seed: int
    products: tuple[str, ...]
    defects: tuple[str, ...]
    normal_parts_per_product: int
    defective_parts_per_defect: int  # per product and defect
    views_per_part: int  # photographs of each physical part (one split group)
    render: RenderConfig

    def __post_init__(self) -> None:
        _check_vocabulary(self.products, PRODUCTS, "products")
        _check_vocabulary(self.defects, DEFECTS, "defects")
        if min(self.normal_parts_per_product, self.defective_parts_per_defect, self.views_per_part) < 1:
            raise ConfigError("demo counts (parts per product/defect, views per part) must be at least 1")


@dataclass(frozen=True)
class DemoBenchmarkParams(Params):
    seed: int
    products: tuple[str, ...]
    defects: tuple[str, ...]
    normal_per_product: int
    defective_per_defect: int
    templates_per_product: int
    render: RenderConfig

    def __post_init__(self) -> None:
        _check_vocabulary(self.products, PRODUCTS, "products")
        _check_vocabulary(self.defects, DEFECTS, "defects")
        if self.templates_per_product < 1:
            raise ConfigError("templates_per_product must be at least 1")


def _check_vocabulary(chosen: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        raise ConfigError(f"demo {what}: unknown or empty {unknown or list(chosen)}; known: {list(known)}")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"demo {what}: duplicates in {list(chosen)}")


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _photograph(
    seed: int, product: str, defect: str | None, key: str, views: int, render_config: RenderConfig
) -> list[Capture]:
    """All views of one part; determined by (seed, product, defect, key) alone."""
    rng = stable_rng(seed, product, defect or "normal", key)
    part = make_part(product, defect, render_config, rng)
    return [render(part, random_pose(rng), render_config, rng) for _ in range(views)]


class DemoSource(Source):
    key = "demo"
    name = "Demo"
    fetch_params = DemoFetchParams
    organise_params = OrganiseParams
    benchmark_params = DemoBenchmarkParams

    # --- fetch: generate the native layout -------------------------------------------------

    def download(self, config: DemoFetchParams, dest: Path) -> None:
        plan = [
            (product, label, index)
            for product in config.products
            for label, count in [("OK", config.normal_parts_per_product)]
            + [(defect, config.defective_parts_per_defect) for defect in config.defects]
            for index in range(count)
        ]
        captures = []
        serial: dict[str, int] = {}
        for product, label, index in tqdm(plan, desc="demo: rendering parts", unit="part"):
            serial[product] = serial.get(product, 0) + 1
            part_id = f"S{serial[product]:05d}"
            defect = None if label == "OK" else label
            views = _photograph(config.seed, product, defect, str(index), config.views_per_part, config.render)
            for view, capture in enumerate(views):
                name = f"{product}/{part_id}_v{view}.png"
                _save_png(capture.image, dest / "captures" / name)
                entry = {"file": f"captures/{name}", "product": product, "part": f"{product}-{part_id}",
                         "verdict": "OK", "defect": None, "label": None}
                if label != "OK":
                    _save_png(capture.mask.astype(np.uint8), dest / "labels" / name)
                    entry.update(verdict="NG", defect=label, label=f"labels/{name}")
                captures.append(entry)
        atomic_write_json(dest / "inspection.json", {"format": FORMAT, "captures": captures})

    # --- organise: native layout -> unified layout -----------------------------------------

    def catalogue(self, config: OrganiseParams, raw: Path) -> list[NativeSample]:
        samples = []
        for entry in _read_inspection_log(raw):
            image = raw / entry["file"]
            stem = Path(entry["file"]).stem
            if entry["verdict"] == "OK":
                samples.append(NativeSample(entry["product"], None, stem, image, None, entry["part"]))
            else:
                label = raw / entry["label"]
                # label maps: 1 marks a defect pixel
                samples.append(NativeSample(entry["product"], entry["defect"], stem, image,
                                            MaskFile(label, threshold=0), entry["part"]))
        return samples

    # --- benchmark: held-out images as an MMAD-format benchmark ----------------------------

    def download_benchmark(self, config: DemoBenchmarkParams, dest: Path) -> None:
        benchmark: dict[str, Any] = {}
        for product in tqdm(config.products, desc="demo benchmark: products", unit="product"):
            root = f"{self.name}/{product}"
            templates = []
            for index in range(config.templates_per_product):
                (capture,) = _photograph(config.seed, product, None, f"template-{index}", 1, config.render)
                templates.append((f"{root}/train/good/{index:03d}.png", capture.image))
                _save_png(capture.image, dest / templates[-1][0])
            plan = [("good", config.normal_per_product)] + [(d, config.defective_per_defect) for d in config.defects]
            for label, count in plan:
                for index in range(count):
                    defect = None if label == "good" else label
                    (capture,) = _photograph(config.seed, product, defect, f"query-{index}", 1, config.render)
                    key = f"{root}/test/{label}/{index:03d}.png"
                    _save_png(capture.image, dest / key)
                    mask_path = None
                    if label != "good":
                        mask_path = f"{root}/ground_truth/{label}/{index:03d}_mask.png"
                        (dest / mask_path).parent.mkdir(parents=True, exist_ok=True)
                        (dest / mask_path).write_bytes(encode_mask_png(capture.mask))
                    benchmark[key] = benchmark_entry(
                        key, mask_path, _benchmark_questions(config, product, label, key, capture),
                        similar_templates=_most_similar(capture.image, templates),
                        random_templates=stable_random(config.seed, key).sample([path for path, _ in templates],
                                                                                len(templates)),
                    )
        write_benchmark(dest, benchmark)


def _read_inspection_log(raw: Path) -> list[dict[str, Any]]:
    if not raw.is_dir():
        raise LayoutError(raw, "native Demo folder does not exist: run the fetch stage first")
    unexpected = sorted(p.name for p in raw.iterdir() if p.name not in NATIVE_ENTRIES)
    if unexpected:
        raise LayoutError(raw, f"unexpected entries {unexpected} in the native Demo layout; "
                               f"expected only {sorted(NATIVE_ENTRIES)}")
    log_path = raw / "inspection.json"
    try:
        log = json.loads(log_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayoutError(log_path, "missing: the native Demo layout needs its inspection log") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(log_path, f"is not valid JSON ({err})") from err
    if not isinstance(log, dict) or log.get("format") != FORMAT or not isinstance(log.get("captures"), list):
        raise DataError(log_path, f"is not a {FORMAT} inspection log (needs 'format' and a 'captures' list)")
    captures = log["captures"]
    products = set()
    for number, entry in enumerate(captures):
        missing = {"file", "product", "part", "verdict", "defect", "label"} - set(entry)
        if missing or entry["verdict"] not in ("OK", "NG") or (entry["verdict"] == "NG") != bool(entry["label"]):
            raise DataError(log_path, f"capture #{number} is malformed: {entry!r}")
        check_name(entry["product"], "product", log_path)
        if entry["verdict"] == "NG":
            check_name(entry["defect"], "defect", log_path)
        products.add(entry["product"])
    for folder in ("captures", "labels"):
        for child in sorted((raw / folder).iterdir()) if (raw / folder).is_dir() else []:
            if not child.is_dir() or child.name not in products:
                raise LayoutError(child, f"unexpected entry in {folder}/: not a product of the inspection log "
                                         f"({sorted(products)})")
    return captures


def _most_similar(image: np.ndarray, templates: list[tuple[str, np.ndarray]]) -> list[str]:
    """Template paths ordered by pixel distance to ``image`` (MMAD's 'similar' templates)."""
    distance = [float(np.mean((image.astype(np.float32) - t.astype(np.float32)) ** 2)) for _, t in templates]
    return [templates[i][0] for i in np.argsort(distance, kind="stable")]


def _benchmark_questions(
    config: DemoBenchmarkParams, product: str, label: str, key: str, capture: Capture
) -> list[dict[str, Any]]:
    rng = stable_random(config.seed, key, "questions")
    defective = label != "good"

    def question(kind: str, text: str, correct: str, pool: list[str]) -> dict[str, Any]:
        options, answer = lettered(correct, pick_distractors(correct, pool, 3, rng), pool, rng, shuffle=True)
        return conversation_item(text, options, answer, kind)

    conversation = [question("Anomaly Detection", "Is there any defect in the object?",
                             "Yes" if defective else "No", ["Yes", "No"])]
    if defective:
        largest = regions(capture.mask)[0]
        height, width = capture.mask.shape
        conversation.append(question("Defect Classification", "What is the type of the defect?",
                                     readable(label), [readable(d) for d in config.defects]))
        conversation.append(question("Defect Localization", "Where is the defect located in the image?",
                                     grid_cell(largest.centroid, width, height), list(GRID_CELLS)))
    conversation.append(question("Object Classification", "What kind of product is shown in the image?",
                                 readable(product), [readable(p) for p in config.products]))
    return conversation


SOURCE = DemoSource()
