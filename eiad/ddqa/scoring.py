"""Scoring a model's answers to DDQA test records: letters for the choice tasks, boxes for DFM."""

from __future__ import annotations

from typing import Any

from eiad.benchmark.parsing import parse_answer
from eiad.data.layout import OK
from eiad.ddqa.boxes import boxes_iou, parse_boxes

Rows = list[dict[str, Any]]


def score_choices(records: list[dict[str, Any]], outputs: list[str], balanced: bool = False) -> tuple[dict[str, Any], Rows]:
    """Accuracy (and, if ``balanced``, the mean of the accuracies on normal and defective images)."""
    hits: dict[bool, list[bool]] = {True: [], False: []}  # keyed by "is a normal image"
    rows, unparsed = [], 0
    for record, output in zip(records, outputs):
        letter, status = parse_answer(output, record["choices"])
        unparsed += status == "unparsed"
        correct = letter == record["messages"][1]["content"]
        hits[record["defect"] == OK].append(correct)
        rows.append({"answer": record["messages"][1]["content"], "output": output, "parsed": letter, "correct": correct})
    every = hits[True] + hits[False]
    metrics: dict[str, Any] = {"n": len(every), "accuracy": round(100 * sum(every) / len(every), 2),
                               "unparsed": unparsed}
    if balanced and hits[True] and hits[False]:
        sides = [sum(h) / len(h) for h in hits.values()]
        metrics["balanced_accuracy"] = round(100 * sum(sides) / 2, 2)
    return metrics, rows


def score_boxes(records: list[dict[str, Any]], outputs: list[str]) -> tuple[dict[str, Any], Rows]:
    """The share of answers that parse as boxes, the mean IoU and the share with IoU >= 0.5."""
    ious, rows = [], []
    for record, output in zip(records, outputs):
        truth = parse_boxes(record["messages"][1]["content"])
        predicted = parse_boxes(output)
        iou = boxes_iou(predicted, truth) if predicted else 0.0
        ious.append((bool(predicted), iou))
        rows.append({"answer": record["messages"][1]["content"], "output": output, "iou": round(iou, 4)})
    n = len(ious)
    return {
        "n": n,
        "parse_rate": round(100 * sum(parsed for parsed, _ in ious) / n, 2),
        "mean_iou": round(sum(iou for _, iou in ious) / n, 4),
        "iou_ge_0_5": round(100 * sum(iou >= 0.5 for _, iou in ious) / n, 2),
    }, rows
