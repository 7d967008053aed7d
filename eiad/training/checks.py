"""What ``train_lora`` checks before the model loads: every value in range and every record's
images readable, so that a bad setting or a missing image stops the stage in seconds rather than
hours into a GPU run (with ``encoding: lazy`` a record is only read when its batch comes up).

Every problem is reported, one line each, with the params key or the file and line.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from eiad.errors import EiadError
from eiad.training.config import TrainConfig

SHOWN = 20  # problems listed in full; the rest are counted


def check_training(config: TrainConfig, train_file: Path) -> None:
    """Raise, listing every problem, when ``config`` or the records of ``train_file`` cannot train."""
    problems = [*value_problems(config), *record_problems(train_file)]
    if problems:
        shown = "\n".join(problems[:SHOWN])
        rest = f"\n... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise EiadError(f"train_lora cannot start, {len(problems)} problem(s):\n{shown}{rest}")


def value_problems(config: TrainConfig) -> list[str]:
    """Out-of-range ``train`` values, as ``train.<key>: <problem>`` lines."""
    from transformers.trainer_utils import SchedulerType

    checks = [
        (config.learning_rate > 0, "learning_rate", f"must be > 0, got {config.learning_rate}"),
        (config.max_steps > 0 or config.epochs > 0, "max_steps",
         f"with epochs {config.epochs} trains no step: set max_steps > 0 or epochs > 0"),
        (config.epochs >= 0, "epochs", f"must be >= 0, got {config.epochs}"),
        (0 <= config.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {config.warmup_ratio}"),
        (config.weight_decay >= 0, "weight_decay", f"must be >= 0, got {config.weight_decay}"),
        (config.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0 (0: no clipping), got {config.max_grad_norm}"),
        (config.max_length >= 1, "max_length", f"must be >= 1, got {config.max_length}"),
        (config.save_total_limit >= 1, "save_total_limit", f"must be >= 1, got {config.save_total_limit}"),
        (config.lora.alpha > 0, "lora.alpha", f"must be > 0, got {config.lora.alpha}"),
        (0 <= config.lora.dropout < 1, "lora.dropout", f"must be in [0, 1), got {config.lora.dropout}"),
        (config.scheduler in {kind.value for kind in SchedulerType}, "scheduler",
         f"{config.scheduler!r} is not one of {sorted(kind.value for kind in SchedulerType)}"),
    ]
    return [f"train.{key}: {problem}" for fine, key, problem in checks if not fine]


def record_problems(train_file: Path, root: Path = Path(".")) -> list[str]:
    """``<file>:<line>: <problem>`` for every record that cannot be read or whose images cannot.

    Images are opened as far as their header (cheap, and enough for a missing, unreadable or
    non-image file); each is checked once and reported on the first line that names it.
    """
    with train_file.open(encoding="utf-8") as handle:
        lines = [(number, line) for number, line in enumerate(handle, start=1) if line.strip()]
    if not lines:
        return [f"{train_file}: holds no record"]
    problems: list[str] = []
    bad_images: dict[str, tuple[int, str]] = {}  # image -> the first line naming it, and its problem
    named: Counter[str] = Counter()  # image -> records naming it
    for number, line in tqdm(lines, desc="train: checking records", unit="record"):
        images, problem = _record_images(line)
        if problem:
            problems.append(f"{train_file}:{number}: {problem}")
        for image in images:
            named[image] += 1
            if named[image] == 1 and (failure := _header_problem(root / image)):
                bad_images[image] = (number, failure)
    for image, (number, failure) in bad_images.items():
        more = f" (and {named[image] - 1} more records)" if named[image] > 1 else ""
        problems.append(f"{train_file}:{number}: image {image} {failure}{more}")
    return problems


def _record_images(line: str) -> tuple[list[str], str | None]:
    """The record's image paths, and what is wrong with the record itself."""
    try:
        record: Any = json.loads(line)
        user, answer = record["messages"][0]["content"], record["messages"][1]["content"]
        images = record["images"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
        return [], f"not a DDQA record (messages with a user and an assistant turn, images): {err}"
    if not isinstance(images, list) or not all(isinstance(image, str) for image in images):
        return [], f"images must be a list of paths, got {images!r}"
    if not isinstance(user, str) or not isinstance(answer, str) or not answer:
        return images, "the user turn and the answer must be text, the answer non-empty"
    if user.count("<image>") != len(images):
        return images, f"{user.count('<image>')} <image> tags but {len(images)} images"
    return images, None


def _header_problem(path: Path) -> str | None:
    try:
        Image.open(path).close()  # opening reads and parses the header
    except FileNotFoundError:
        return "does not exist"
    except UnidentifiedImageError:
        return "is not an image file Pillow can decode"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return None
