"""MMAD's summary table, two ways, with bootstrap intervals and a paired comparison.

* **Ours** (:func:`summarise`): every question counts, an unparseable answer is wrong; a cell is
  the accuracy over the questions of that dataset and type that exist; Anomaly Detection is the
  balanced accuracy over the sides (normal, defective) present; a dataset's Average is the mean of
  its cells, the top-level Average the unweighted mean over datasets.
* **MMAD's script** (:func:`mmad_script_table`): exactly what MMAD's ``summary.py``
  (``caculate_accuracy_mmad``, with ``show_overkill_miss``) computes from an answers file, its
  quirks included (REFERENCE.md §1a): answers whose ``gpt_answer`` is not a letter A-E are removed
  from the list while it is iterated, so the entry after each is skipped too; every question type
  seen anywhere is a column of every dataset (0 where a dataset has none); an AD cell with one side
  missing counts that side as 0.

Intervals are 95% percentile bootstraps over images (an image's questions are not independent),
resampled within each dataset, seeded; a paired comparison resamples the same images for both
models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eiad.benchmark.mmad import MERGED_TYPES, NORMAL_FLAG
from eiad.stats import interval, unit_weights

TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
AD = TYPES[0]
# the column heads of MMAD's tables
SHORT_TYPES = dict(zip(TYPES, ("AD", "DC", "DL", "DD", "DA", "OC", "OA")))
LETTERS = ("A", "B", "C", "D", "E")
SIDES = ("normal", "anomalous")  # the two halves of Anomaly Detection's balanced accuracy


@dataclass(frozen=True)
class Scored:
    """One answered question as the summary needs it; ``type`` is the reported column."""

    image: str
    type: str
    correct: bool

    @property
    def dataset(self) -> str:
        return self.image.split("/")[0]

    @property
    def column(self) -> str:
        if self.type != AD:
            return self.type
        return SIDES[0] if NORMAL_FLAG in self.image else SIDES[1]


@dataclass
class Tally:
    """Correct and asked counts per image (rows) and (dataset, column) cell (columns)."""

    images: list[str]
    datasets: list[str]  # of each image
    cells: list[tuple[str, str]]
    correct: np.ndarray
    asked: np.ndarray

    @classmethod
    def of(cls, scored: Sequence[Scored]) -> Tally:
        images = list(dict.fromkeys(item.image for item in scored))
        cells = sorted({(item.dataset, item.column) for item in scored})
        row, column = {image: i for i, image in enumerate(images)}, {cell: j for j, cell in enumerate(cells)}
        correct, asked = np.zeros((len(images), len(cells))), np.zeros((len(images), len(cells)))
        for item in scored:
            i, j = row[item.image], column[(item.dataset, item.column)]
            asked[i, j] += 1
            correct[i, j] += item.correct
        return cls(images, [image.split("/")[0] for image in images], cells, correct, asked)

    def resampling_weights(self, samples: int, seed: int) -> np.ndarray:
        """``samples`` x images counts: each replicate draws every dataset's images with replacement."""
        return unit_weights(self.images, self.datasets, samples, seed)

    def table(self, weights: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
        """Every figure of our summary, one value per row of ``weights`` (a replicate, or the data itself)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = 100 * (weights @ self.correct) / (weights @ self.asked)
        by_cell = {cell: accuracy[:, j] for j, cell in enumerate(self.cells)}
        figures: dict[tuple[str, ...], np.ndarray] = {}
        for dataset in sorted({d for d, _ in self.cells}):
            sides = [by_cell[(dataset, side)] for side in SIDES if (dataset, side) in by_cell]
            row = {AD: _nanmean(sides)} if sides else {}
            row.update({name: by_cell[(dataset, name)] for name in TYPES[1:] if (dataset, name) in by_cell})
            figures.update({("per_dataset", dataset, name): value for name, value in row.items()})
            figures[("per_dataset", dataset, "Average")] = _nanmean(list(row.values()))
            for side, name in zip(SIDES, ("Overkill", "Miss")):
                if (dataset, side) in by_cell:
                    figures[("per_dataset", dataset, name)] = 100 - by_cell[(dataset, side)]
        per_dataset = list(figures.items())
        for name in (*TYPES, "Average", "Overkill", "Miss"):
            rows = [value for (_, _, metric), value in per_dataset if metric == name]
            if rows:
                figures[("average", name)] = _nanmean(rows)
        return figures


def _nanmean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    stacked = np.stack(arrays)
    present = ~np.isnan(stacked)
    total = np.where(present, stacked, 0).sum(axis=0)
    count = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nest(figures: dict[tuple[str, ...], float]) -> dict[str, Any]:
    """``{("average", "AD"): x, ("per_dataset", "Demo", "AD"): y}`` as nested dicts, rounded."""
    nested: dict[str, Any] = {}
    for key, value in figures.items():
        node = nested
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = round(float(value), 2)
    return nested


def summarise(scored: Sequence[Scored]) -> dict[str, Any]:
    """Our table in percent: ``average`` (per type, Average, Overkill, Miss) and ``per_dataset``."""
    tally = Tally.of(scored)
    figures = {key: value[0] for key, value in tally.table(np.ones((1, len(tally.images)))).items()}
    return _nest(figures)


def intervals(scored: Sequence[Scored], samples: int, seed: int) -> dict[str, Any]:
    """The 95% bootstrap interval ``[low, high]`` of every figure of :func:`summarise`."""
    tally = Tally.of(scored)
    replicates = tally.table(tally.resampling_weights(samples, seed))
    bounds = {key: interval(value) for key, value in replicates.items() if not np.isnan(value).all()}
    nested: dict[str, Any] = {}
    for key, value in bounds.items():
        node = nested
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return nested


def paired(base: Sequence[Scored], tuned: Sequence[Scored], samples: int, seed: int) -> dict[str, Any]:
    """Tuned minus base on the same questions: the Average and each type's average, with intervals
    from the same resampled images, and how many questions each model got that the other did not."""
    if [(s.image, s.type) for s in base] != [(s.image, s.type) for s in tuned]:
        raise ValueError("a paired comparison needs the same questions, in the same order, for both models")
    one, two = Tally.of(base), Tally.of(tuned)
    weights = one.resampling_weights(samples, seed)
    point = np.ones((1, len(one.images)))
    before, after = one.table(np.vstack([point, weights])), two.table(np.vstack([point, weights]))
    result: dict[str, Any] = {}
    for key in (k for k in after if k[0] == "average" and k in before and k[1] not in ("Overkill", "Miss")):
        difference = after[key] - before[key]
        low, high = interval(difference[1:])
        result[key[1]] = {"difference": round(float(difference[0]), 2), "low": low, "high": high}
    result["tuned_only"] = sum(t.correct and not b.correct for b, t in zip(base, tuned))
    result["base_only"] = sum(b.correct and not t.correct for b, t in zip(base, tuned))
    result["questions"] = len(base)
    return result


def mmad_script_table(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """MMAD's ``caculate_accuracy_mmad(..., show_overkill_miss=True)`` on an answers file, rounded.

    The loop below keeps the script's order of operations, including removing invalid answers
    from the list being iterated (which skips the following entry), so the figures are the ones
    it prints for the same file.
    """
    entries = list(answers)
    datasets, types = [], []
    for answer in entries:
        dataset, kind = answer["image"].split("/")[0], MERGED_TYPES.get(answer["question_type"], answer["question_type"])
        datasets += [dataset] if dataset not in datasets else []
        types += [kind] if kind not in types else []
    stats = {d: {t: [0, 0] for t in types} for d in datasets}  # [asked, correct]
    sides = {d: {side: [0, 0] for side in SIDES} for d in datasets}
    for answer in entries:  # the script removes from the list it iterates: the next entry is skipped
        dataset, kind = answer["image"].split("/")[0], MERGED_TYPES.get(answer["question_type"], answer["question_type"])
        if answer["correct_answer"] not in LETTERS or answer["gpt_answer"] not in LETTERS:
            entries.remove(answer)
            continue
        right = answer["correct_answer"] == answer["gpt_answer"]
        stats[dataset][kind][0] += 1
        stats[dataset][kind][1] += right
        if kind == AD:
            side = sides[dataset][SIDES[0] if NORMAL_FLAG in answer["image"] else SIDES[1]]
            side[0] += 1
            side[1] += right
    rows: dict[str, dict[str, float]] = {}
    for dataset in datasets:
        row = {kind: 100 * correct / asked if asked else 0.0 for kind, (asked, correct) in stats[dataset].items()}
        normal, anomalous = (correct / asked if asked else 0.0 for asked, correct in sides[dataset].values())
        if AD in row:
            row[AD] = (normal + anomalous) / 2 * 100
        row["Average"] = sum(row.values()) / len(row)
        row["Overkill"], row["Miss"] = (1 - normal) * 100, (1 - anomalous) * 100
        rows[dataset] = row
    columns = [*types, "Average", "Overkill", "Miss"]
    average = {column: sum(row[column] for row in rows.values()) / len(rows) for column in columns}
    return {"average": {k: round(v, 2) for k, v in average.items()},
            "per_dataset": {d: {k: round(v, 2) for k, v in row.items()} for d, row in rows.items()}}
