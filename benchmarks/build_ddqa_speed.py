"""Benchmark: build_ddqa's speed against merely decoding every mask once.

Generates a demo dataset (or reads an organised one), then times, best of N:
  * decode: read every defect mask of the manifest once (the floor for any builder);
  * build: build_ddqa end to end (masks, geometry, options, split, writing the jsonl files).

    python benchmarks/build_ddqa_speed.py                      # demo at default params
    python benchmarks/build_ddqa_speed.py --organised data/organised/demo
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from eiad.data.images import read_mask
from eiad.data.layout import read_manifest
from eiad.ddqa.build import DDQAConfig, build_ddqa
from eiad.params import load_params
from eiad.sources.demo import SOURCE as DEMO


def _best(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option("--organised", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An organised dataset folder; default: generate the demo from params.yaml.")
@click.option("--image-size", type=int, default=None, help="Override the demo image size.")
@click.option("--repeats", type=int, default=5, show_default=True)
def main(organised: Path | None, image_size: int | None, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        if organised is None:
            params = load_params("sources.demo.fetch")
            if image_size:
                params["render"]["image_size"] = image_size
            raw, organised = Path(scratch, "raw"), Path(scratch, "organised")
            raw.mkdir(), organised.mkdir()
            DEMO.fetch(params, raw)
            DEMO.organise(load_params("sources.demo.organise"), raw, organised)
        samples = read_manifest(organised)
        masks = [Path(s.mask) for s in samples if s.mask]
        decode = _best(repeats, lambda: [read_mask(path) for path in masks])
        out = Path(scratch, "ddqa")
        build = _best(repeats, lambda: build_ddqa(samples, out, Path(scratch, "counts.json"), DDQAConfig.load("ddqa")))
    click.echo(f"images: {len(samples)} ({len(masks)} with masks)")
    click.echo(f"decode every mask once: {decode:.3f} s")
    click.echo(f"build_ddqa:             {build:.3f} s  ({len(samples) / build:,.0f} images/s)")
    click.echo(f"ratio build / decode:   {build / decode:.2f}x")


if __name__ == "__main__":
    main()
