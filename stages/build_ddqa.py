"""DVC stage `build_ddqa`: the four DDQA tasks, train and test splits, and their counts."""

from pathlib import Path

import click

from eiad.cli import folder, output_file, output_folder, params_option, stage
from eiad.data.layout import read_manifest
from eiad.ddqa.build import DDQAConfig, build_ddqa
from eiad.params import load_params


@click.command()
@folder("--organised", "Folder holding one organised folder per source (data/organised).")
@output_folder("--out", "Folder for the DDQA jsonl files (replaced atomically).")
@output_file("--summary", "JSON file for the record counts (a DVC metric).")
@params_option
@stage
def main(organised: Path, out: Path, summary: Path, params_file: str) -> None:
    """Build DDQA from the sources listed in `datasets`, as set in `ddqa`."""
    config = DDQAConfig.load("ddqa", params_file)
    samples = [s for key in load_params("datasets", params_file) for s in read_manifest(organised / key)]
    counts = build_ddqa(samples, out, summary, config)
    click.echo(f"DDQA records: {counts['records']}")


if __name__ == "__main__":
    main()
