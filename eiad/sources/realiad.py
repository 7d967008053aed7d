"""Real-IAD (CVPR 2024; Hugging Face ``Real-IAD/Real-IAD``, gated): organiser.

Native layout, per category (after unpacking ``realiad_<res>/<cat>.zip`` and ``realiad_jsons``)::

    realiad_jsons/<cat>.json        {"meta": {"prefix": "<cat>/", "normal_class": "OK"},
                                     "train": [...], "test": [...]}, each sample
                                     {category, anomaly_class, image_path, mask_path}
    <cat>/OK/S0001/<cat>_0001_OK_C1_<ts>.jpg
    <cat>/NG/<CODE>/S0057/<cat>_0057_NG_<CODE>_C1_<ts>.jpg   (+ the .png mask beside it)

The JSON files decide, never the folders: about 27k images under ``NG/`` carry
``anomaly_class: "OK"`` (a view where the defect is not visible) and are normal. The five
camera views of one physical sample (``<cat>_<NNNN>``) share a group, so a split never
separates them. Masks are PNG but are thresholded like any other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eiad.errors import DataError, LayoutError
from eiad.layout import BadSamplePolicy, LayoutWriter, OrganiseReport
from eiad.masks import read_mask
from eiad.params import from_dict
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
_SAMPLE = re.compile(r"^(?P<sample>.+?_\d{4})_(OK|NG)")


@dataclass(frozen=True)
class RealIADOrganiseConfig:
    on_bad_sample: BadSamplePolicy = "error"
    categories: tuple[str, ...] = ()  # empty: every category with a JSON file


def _group(category: str, image_path: str, where: Path) -> str:
    match = _SAMPLE.match(Path(image_path).name)
    if not match:
        raise DataError(where, f"image name {Path(image_path).name!r} is not <cat>_<NNNN>_<OK|NG>_...")
    return f"{category}-{match['sample']}"


def _samples(json_file: Path) -> tuple[str, str, list[dict[str, Any]]]:
    """The category's path prefix, its normal class name and every sample of both splits."""
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
        prefix, normal = data["meta"]["prefix"], data["meta"].get("normal_class", "OK")
        samples = [*data.get("train", []), *data.get("test", [])]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(json_file, f"is not a Real-IAD category file (meta.prefix, train, test): {err}") from err
    return prefix, normal, samples


class RealIADSource(Source):
    key = "realiad"
    name = "Real-IAD"

    def organise(self, params: dict[str, Any], raw: Path, dest: Path) -> OrganiseReport:
        config = from_dict(RealIADOrganiseConfig, params, f"sources.{self.key}.organise")
        jsons = raw / "realiad_jsons"
        if not jsons.is_dir():
            raise LayoutError(raw, "not a Real-IAD folder: realiad_jsons/ is missing")
        available = sorted(p.stem for p in jsons.glob("*.json"))
        categories = list(config.categories) or available
        missing = sorted(set(categories) - set(available))
        if missing:
            raise LayoutError(jsons, f"no JSON file for categories {missing}; found {available}")
        writer = LayoutWriter(dest, self.name, config.on_bad_sample)
        for category in categories:
            json_file = jsons / f"{category}.json"
            prefix, normal, samples = _samples(json_file)
            for sample in tqdm(samples, desc=f"Real-IAD {category}", unit="image"):
                self._add(writer, raw / prefix.rstrip("/"), category, normal, sample, json_file)
        return writer.finish()

    @staticmethod
    def _add(
        writer: LayoutWriter, root: Path, category: str, normal: str, sample: dict[str, Any], json_file: Path
    ) -> None:
        image = root / sample["image_path"]
        stem = Path(sample["image_path"]).stem
        group = _group(category, sample["image_path"], json_file)
        if sample.get("anomaly_class") == normal or not sample.get("mask_path"):
            writer.add(category, None, stem, image, None, group)
            return
        code = sample["anomaly_class"]
        if code not in DEFECT_CODES:
            raise DataError(json_file, f"unknown Real-IAD defect code {code!r} for {sample['image_path']}; "
                                       f"known: {sorted(DEFECT_CODES)}")
        mask = root / sample["mask_path"]
        writer.add(category, DEFECT_CODES[code], stem, image, lambda width, height: read_mask(mask), group)


SOURCE = RealIADSource()
