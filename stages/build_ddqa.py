"""DVC stage `build_ddqa`: the four DDQA tasks, train and test splits, and their counts."""

from pathlib import Path

import click

from eiad.cli import params_option, stage
from eiad.ddqa import DDQAConfig, build_ddqa
from eiad.layout import read_manifest
from eiad.params import from_dict, load_params


@click.command()
@click.option("--organised", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder holding one organised folder per source (data/organised).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the DDQA jsonl files (replaced atomically).")
@click.option("--summary", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file for the record counts (a DVC metric).")
@params_option
@stage
def main(organised: Path, out: Path, summary: Path, params_file: str) -> None:
    """Build DDQA from the sources listed in `datasets`, as set in `ddqa`."""
    config = from_dict(DDQAConfig, load_params("ddqa", params_file), "ddqa")
    samples = [s for key in load_params("datasets", params_file) for s in read_manifest(organised / key)]
    counts = build_ddqa(samples, out, summary, config)
    click.echo(f"DDQA records: {counts['records']}")


if __name__ == "__main__":
    main()
