"""DFM's answer: normalised pixel-edge boxes as text, read back and compared by IoU."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")


def format_boxes(boxes: list[tuple[float, ...]]) -> str:
    """``[x1, y1, x2, y2]`` for one box, ``[[...], [...]]`` for several; 3 decimals."""
    texts = ["[" + ", ".join(f"{value:.3f}" for value in box) + "]" for box in boxes]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """Every ``[x1, y1, x2, y2]`` in ``text`` (what :func:`format_boxes` writes, or a model's answer)."""
    return [tuple(float(v) for v in match) for match in _BOX.findall(text)]  # type: ignore[misc]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def boxes_iou(predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> float:
    """Mean over true boxes of the best IoU with a predicted box (0 for a box nobody found)."""
    return sum(max((box_iou(p, t) for p in predicted), default=0.0) for t in truth) / len(truth)
