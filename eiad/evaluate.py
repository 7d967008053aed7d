"""Run a model over the MMAD benchmark and the DDQA test split, and score it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from tqdm import tqdm

from eiad.ddqa import record_prompt
from eiad.io import atomic_directory, atomic_write_json, jsonl_text, read_jsonl
from eiad.layout import OK
from eiad.errors import ConfigError
from eiad.mmad import Protocol, Scored, TemplateKind, build_prompt, check_files, load_benchmark, parse_answer, summarise
from eiad.models.base import DTYPES, Prompt, VLMAdapter

T = TypeVar("T")
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")


@dataclass(frozen=True)
class EvalConfig:
    protocol: Protocol = "0-shot"
    templates: TemplateKind = "random"
    batch_size: int = 8
    max_new_tokens: int = 8  # multiple-choice answers
    max_new_tokens_box: int = 64  # DFM answers: a list of boxes
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_new_tokens, self.max_new_tokens_box) < 1:
            raise ConfigError("evaluate: batch_size and max_new_tokens must be >= 1")




def _batched(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


Ask = Callable[[list[Prompt], int], list[str]]  # (prompts, max_new_tokens) -> answers


def answer_all(items: Sequence[T], prompt_of: Callable[[T], Prompt], ask: Ask, max_new_tokens: int,
               batch_size: int, what: str) -> list[str]:
    """The model's answer to every item, asked in batches (images are loaded batch by batch)."""
    outputs: list[str] = []
    for batch in tqdm(_batched(items, batch_size), desc=f"evaluate: {what}", unit="batch"):
        outputs.extend(ask([prompt_of(item) for item in batch], max_new_tokens))
    return outputs


def evaluate_mmad(ask: Ask, root: Path, config: EvalConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """MMAD metrics and per-question answers in MMAD's answers format (plus our own fields)."""
    questions = load_benchmark(root)
    check_files(root, questions, config.protocol, config.templates)
    outputs = answer_all(questions, lambda q: build_prompt(root, q, config.protocol, config.templates), ask,
                         config.max_new_tokens, config.batch_size, "MMAD")
    answers, scored, status_counts = [], [], {"letter": 0, "fuzzy": 0, "unparsed": 0}
    for question, output in zip(questions, outputs):
        letter, status = parse_answer(output, question.options)
        status_counts[status] += 1
        scored.append(Scored(question.image, question.type, letter == question.answer))
        answers.append({
            "image": question.image,
            "question": question.text,
            "question_type": question.type,
            "correct_answer": question.answer,
            "gpt_answer": letter if letter is not None else output,
            "model_output": output,
            "parse": status,
        })
    metrics = {"protocol": config.protocol, "questions": len(questions), "parse": status_counts, **summarise(scored)}
    return metrics, answers


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
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


def evaluate_ddqa(ask: Ask, test_file: Path, config: EvalConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accuracy for AD (balanced), DC and RDL; parse rate, mean IoU and IoU >= 0.5 share for DFM."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in read_jsonl(test_file):
        by_task.setdefault(record["task"], []).append(record)
    metrics: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for task, records in sorted(by_task.items()):
        limit = config.max_new_tokens_box if task == "DFM" else config.max_new_tokens
        outputs = answer_all(records, lambda r: record_prompt(r)[0], ask, limit, config.batch_size, f"DDQA {task}")
        score = _score_boxes if task == "DFM" else _score_choices
        metrics[task], rows = score(records, outputs)
        predictions.extend({"task": task, "image": r["images"][0], **row} for r, row in zip(records, rows))
    return metrics, predictions


def _score_choices(records: list[dict[str, Any]], outputs: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
    if records[0]["task"] == "AD" and hits[True] and hits[False]:
        sides = [sum(h) / len(h) for h in hits.values()]
        metrics["balanced_accuracy"] = round(100 * sum(sides) / 2, 2)
    return metrics, rows


def _score_boxes(records: list[dict[str, Any]], outputs: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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


def make_asker(adapter: VLMAdapter, model: Any, processor: Any) -> Ask:
    return lambda prompts, limit: adapter.generate(model, processor, prompts, limit)


def per_type_plot(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a DVC bar plot of the MMAD average per question type."""
    return [{"type": name, "accuracy": value} for name, value in metrics["average"].items()
            if name not in ("Average", "Overkill", "Miss")]


def run_evaluation(
    adapter: VLMAdapter,
    model_dir: Path,
    benchmark: Path,
    ddqa_test: Path,
    metrics_dir: Path,
    predictions_dir: Path,
    config: EvalConfig,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Evaluate one model folder; write metrics (git) and predictions (DVC) atomically."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = adapter.load_processor(model_dir, trust_remote_code)
    model = adapter.load_model(model_dir, DTYPES[config.precision], trust_remote_code).to(device).eval()
    ask = make_asker(adapter, model, processor)
    mmad, answers = evaluate_mmad(ask, benchmark, config)
    ddqa, predictions = evaluate_ddqa(ask, ddqa_test, config)
    atomic_write_json(metrics_dir / "mmad.json", mmad)
    atomic_write_json(metrics_dir / "ddqa.json", ddqa)
    atomic_write_json(metrics_dir / "mmad_per_type.json", per_type_plot(mmad))
    with atomic_directory(predictions_dir) as staging:
        atomic_write_json(staging / "mmad_answers.json", answers)
        (staging / "ddqa_predictions.jsonl").write_text(jsonl_text(predictions), encoding="utf-8")
    return {"mmad": mmad, "ddqa": ddqa}
