"""Run a model over the MMAD benchmark and the DDQA test split, and score it.

Questions are answered image by image (:mod:`eiad.evaluation.engine`), each image's answers
appended durably to a cache (:mod:`eiad.evaluation.cache`) so that a killed run continues, and
images are dealt to the processes of a launched run; rank 0 assembles every answer in benchmark
order, scores them and writes the outputs, which are the same for any number of processes and any
number of interruptions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from eiad.benchmark.mmad import Question, by_image, check_files, load_benchmark, load_domain_knowledge
from eiad.benchmark.parsing import parse_answer
from eiad.benchmark.protocols import Asking, history_entry, plan
from eiad.benchmark.scoring import SHORT_TYPES, Scored, intervals, mmad_script_table, summarise
from eiad.data.images import load_rgb
from eiad.ddqa.records import record_plan
from eiad.ddqa.tasks import TASKS
from eiad.errors import DataError
from eiad.evaluation.cache import AnswerCache, tree_digest
from eiad.evaluation.config import EvalConfig
from eiad.evaluation.engine import Ask, Engine
from eiad.io import atomic_directory, atomic_write_json, jsonl_text, read_jsonl
from eiad.models.config import ModelHandle
from eiad.questions import describe

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parents[1]  # eiad/


@dataclass(frozen=True)
class Job:
    """The questions about one image: MMAD's, or the DDQA test records of that image."""

    questions: tuple[Question, ...] = ()
    records: tuple[dict[str, Any], ...] = ()

    @property
    def ids(self) -> list[str]:
        return [f"mmad:{q.id}" for q in self.questions] + [ddqa_id(r) for r in self.records]


def ddqa_id(record: dict[str, Any]) -> str:
    return f"ddqa:{record['task']}:{record['images'][0]}"


@dataclass(frozen=True)
class Inputs:
    """What an evaluation reads, loaded and checked before any model is."""

    benchmark: Path
    questions: list[Question]
    records: list[dict[str, Any]]
    asking: Asking

    @classmethod
    def load(cls, benchmark: Path, ddqa_test: Path, config: EvalConfig) -> Inputs:
        questions = load_benchmark(benchmark)
        protocol = config.asked_protocol
        check_files(benchmark, questions, config.template_count if protocol.templates else 0, config.templates)
        knowledge = load_domain_knowledge(benchmark, questions) if config.domain_knowledge else None
        asking = Asking(protocol, config.templates, config.template_count, config.wording, config.history, knowledge)
        records = read_jsonl(ddqa_test)
        missing = sorted({path for record in records for path in record["images"] if not Path(path).is_file()})
        if missing:
            raise DataError(ddqa_test, f"{len(missing)} image(s) of the DDQA test split are missing, e.g. {missing[:3]}")
        return cls(benchmark, questions, records, asking)

    def jobs(self) -> list[Job]:
        mmad = [Job(questions=tuple(group)) for group in by_image(self.questions)]
        image = lambda record: record["images"][0]
        ddqa = [Job(records=tuple(group)) for _, group in groupby(sorted(self.records, key=image), key=image)]
        return mmad + ddqa


def job_groups(jobs: list[Job], rows: int) -> list[list[Job]]:
    """Consecutive jobs of one kind (MMAD or DDQA) gathered until their questions fill ``rows``.

    The groups depend on the jobs alone, not on what an interrupted run answered nor on how many
    processes share them, so every question is always asked in the same batch (same numerics)."""
    groups: list[list[Job]] = []
    for job in jobs:
        last = groups[-1] if groups else None
        if last is None or bool(last[0].questions) != bool(job.questions) or sum(len(j.ids) for j in last) >= rows:
            groups.append([job])
        else:
            last.append(job)
    return groups


def answer_group(engine: Engine, jobs: list[Job], inputs: Inputs, config: EvalConfig) -> dict[str, str]:
    """Every answer of a group of jobs, asked together, by question id."""
    if not jobs[0].questions:
        records = [job.records for job in jobs]
        asks = [[Ask(record_plan(r), config.answer_budget(TASKS[r["task"]].answer), r["choices"]) for r in image]
                for image in records]
        outputs = engine.answer_all(asks, lambda path: load_rgb(Path(path)))
        return {ddqa_id(r): output for image, answers in zip(records, outputs) for r, output in zip(image, answers)}
    asking, root = inputs.asking, inputs.benchmark
    load = lambda path: load_rgb(root / path)
    if not asking.history:
        asks = [[Ask(plan(q, asking), config.max_new_tokens, q.options) for q in job.questions] for job in jobs]
        outputs = engine.answer_all(asks, load)
        return {f"mmad:{q.id}": output for job, answers in zip(jobs, outputs) for q, output in zip(job.questions, answers)}
    # each question's prompt holds the answers before it: the images' n-th questions are asked together
    prefixes = engine.prefixes([[plan(q, asking) for q in job.questions] for job in jobs], load)
    histories, answers = [""] * len(jobs), {}
    for step in range(max(len(job.questions) for job in jobs)):
        asked = [(image, job.questions[step]) for image, job in enumerate(jobs) if step < len(job.questions)]
        outputs = prefixes.answer([(image, Ask(plan(q, asking, histories[image]), config.max_new_tokens, q.options))
                                   for image, q in asked])
        for (image, question), output in zip(asked, outputs):
            answers[f"mmad:{question.id}"] = output
            histories[image] += history_entry(question, output)
    return answers


# --- processes ------------------------------------------------------------------------------------


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _device() -> str:
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def _join_group(world: int) -> Callable[[], None]:
    """A barrier across the launched processes (a no-op for one)."""
    if world == 1:
        return lambda: None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.barrier


def run_key(model_dir: Path, inputs: Inputs, ddqa_test: Path, config: EvalConfig) -> str:
    """What the cached answers depend on: the files read, the code that asks (answers of another
    version of it are not reused) and every setting but how processes run."""
    settings = {key: value for key, value in asdict(config).items() if key not in ("launch", "bootstrap")}
    files = tree_digest([model_dir, inputs.benchmark, ddqa_test])
    return f"{files}:{tree_digest([PACKAGE], '*.py')}:{json.dumps(settings, sort_keys=True)}"


# --- the run --------------------------------------------------------------------------------------


def run_evaluation(model: ModelHandle, model_dir: Path, benchmark: Path, ddqa_test: Path, metrics_dir: Path,
                   predictions_dir: Path, cache_dir: Path, config: EvalConfig) -> dict[str, Any] | None:
    """Evaluate one model folder; rank 0 writes metrics (git) and predictions (DVC) atomically and
    returns the scores, other ranks return None."""
    inputs = Inputs.load(benchmark, ddqa_test, config)  # every check before the model loads
    rank, world = _world()
    barrier = _join_group(world)
    cache = AnswerCache(cache_dir, run_key(model_dir, inputs, ddqa_test, config), rank)
    if rank == 0:
        cache.reset_if_stale()
    barrier()
    cache.open()
    done = cache.load()
    jobs = inputs.jobs()
    rows = config.batch_size if model.adapter.groups_images else 1
    mine = [group for index, group in enumerate(job_groups(jobs, rows)) if index % world == rank]
    pending = [group for group in mine if not all(key in done for job in group for key in job.ids)]
    asked = _answer(model, model_dir, pending, inputs, cache, config) if pending else 0
    barrier()
    if rank != 0:
        return None
    answers = cache.load()
    total = sum(len(job.ids) for job in jobs)
    log.info("evaluate: %d questions, %d answered now, %d from the cache of an interrupted run", total, asked,
             total - asked)
    return write_outputs(inputs, answers, metrics_dir, predictions_dir, config)


def _answer(model: ModelHandle, model_dir: Path, groups: list[list[Job]], inputs: Inputs, cache: AnswerCache,
            config: EvalConfig) -> int:
    processor = model.processor(model_dir)
    network = model.model(model_dir, config.precision).to(_device()).eval()
    engine = Engine(model, network, processor, config.answer, config.batch_size)
    questions, start = 0, time.perf_counter()
    with tqdm(total=sum(len(group) for group in groups), desc="evaluate", unit="image") as progress:
        for group in groups:
            cache.append(answer_group(engine, group, inputs, config))  # a group's answers in one durable write
            questions += sum(len(job.ids) for job in group)
            progress.update(len(group))
            progress.set_postfix(questions=questions, per_s=f"{questions / (time.perf_counter() - start):.2f}")
    return questions


# --- outputs --------------------------------------------------------------------------------------


def mmad_answers(inputs: Inputs, answers: dict[str, str], chosen: bool,
                 ) -> Iterator[tuple[Question, dict[str, Any]]]:
    """Each question with its row of MMAD's answers file (plus what the model saw and said);
    ``chosen``: the answers are letters picked by choice scoring, not generated text."""
    keep = inputs.asking.protocol.letter
    for group in by_image(inputs.questions):
        history = ""
        for question in group:
            output = answers[f"mmad:{question.id}"]
            letter, status = parse_answer(output, question.options, keep)
            yield question, {
                "image": question.image,
                "question": question.text,
                "question_type": question.type,
                "correct_answer": question.answer,
                # a letter when one was read (MMAD's Qwen2.5-VL script keeps the raw answer otherwise)
                "gpt_answer": letter if letter is not None else output,
                "model_output": output,
                "parse": "choice" if chosen else status,
                "prompt": describe(plan(question, inputs.asking, history)),
            }
            history += history_entry(question, output) if inputs.asking.history else ""


def write_outputs(inputs: Inputs, answers: dict[str, str], metrics_dir: Path, predictions_dir: Path,
                  config: EvalConfig) -> dict[str, Any]:
    """The compact metrics (``mmad.json``, ``ddqa.json``: what ``dvc metrics diff`` compares), the full
    score tables beside them (``*_scores.json``), the per-type plot, and the per-question predictions."""
    rows, scored = [], []
    parse = {"choice": 0} if config.answer == "choice" else {"letter": 0, "fuzzy": 0, "unparsed": 0}
    for question, row in mmad_answers(inputs, answers, config.answer == "choice"):
        rows.append(row)
        parse[row["parse"]] += 1
        scored.append(Scored(question.image, question.reported_type, row["gpt_answer"] == question.answer))
    mmad = {"protocol": config.protocol, "answer": config.answer, "questions": len(rows), "parse": parse,
            **summarise(scored), "mmad_script": mmad_script_table(rows)}
    if config.bootstrap.samples:
        mmad["intervals"] = intervals(scored, config.bootstrap.samples, config.bootstrap.seed)
    ddqa, predictions = score_ddqa(inputs.records, answers, config)
    atomic_write_json(metrics_dir / "mmad.json", compact_mmad(mmad))
    atomic_write_json(metrics_dir / "ddqa.json", compact_ddqa(ddqa))
    atomic_write_json(metrics_dir / "mmad_scores.json", mmad)
    atomic_write_json(metrics_dir / "ddqa_scores.json", ddqa)
    atomic_write_json(metrics_dir / "mmad_per_type.json", per_type_plot(mmad))
    with atomic_directory(predictions_dir) as staging:
        atomic_write_json(staging / "mmad_answers.json", rows)
        (staging / "ddqa_predictions.jsonl").write_text(jsonl_text(predictions), encoding="utf-8")
    return {"mmad": mmad, "ddqa": ddqa}


def compact_mmad(mmad: dict[str, Any]) -> dict[str, float]:
    """The headline: our Average with its interval, MMAD's script's Average, each type's average."""
    average = mmad["average"]
    headline = {"average": average["Average"]}
    if "intervals" in mmad:
        headline["low"], headline["high"] = mmad["intervals"]["average"]["Average"]
    headline["mmad_script"] = mmad["mmad_script"]["average"]["Average"]
    headline.update({SHORT_TYPES[name]: value for name, value in average.items() if name in SHORT_TYPES})
    return headline


def compact_ddqa(ddqa: dict[str, Any]) -> dict[str, float]:
    """Each task's headline figure (see ``Task.headline``)."""
    return {name: TASKS[name].headline(figures) for name, figures in ddqa.items()}


def score_ddqa(records: list[dict[str, Any]], answers: dict[str, str], config: EvalConfig,
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each task's figures (with intervals) and per-record predictions, task by task in file order."""
    keep = config.asked_protocol.letter
    metrics: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for name in sorted({record["task"] for record in records}):
        task, chosen = TASKS[name], [record for record in records if record["task"] == name]
        figures, rows = task.score(chosen, [answers[ddqa_id(record)] for record in chosen], keep)
        if config.bootstrap.samples:
            figures["intervals"] = task.intervals(chosen, rows, config.bootstrap.samples, config.bootstrap.seed)
        metrics[name] = figures
        predictions.extend({"task": name, "image": r["images"][0], **row} for r, row in zip(chosen, rows))
    return metrics, predictions


def per_type_plot(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a DVC bar plot of the MMAD average per question type."""
    return [{"type": name, "accuracy": value} for name, value in metrics["average"].items()
            if name not in ("Average", "Overkill", "Miss")]
