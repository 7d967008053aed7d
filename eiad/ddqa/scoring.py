"""Scoring a model's answers to DDQA test records: letters for the choice tasks, boxes for DFM.

Every figure is computed from per-record values and weights, so the point estimate (weights of
one) and its bootstrap replicates (split groups resampled, see :mod:`eiad.stats`) share one
formula.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from eiad.benchmark.parsing import parse_answer
from eiad.data.layout import OK
from eiad.ddqa.boxes import boxes_iou, parse_boxes
from eiad.stats import interval, unit_weights

Rows = list[dict[str, Any]]
Keep = Literal["first", "last"]
Figure = Any  # (weights: replicates x records) -> one value per replicate


def score_choices(records: list[dict[str, Any]], outputs: list[str], keep: Keep = "last", balanced: bool = False,
                  ) -> tuple[dict[str, Any], Rows]:
    """Accuracy (and, if ``balanced``, the mean of the accuracies on normal and defective images)."""
    rows, unparsed = [], 0
    for record, output in zip(records, outputs):
        letter, status = parse_answer(output, record["choices"], keep)
        unparsed += status == "unparsed"
        answer = record["messages"][1]["content"]
        rows.append({"answer": answer, "output": output, "parsed": letter, "correct": letter == answer})
    correct = np.array([row["correct"] for row in rows], dtype=float)
    normal = np.array([record["defect"] == OK for record in records], dtype=float)
    figures = _choice_figures(correct, normal, balanced)
    return {"n": len(rows), **_point(figures, len(rows)), "unparsed": unparsed}, rows


def score_boxes(records: list[dict[str, Any]], outputs: list[str]) -> tuple[dict[str, Any], Rows]:
    """The share of answers that parse as boxes, the mean IoU and the share with IoU >= 0.5."""
    rows = []
    for record, output in zip(records, outputs):
        truth, predicted = parse_boxes(record["messages"][1]["content"]), parse_boxes(output)
        iou = boxes_iou(predicted, truth) if predicted else 0.0
        rows.append({"answer": record["messages"][1]["content"], "output": output, "parsed": bool(predicted),
                     "iou": round(iou, 4)})
    figures = _box_figures(np.array([row["parsed"] for row in rows], dtype=float),
                           np.array([row["iou"] for row in rows]))
    return {"n": len(rows), **_point(figures, len(rows))}, rows


def group_weights(records: list[dict[str, Any]], samples: int, seed: int) -> np.ndarray:
    """Bootstrap weights of the records: their split groups resampled within datasets."""
    return unit_weights([r["group"] for r in records], [r["source_dataset"] for r in records], samples, seed)


def task_figures(records: list[dict[str, Any]], rows: Rows, balanced: bool) -> dict[str, Figure]:
    """A task's figures as functions of record weights, from its scored rows."""
    if "iou" in rows[0]:
        return _box_figures(np.array([row["parsed"] for row in rows], dtype=float), np.array([row["iou"] for row in rows]))
    return _choice_figures(np.array([row["correct"] for row in rows], dtype=float),
                           np.array([record["defect"] == OK for record in records], dtype=float), balanced)


def task_intervals(records: list[dict[str, Any]], rows: Rows, balanced: bool, samples: int, seed: int,
                   ) -> dict[str, list[float]]:
    """The 95% bootstrap interval of each figure of a task, split groups resampled within datasets."""
    weights = group_weights(records, samples, seed)
    return {name: interval(figure(weights)) for name, figure in task_figures(records, rows, balanced).items()}


def _choice_figures(correct: np.ndarray, normal: np.ndarray, balanced: bool) -> dict[str, Figure]:
    def accuracy(weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        kept = weights if mask is None else weights * mask
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100 * (kept @ correct) / kept.sum(axis=1)

    figures: dict[str, Figure] = {"accuracy": accuracy}
    if balanced and normal.any() and (1 - normal).any():
        figures["balanced_accuracy"] = lambda w: (accuracy(w, normal) + accuracy(w, 1 - normal)) / 2
    return figures


def _box_figures(parsed: np.ndarray, iou: np.ndarray) -> dict[str, Figure]:
    def mean(values: np.ndarray) -> Figure:
        return lambda weights: (weights @ values) / weights.sum(axis=1)

    return {"parse_rate": lambda w: 100 * mean(parsed)(w), "mean_iou": mean(iou),
            "iou_ge_0_5": lambda w: 100 * mean((iou >= 0.5).astype(float))(w)}


def _point(figures: dict[str, Figure], records: int) -> dict[str, float]:
    ones = np.ones((1, records))
    return {name: round(float(figure(ones)[0]), 4 if name == "mean_iou" else 2) for name, figure in figures.items()}
