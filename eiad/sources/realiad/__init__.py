"""Real-IAD (CVPR 2024; Hugging Face ``Real-IAD/Real-IAD``, gated): fetcher and organiser.

Fetched from the Hub: ``realiad_jsons.zip`` and, per chosen category, ``realiad_<res>/<cat>.zip``
at the chosen resolution (256, 512, 1024 or raw). Native layout after unpacking::

    realiad_jsons/<cat>.json        {"meta": {"prefix": "<cat>/", "normal_class": "OK"},
                                     "train": [...], "test": [...]}, each sample
                                     {category, anomaly_class, image_path, mask_path}
    <cat>/OK/S0001/<cat>_0001_OK_C1_<ts>.jpg
    <cat>/NG/<CODE>/S0057/<cat>_0057_NG_<CODE>_C1_<ts>.jpg   (+ the .png mask beside it)

The JSON files decide, never the folders: about 27k images under ``NG/`` carry
``anomaly_class: "OK"`` (a view where the defect is not visible) and are normal. The five
camera views of one physical sample (``<cat>_<NNNN>``) share a group, so a split never
separates them; the JSON files' ``train`` and ``test`` lists are the official split
(``ddqa.split: official``). Masks are PNG but are thresholded like any other (and placed as
they are when they already are 0/255).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eiad.data.fetching import fetch_hub_archives
from eiad.data.hub import HubParams
from eiad.data.images import ORGANISED_THRESHOLD, MaskFile
from eiad.data.layout import NativeSample, OrganiseParams, Split
from eiad.errors import ConfigError, DataError, LayoutError
from eiad.sources import Source

# Real-IAD's defect codes in words (its paper's table)
DEFECT_CODES = {
    "AK": "pit",
    "BX": "deformation",
    "CH": "abrasion",
    "HS": "scratch",
    "PS": "damage",
    "QS": "missing_parts",
    "YW": "foreign_objects",
    "ZW": "contamination",
}
CATEGORIES = (
    "audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood", "mint", "mounts", "pcb",
    "phone_battery", "plastic_nut", "plastic_plug", "porcelain_doll", "regulator", "rolled_strip_base",
    "sim_card_set", "switch", "tape", "terminalblock", "toothbrush", "toy", "toy_brick", "transistor1", "u_block",
    "usb", "usb_adaptor", "vcpill", "wooden_beads", "woodstick", "zipper",
)
SPLITS: tuple[Split, ...] = ("train", "test")  # the JSON files' lists: Real-IAD's official split
_SAMPLE = re.compile(r"^(?P<sample>.+?_\d{4})_(OK|NG)")


@dataclass(frozen=True)
class RealIADFetchParams(HubParams):
    resolution: Literal["256", "512", "1024", "raw"]
    categories: tuple[str, ...]  # empty: all 30
    keep_archives: bool  # keep the verified archives in the downloads folder after unpacking them

    def __post_init__(self) -> None:
        unknown = sorted(set(self.categories) - set(CATEGORIES))
        if unknown:
            raise ConfigError(f"sources.realiad.fetch.categories: unknown {unknown}; Real-IAD has {list(CATEGORIES)}")


@dataclass(frozen=True)
class RealIADOrganiseParams(OrganiseParams):
    categories: tuple[str, ...]  # empty: every category with a JSON file and its image folder


def _group(category: str, image_path: str, where: Path) -> str:
    match = _SAMPLE.match(Path(image_path).name)
    if not match:
        raise DataError(where, f"image name {Path(image_path).name!r} is not <cat>_<NNNN>_<OK|NG>_...")
    return f"{category}-{match['sample']}"


def _samples(json_file: Path) -> tuple[str, str, list[tuple[Split, dict[str, Any]]]]:
    """The category's path prefix, its normal class name and every sample with its official split."""
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
        prefix, normal = data["meta"]["prefix"], data["meta"].get("normal_class", "OK")
        samples = [(split, entry) for split in SPLITS for entry in data.get(split, [])]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(json_file, f"is not a Real-IAD category file (meta.prefix, train, test): {err}") from err
    return prefix, normal, samples


class RealIADSource(Source):
    key = "realiad"
    name = "Real-IAD"
    fetch_params = RealIADFetchParams
    organise_params = RealIADOrganiseParams

    def download(self, config: RealIADFetchParams, dest: Path) -> None:
        archives = {"realiad_jsons.zip": "realiad_jsons"}
        archives.update({f"realiad_{config.resolution}/{c}.zip": c for c in config.categories or CATEGORIES})
        fetch_hub_archives(config.repo(), archives, dest, self.name, config.keep_archives)

    def catalogue(self, config: RealIADOrganiseParams, raw: Path) -> list[NativeSample]:
        jsons = raw / "realiad_jsons"
        if not jsons.is_dir():
            raise LayoutError(raw, "not a Real-IAD folder: realiad_jsons/ is missing")
        # realiad_jsons.zip describes all 30 categories; only the fetched ones have images
        described = sorted(p.stem for p in jsons.glob("*.json"))
        available = [category for category in described if (raw / category).is_dir()]
        categories = list(config.categories) or available
        if not categories:
            raise LayoutError(raw, f"no category folder beside realiad_jsons/ (JSON files for {described})")
        missing = sorted(set(categories) - set(available))
        if missing:
            raise LayoutError(raw, f"categories {missing} need both realiad_jsons/<category>.json and a "
                                   f"<category>/ folder; complete: {available}")
        samples = []
        for category in categories:
            json_file = jsons / f"{category}.json"
            prefix, normal, entries = _samples(json_file)
            root = raw / prefix.rstrip("/")
            samples.extend(_native(root, category, normal, split, entry, json_file) for split, entry in entries)
        return samples


def _native(root: Path, category: str, normal: str, split: Split, sample: dict[str, Any],
            json_file: Path) -> NativeSample:
    image = root / sample["image_path"]
    stem = Path(sample["image_path"]).stem
    group = _group(category, sample["image_path"], json_file)
    if sample.get("anomaly_class") == normal or not sample.get("mask_path"):
        return NativeSample(category, None, stem, image, None, group, split)
    code = sample["anomaly_class"]
    if code not in DEFECT_CODES:
        raise DataError(json_file, f"unknown Real-IAD defect code {code!r} for {sample['image_path']}; "
                                   f"known: {sorted(DEFECT_CODES)}")
    mask = MaskFile(root / sample["mask_path"], ORGANISED_THRESHOLD)
    return NativeSample(category, DEFECT_CODES[code], stem, image, mask, group, split)


SOURCE = RealIADSource()
