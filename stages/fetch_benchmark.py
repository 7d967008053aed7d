"""DVC stage `fetch_benchmark`: the MMAD-format benchmark (downloaded, or generated offline)."""

from pathlib import Path

import click

from eiad.cli import output_folder, params_option, stage
from eiad.io import atomic_directory
from eiad.params import load_params
from eiad.sources import get_source


@click.command()
@click.argument("source")
@output_folder("--out", "Folder for mmad.json and its images (replaced atomically).")
@params_option
@stage
def main(source: str, out: Path, params_file: str) -> None:
    """Fetch the benchmark of SOURCE (`demo` generates one) as set in `benchmark.SOURCE`."""
    params = load_params(f"benchmark.{source}", params_file)
    with atomic_directory(out) as staging:
        get_source(source).fetch_benchmark(params, staging)


if __name__ == "__main__":
    main()
