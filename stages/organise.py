"""DVC stage `organise@<source>`: native layout -> unified layout + manifest."""

from pathlib import Path

import click

from eiad.cli import folder, output_file, output_folder, params_option, stage
from eiad.io import atomic_directory, atomic_write_json
from eiad.params import load_params
from eiad.sources import get_source


@click.command()
@click.argument("source")
@folder("--raw", "Folder holding the source's native data (the fetch stage's output).")
@output_folder("--out", "Folder for the unified layout and manifest.jsonl (replaced atomically).")
@output_file("--report", "JSON file for the counts of organised and skipped samples (a DVC metric).")
@params_option
@stage
def main(source: str, raw: Path, out: Path, report: Path, params_file: str) -> None:
    """Organise SOURCE's native data as set in `sources.SOURCE.organise`."""
    params = load_params(f"sources.{source}.organise", params_file)
    with atomic_directory(out) as staging:
        counts = get_source(source).organise(params, raw, staging)
    atomic_write_json(report, counts.to_json())
    click.echo(f"{source}: {sum(counts.counts.values())} samples organised, {len(counts.skipped)} skipped")


if __name__ == "__main__":
    main()
