"""Tuned against base on the same questions: paired differences with bootstrap intervals.

Both models' predictions are resampled with the same images (MMAD) or split groups (DDQA), so
the interval is that of the difference itself, not of two independent scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from eiad.benchmark.mmad import MERGED_TYPES
from eiad.benchmark.scoring import Scored, paired
from eiad.ddqa.scoring import group_weights, task_figures
from eiad.ddqa.tasks import TASKS
from eiad.io import atomic_write_json, read_jsonl
from eiad.stats import BootstrapSettings, interval


def mmad_scored(predictions: Path) -> list[Scored]:
    rows = json.loads((predictions / "mmad_answers.json").read_text(encoding="utf-8"))
    return [Scored(row["image"], MERGED_TYPES.get(row["question_type"], row["question_type"]),
                   row["gpt_answer"] == row["correct_answer"]) for row in rows]


def ddqa_paired(base: Path, tuned: Path, ddqa_test: Path, bootstrap: BootstrapSettings) -> dict[str, Any]:
    """Per task, tuned minus base of the task's headline figure, groups resampled alike for both."""
    records = read_jsonl(ddqa_test)
    rows = {name: read_jsonl(folder / "ddqa_predictions.jsonl") for name, folder in (("base", base), ("tuned", tuned))}
    result = {}
    for name in sorted({record["task"] for record in records}):
        task, chosen = TASKS[name], [record for record in records if record["task"] == name]
        weights = np.vstack([np.ones((1, len(chosen))), group_weights(chosen, bootstrap.samples, bootstrap.seed)])
        values = {}
        for model, predictions in rows.items():
            mine = [row for row in predictions if row["task"] == name]
            figures = task_figures(chosen, mine, task.balanced)
            figure = task.headline_figure(figures)
            values[model] = figures[figure](weights)
        difference = values["tuned"] - values["base"]
        result[name] = {"figure": figure, "difference": round(float(difference[0]), 4), **dict(
            zip(("low", "high"), interval(difference[1:])))}
    return result


def compare(base: Path, tuned: Path, ddqa_test: Path, metrics: Path, details: Path,
            bootstrap: BootstrapSettings) -> dict[str, Any]:
    """Write the paired comparison: the headline (``metrics``, a DVC metric) and every figure (``details``)."""
    mmad = paired(mmad_scored(base), mmad_scored(tuned), bootstrap.samples, bootstrap.seed)
    ddqa = ddqa_paired(base, tuned, ddqa_test, bootstrap)
    average = mmad["Average"]
    atomic_write_json(metrics, {"average": average["difference"], "low": average["low"], "high": average["high"],
                                "tuned_only": mmad["tuned_only"], "base_only": mmad["base_only"]})
    atomic_write_json(details, {"mmad": mmad, "ddqa": ddqa})
    return {"mmad": mmad, "ddqa": ddqa}
