"""Benchmark: the report on a synthetic evaluation at MMAD's scale.

Writes a benchmark of ``--images`` small query images with MMAD's 4.74 questions per image on
average (39,672 questions at 8,366 images), answers for a base and a fine-tuned model (right on
about 40% and 60% of the questions), their scores and the paired comparison, and times
``build_report`` on them with the demo's DDQA beside it. Prints the build time and the size of
each page.

    python benchmarks/report_scale.py [--images 8366]
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from pathlib import Path

import click
from PIL import Image

from eiad.benchmark.mmad import benchmark_entry, conversation_item, write_benchmark
from eiad.data.layout import read_manifest
from eiad.ddqa.build import DDQAConfig, build_ddqa
from eiad.evaluation.compare import compare
from eiad.evaluation.config import EvalConfig
from eiad.evaluation.runner import Inputs as EvalInputs
from eiad.evaluation.runner import ddqa_id, write_outputs
from eiad.params import load_params
from eiad.report.build import Inputs, build_report
from eiad.sources.demo import SOURCE as DEMO
from eiad.stats import BootstrapSettings

TYPES = ["Anomaly Detection", "Defect Classification", "Defect Localization", "Defect Description",
         "Defect Analysis", "Object Classification", "Object Structure", "Object Details"]
DATASETS = ["DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD"]


def _benchmark(root: Path, images: int, rng: random.Random) -> None:
    entries = {}
    for index in range(images):
        dataset = DATASETS[index % len(DATASETS)]
        label = "good" if index % 3 == 0 else "defect"
        key = f"{dataset}/part{index % 9}/test/{label}/{index:05d}.png"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        colour = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (64, 64), colour).save(root / key)
        count = 5 if rng.random() < 0.74 else 4  # 4.74 questions per image on average
        conversation = [conversation_item(f"Question {n} about image {index}?", {"A": "yes", "B": "no", "C": "maybe"},
                                          rng.choice("ABC"), TYPES[n % len(TYPES)]) for n in range(count)]
        entries[key] = benchmark_entry(key, None, conversation, [], [])
    write_benchmark(root, entries)


def _answers(inputs: EvalInputs, share: float, seed: str) -> dict[str, str]:
    answers = {}
    for question in inputs.questions:
        lucky = int(hashlib.sha256(f"{seed}{question.id}".encode()).hexdigest(), 16) % 100 < share * 100
        answers[f"mmad:{question.id}"] = question.answer if lucky else next(k for k in question.options
                                                                             if k != question.answer)
    for record in inputs.records:
        answers[ddqa_id(record)] = record["messages"][1]["content"]
    return answers


@click.command()
@click.option("--images", default=8366, show_default=True, help="Benchmark images (MMAD has 8,366).")
def main(images: int) -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name in ("raw", "organised/demo", "benchmark"):
            (root / name).mkdir(parents=True)
        DEMO.fetch(load_params("sources.demo.fetch"), root / "raw")
        DEMO.organise(load_params("sources.demo.organise"), root / "raw", root / "organised" / "demo")
        build_ddqa(read_manifest(root / "organised" / "demo"), root / "ddqa", root / "counts.json",
                   DDQAConfig.load("ddqa"))
        _benchmark(root / "benchmark", images, rng)
        settings = EvalConfig.load("evaluate")
        inputs = EvalInputs.load(root / "benchmark", root / "ddqa" / "test.jsonl", settings)
        for model, share in (("base", 0.4), ("tuned", 0.6)):
            metrics = root / "metrics" / model
            write_outputs(inputs, _answers(inputs, share, model), metrics, root / "predictions" / model, settings)
        bootstrap = BootstrapSettings.load("evaluate.bootstrap")
        compare(root / "predictions" / "base", root / "predictions" / "tuned", root / "ddqa" / "test.jsonl",
                root / "compare.json", root / "compare_scores.json", bootstrap)
        (root / "train" / "plots" / "metrics").mkdir(parents=True)
        start, cpu = time.perf_counter(), time.process_time()
        build_report(Inputs(root / "ddqa", root / "organised", root / "counts.json", root / "benchmark",
                            root / "predictions", root / "metrics" / "base", root / "metrics" / "tuned",
                            root / "compare_scores.json", root / "train"), root / "reports")
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        sizes = {path.name: path.stat().st_size for path in (root / "reports").glob("*.html")}
        data = sum(path.stat().st_size for path in (root / "reports" / "answers").glob("*.js"))
        thumbs = [path.stat().st_size for path in (root / "reports" / "thumbs").iterdir()]
        questions = len(inputs.questions)
    click.echo(f"{questions} questions over {images} images: report built in {wall:.1f} s ({used:.1f} s CPU)")
    for name, size in sorted(sizes.items()):
        click.echo(f"  {name:<12} {size / 1e6:6.2f} MB")
    click.echo(f"  answers/*.js {data / 1e6:6.2f} MB, {len(thumbs)} thumbnails {sum(thumbs) / 1e6:.1f} MB")
    click.echo(json.dumps({"questions": questions, "seconds": round(wall, 1), "index_mb": sizes["index.html"] / 1e6}))


if __name__ == "__main__":
    main()
