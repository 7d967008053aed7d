"""Benchmark: questions per second of MMAD-style asking against eiad's evaluation engine.

Paths, each timed in a fresh child process (peak RSS is that process's) after one image asked untimed
(the steady rate), in alternation:

* ``mmad-loop``: MMAD's scripts' loop: one question per call, its images read from disk and
  processed again, batch 1, as their scripts ask it: the model loaded by transformers'
  ``from_pretrained`` and nothing else, the processor's own chat template and call, ``generate``
  (the anchor every ratio compares with);
* ``loop-eiad-model``: the same loop on the model and the encoding as eiad has them (for Qwen: the
  vision tower's one attention call for all images, its patch product, the family's direct
  processor calls, chats rendered once per text), so that the second ratio printed is what the
  engine's reuse gains alone;
* ``batched``: questions in batches of ``--batch`` prompts, left-padded, images per batch;
* ``engine``: eiad's engine as the pipeline runs it (``evaluate.batch_size`` questions a pass),
  questions of an image from one encoded prefix, generated; it keeps the C heap's freed memory for
  reuse (``eiad.memory``), which the loops, whose blocks are small, do not need;
* ``engine-choice``: the same with choice scoring (one step, the likeliest offered letter).

On the demo's tiny model (``models/base``, after ``dvc repro fetch_model fetch_benchmark``) and on
a compute-bound mid-size model of the same family built here (512 wide, 4 layers, 224-px images),
for eiad-0shot and mmad-1shot. ``--memory`` instead compares the whole evaluation's peak RSS on
the benchmark and on one ten times its size.

    python benchmarks/evaluate_speed.py [--images 12] [--rounds 2] [--min-seconds 5] [--memory]
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

MID_SIZE = {"seed": 0, "vocab_size": 512, "hidden_size": 512, "layers": 4, "heads": 8, "kv_heads": 4,
            "intermediate_size": 1376, "vision_depth": 4, "vision_width": 256, "vision_heads": 4, "patch_size": 14,
            "merge_size": 1, "image_size": 224, "initializer_range": 0.02}
PATHS = ("mmad-loop", "loop-eiad-model", "batched", "engine", "engine-choice")


def _questions(benchmark: Path, images: int) -> list[Any]:
    """The questions of ``images`` images spread evenly over the benchmark (its mix of normal and defective)."""
    from eiad.benchmark.mmad import by_image, load_benchmark

    groups = list(by_image(load_benchmark(benchmark)))
    step = max(1, len(groups) // images)
    return [q for group in groups[::step][:images] for q in group]


def _time_path(path: str, model_dir: str, benchmark: str, protocol: str, images: int, batch: int,
               min_seconds: float) -> dict[str, float]:
    """One path over ``images`` images' questions (asked again until ``min_seconds`` have passed),
    after one image asked untimed: questions/s (the steady rate, as over MMAD's 39,672 questions)
    and this process's peak RSS."""
    import torch

    from eiad.benchmark.mmad import by_image
    from eiad.benchmark.protocols import PROTOCOLS, Asking, plan
    from eiad.data.images import load_rgb
    from eiad.evaluation.anchor import ask_as_mmad
    from eiad.evaluation.engine import Ask, Engine
    from eiad.evaluation.runner import Job, job_groups
    from eiad.models import get_adapter
    from eiad.models.config import ModelConfig, ModelHandle
    from eiad.params import load_params
    from eiad.questions import load_prompt

    torch.set_num_threads(1)
    root = Path(benchmark)
    model = ModelHandle.from_config(ModelConfig.parse(load_params("model"), "model"))
    adapter = get_adapter(model.config.family)
    processor = adapter.load_processor(Path(model_dir))
    if path == "mmad-loop":  # as MMAD's scripts load it
        from transformers import AutoModelForImageTextToText

        network = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    else:
        network = adapter.load_model(Path(model_dir)).eval()
    asking = Asking(PROTOCOLS[protocol], "random", 1, "minicpm", False, None)
    questions = _questions(root, images)
    load = lambda name: load_rgb(root / name)
    # only the engine's paths build it: it sets its attention on the model, which the others keep as loaded
    rows = load_params("evaluate.batch_size")  # the engine's batches, as the pipeline's
    engine = Engine(model, network, processor, "choice" if path == "engine-choice" else "generate", rows) \
        if path.startswith("engine") else None

    def ask(chosen: list[Any]) -> None:
        if path == "mmad-loop":
            for question in chosen:
                ask_as_mmad(adapter, network, processor, load_prompt(plan(question, asking), load), 8)
        elif path == "loop-eiad-model":
            for question in chosen:
                adapter.generate(network, processor, [load_prompt(plan(question, asking), load)], 8)
        elif path == "batched":
            for first in range(0, len(chosen), batch):
                prompts = [load_prompt(plan(q, asking), load) for q in chosen[first:first + batch]]
                adapter.generate(network, processor, prompts, 8)
        elif engine is not None:
            for group in job_groups([Job(questions=tuple(group)) for group in by_image(chosen)], rows):
                engine.answer_all([[Ask(plan(q, asking), 8, q.options) for q in job.questions] for job in group], load)

    ask(next(by_image(questions)))  # one image untimed: one-time costs (first calls, lazy set-up) are not the rate
    start, asked = time.perf_counter(), 0
    while not asked or time.perf_counter() - start < min_seconds:  # a tiny model's pass is a fraction of a second
        ask(questions)
        asked += len(questions)
    seconds = time.perf_counter() - start
    return {"per_s": asked / seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _reuse_bound(model_dir: Path, benchmark: Path, protocol: str, images: int) -> str:
    """What exact per-image reuse can save on these questions, asked one by one against once per
    image (each image's shared prefix once, then each question's own tokens, as the engine asks
    them): prompt tokens through the language model, query-key pairs of its causal attention, and
    images through the vision tower. Time spent on each shrinks at most by its ratio, so the
    largest of the three bounds any exact reuse's speed-up, but for the loop's generated tokens
    after the first (small on a compute-bound model)."""
    from eiad.benchmark.mmad import by_image
    from eiad.benchmark.protocols import PROTOCOLS, Asking, plan
    from eiad.data.images import load_rgb
    from eiad.evaluation.engine import shared_prefix_length
    from eiad.models import get_adapter
    from eiad.params import load_params
    from eiad.questions import load_prompt

    adapter = get_adapter(load_params("model.family"))
    processor = adapter.load_processor(model_dir)
    asking = Asking(PROTOCOLS[protocol], "random", 1, "minicpm", False, None)
    load = lambda name: load_rgb(benchmark / name)
    loop, reuse = [0, 0, 0], [0, 0, 0]  # tokens, attention pairs, images
    for group in by_image(_questions(benchmark, images)):
        plans = [plan(question, asking) for question in group]
        ids = [adapter.encode(processor, load_prompt(one, load)).tokens["input_ids"][0] for one in plans]
        prefix, lengths = shared_prefix_length(ids), [len(row) for row in ids]
        pictures = sum(not isinstance(part, str) for part in plans[0])
        loop = [loop[0] + sum(lengths), loop[1] + sum(n * (n + 1) // 2 for n in lengths),
                loop[2] + pictures * len(plans)]
        own = [n - prefix for n in lengths]
        reuse = [reuse[0] + prefix + sum(own),
                 reuse[1] + prefix * (prefix + 1) // 2 + sum(t * prefix + t * (t + 1) // 2 for t in own),
                 reuse[2] + pictures]
    names = ("prompt tokens", "attention pairs", "images through the vision tower")
    parts = [f"{name} {one:,} one by one, {once:,} once per image ({one / once:.2f}x less)"
             for name, one, once in zip(names, loop, reuse)]
    return "  bound of exact per-image reuse: " + "; ".join(parts)


def _in_child(function: Any, *args: Any) -> Any:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def _mid_size_model(ddqa: Path, dest: Path) -> Path:
    from eiad.models import get_adapter
    from eiad.models.fetch import corpus

    get_adapter("qwen2_vl").build_tiny(MID_SIZE, list(corpus(ddqa)), dest)
    return dest


def _speed(models: dict[str, Path], benchmark: Path, images: int, rounds: int, batch: int, min_seconds: float) -> None:
    for name, model_dir in models.items():
        for protocol in ("eiad-0shot", "mmad-1shot"):
            runs: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
            for _ in range(rounds):  # alternating, so load on the machine hits every path alike
                for path in PATHS:
                    runs[path].append(_in_child(_time_path, path, str(model_dir), str(benchmark), protocol, images,
                                                batch, min_seconds))
            anchor = statistics.median(run["per_s"] for run in runs["mmad-loop"])
            same_model = statistics.median(run["per_s"] for run in runs["loop-eiad-model"])
            click.echo(f"\n{name} model, {protocol}, {len(_questions(benchmark, images))} questions over {images} "
                       f"images, median of {rounds} (plain batching {batch} prompts a call, the engine "
                       f"{_params('evaluate.batch_size')} questions a pass):")
            for path in PATHS:
                per_s = statistics.median(run["per_s"] for run in runs[path])
                rss = statistics.median(run["rss_mb"] for run in runs[path])
                ratio = "" if path == "mmad-loop" else f"  {per_s / anchor:.1f}x the MMAD-style loop"
                if path not in ("mmad-loop", "loop-eiad-model"):
                    ratio += f", {per_s / same_model:.1f}x the loop on eiad's model"
                click.echo(f"  {path:<16} {per_s:7.2f} questions/s  peak RSS {rss:6.0f} MB{ratio}")
            click.echo(_reuse_bound(model_dir, benchmark, protocol, images))


def _whole_run_rss(model_dir: str, benchmark: str, ddqa_test: str, scratch: str) -> float:
    from eiad.evaluation.config import EvalConfig
    from eiad.evaluation.runner import run_evaluation
    from eiad.models.config import ModelHandle

    config = EvalConfig.parse({**_params("evaluate"), "answer": "choice", "bootstrap": {"samples": 0, "seed": 0}},
                              "evaluate")
    out = Path(scratch)
    run_evaluation(ModelHandle.load(), Path(model_dir), Path(benchmark), Path(ddqa_test), out / "m", out / "p",
                   out / "c", config)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _params(key: str) -> Any:
    from eiad.params import load_params

    return load_params(key)


def _enlarged(benchmark: Path, factor: int, dest: Path) -> Path:
    """The benchmark with every image entry repeated ``factor`` times under new names."""
    shutil.copytree(benchmark, dest)
    entries = json.loads((benchmark / "mmad.json").read_text())
    larger = {}
    for copy in range(factor):
        for key, entry in entries.items():
            name = key.replace(".png", f"_{copy}.png")
            shutil.copyfile(benchmark / key, dest / name)
            larger[name] = {**entry, "image_path": name}
    (dest / "mmad.json").write_text(json.dumps(larger))
    return dest


def _memory(model_dir: Path, benchmark: Path, ddqa_test: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        small = _in_child(_whole_run_rss, str(model_dir), str(benchmark), str(ddqa_test), f"{scratch}/small")
        large_benchmark = _enlarged(benchmark, 10, Path(scratch) / "large-benchmark")
        large = _in_child(_whole_run_rss, str(model_dir), str(large_benchmark), str(ddqa_test), f"{scratch}/large")
    questions = sum(len(e["conversation"]) for e in json.loads((benchmark / "mmad.json").read_text()).values())
    click.echo(f"whole evaluation (choice scoring), peak RSS: {questions} questions {small:.0f} MB, "
               f"{10 * questions} questions {large:.0f} MB ({large / small:.2f}x)")


@click.command()
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), default="models/base")
@click.option("--benchmark", type=click.Path(exists=True, file_okay=False, path_type=Path), default="data/benchmark")
@click.option("--ddqa", type=click.Path(exists=True, file_okay=False, path_type=Path), default="data/ddqa")
@click.option("--images", default=12, show_default=True, help="Benchmark images timed per path.")
@click.option("--rounds", default=2, show_default=True, help="Alternating rounds; the median is printed.")
@click.option("--batch", default=32, show_default=True, help="Prompts per call on the batched path.")
@click.option("--min-seconds", default=5.0, show_default=True,
              help="Each timed path asks its questions again until this long has passed.")
@click.option("--memory", is_flag=True, help="Compare peak RSS of whole runs on 1x and 10x the benchmark instead.")
def main(model: Path, benchmark: Path, ddqa: Path, images: int, rounds: int, batch: int, min_seconds: float,
         memory: bool) -> None:
    if memory:
        _memory(model, benchmark, ddqa / "test.jsonl")
        return
    with tempfile.TemporaryDirectory() as scratch:
        mid = _mid_size_model(ddqa, Path(scratch) / "mid")
        _speed({"demo tiny": model, "mid-size (512 wide, 4 layers, 224 px)": mid}, benchmark, images, rounds, batch,
               min_seconds)


if __name__ == "__main__":
    main()
