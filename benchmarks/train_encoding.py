"""Benchmark: LoRA training steps with eager against lazy encoding, on the pipeline's own data.

Trains the same number of steps twice from ``models/base`` on ``data/ddqa/train.jsonl`` (run
``dvc repro fetch_model`` first), once encoding every record up front and once per batch, and
prints the wall time of each and their ratio. Both runs see the same batches in the same order.

    python benchmarks/train_encoding.py [--steps 200] [--workers 0]
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click

from eiad.models.config import ModelHandle
from eiad.training.config import TrainConfig
from eiad.training.trainer import train_lora


@click.command()
@click.option("--steps", default=200, show_default=True, help="Training steps per run.")
@click.option("--workers", default=0, show_default=True, help="dataloader_workers for the lazy run.")
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), default="models/base")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="data/ddqa/train.jsonl")
def main(steps: int, workers: int, model: Path, data: Path) -> None:
    handle = ModelHandle.load()
    base = replace(TrainConfig.load("train"), max_steps=steps, save_steps=10 * steps, logging_steps=steps)
    seconds = {}
    for encoding in ("eager", "lazy"):
        config = replace(base, encoding=encoding, dataloader_workers=workers if encoding == "lazy" else 0)
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            result = train_lora(handle, model, data, Path(scratch) / "adapter", Path(scratch) / "checkpoints",
                                Path(scratch) / "metrics", config)
            seconds[encoding] = time.perf_counter() - start
        click.echo(f"{encoding:>5}: {seconds[encoding]:7.1f} s for {steps} steps of {config.per_device_batch} "
                   f"(loss {result['train_loss']:.4f})")
    click.echo(f"lazy / eager: {seconds['lazy'] / seconds['eager']:.2f}x")


if __name__ == "__main__":
    main()
