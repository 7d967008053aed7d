"""Run a model over the MMAD benchmark and the DDQA test split, and score it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from eiad.benchmark.mmad import TemplateKind, check_files, load_benchmark
from eiad.benchmark.parsing import parse_answer
from eiad.benchmark.prompts import Protocol, build_prompt
from eiad.benchmark.scoring import Scored, summarise
from eiad.ddqa.records import record_prompt
from eiad.ddqa.tasks import TASKS
from eiad.errors import ConfigError
from eiad.io import atomic_directory, atomic_write_json, jsonl_text, read_jsonl
from eiad.models.config import ModelHandle, Precision
from eiad.params import Params
from eiad.questions import Prompt

T = TypeVar("T")


@dataclass(frozen=True)
class EvalConfig(Params):
    protocol: Protocol
    templates: TemplateKind  # 1-shot template: random | similar
    batch_size: int
    max_new_tokens: int  # multiple-choice answers
    max_new_tokens_box: int  # DFM answers: a list of boxes
    precision: Precision

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_new_tokens, self.max_new_tokens_box) < 1:
            raise ConfigError("evaluate: batch_size and max_new_tokens must be >= 1")

    def answer_budget(self, answer: str) -> int:
        """New tokens allowed for an answer of this kind (a DDQA task's ``answer``)."""
        return self.max_new_tokens_box if answer == "boxes" else self.max_new_tokens


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
    check_files(root, questions, config.protocol == "1-shot", config.templates)
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


def evaluate_ddqa(ask: Ask, test_file: Path, config: EvalConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each task's scores (see its ``score``) over the DDQA test split, and per-record predictions."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in read_jsonl(test_file):
        by_task.setdefault(record["task"], []).append(record)
    metrics: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for name, records in sorted(by_task.items()):
        task = TASKS[name]
        outputs = answer_all(records, lambda r: record_prompt(r)[0], ask, config.answer_budget(task.answer),
                             config.batch_size, f"DDQA {name}")
        metrics[name], rows = task.score(records, outputs)
        predictions.extend({"task": name, "image": r["images"][0], **row} for r, row in zip(records, rows))
    return metrics, predictions


def make_asker(model: ModelHandle, network: Any, processor: Any) -> Ask:
    return lambda prompts, limit: model.adapter.generate(network, processor, prompts, limit)


def per_type_plot(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a DVC bar plot of the MMAD average per question type."""
    return [{"type": name, "accuracy": value} for name, value in metrics["average"].items()
            if name not in ("Average", "Overkill", "Miss")]


def run_evaluation(model: ModelHandle, model_dir: Path, benchmark: Path, ddqa_test: Path, metrics_dir: Path,
                   predictions_dir: Path, config: EvalConfig) -> dict[str, Any]:
    """Evaluate one model folder; write metrics (git) and predictions (DVC) atomically."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = model.processor(model_dir)
    network = model.model(model_dir, config.precision).to(device).eval()
    ask = make_asker(model, network, processor)
    mmad, answers = evaluate_mmad(ask, benchmark, config)
    ddqa, predictions = evaluate_ddqa(ask, ddqa_test, config)
    atomic_write_json(metrics_dir / "mmad.json", mmad)
    atomic_write_json(metrics_dir / "ddqa.json", ddqa)
    atomic_write_json(metrics_dir / "mmad_per_type.json", per_type_plot(mmad))
    with atomic_directory(predictions_dir) as staging:
        atomic_write_json(staging / "mmad_answers.json", answers)
        (staging / "ddqa_predictions.jsonl").write_text(jsonl_text(predictions), encoding="utf-8")
    return {"mmad": mmad, "ddqa": ddqa}
