"""MMAD's summary table: accuracy per dataset and question type, balanced for Anomaly Detection."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)


@dataclass(frozen=True)
class Scored:
    """One answered question, as MMAD's summary needs it."""

    image: str
    type: str
    correct: bool

    @property
    def dataset(self) -> str:
        return self.image.split("/")[0]

    @property
    def is_normal(self) -> bool:
        return "good" in self.image


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarise(scored: Iterable[Scored]) -> dict[str, Any]:
    """MMAD's table in percent: per dataset and type (balanced accuracy for Anomaly Detection),
    each dataset's average over its types, Overkill and Miss, and the unweighted mean over datasets."""
    cells: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for item in scored:
        column = item.type
        if column == "Anomaly Detection":
            column = "normal" if item.is_normal else "anomalous"
        cells[item.dataset][column].append(item.correct)
    per_dataset: dict[str, dict[str, float]] = {}
    for dataset, columns in sorted(cells.items()):
        row: dict[str, float] = {}
        detection = [100 * _mean(columns[side]) for side in ("normal", "anomalous") if columns.get(side)]
        if detection:
            row["Anomaly Detection"] = _mean(detection)
        for name in TYPES[1:]:
            if columns.get(name):
                row[name] = 100 * _mean(columns[name])
        row["Average"] = _mean(list(row.values()))
        if columns.get("normal"):
            row["Overkill"] = 100 * (1 - _mean(columns["normal"]))
        if columns.get("anomalous"):
            row["Miss"] = 100 * (1 - _mean(columns["anomalous"]))
        per_dataset[dataset] = row
    names = [*TYPES, "Average", "Overkill", "Miss"]
    average = {
        name: _mean([row[name] for row in per_dataset.values() if name in row])
        for name in names
        if any(name in row for row in per_dataset.values())
    }
    return {"average": _rounded(average), "per_dataset": {d: _rounded(r) for d, r in per_dataset.items()}}


def _rounded(row: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 2) for key, value in row.items()}
