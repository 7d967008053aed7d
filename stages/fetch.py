"""DVC stage `fetch@<source>`: download (or, for the demo, generate) one source's native data."""

from pathlib import Path

import click

from eiad.cli import output_folder, params_option, stage
from eiad.io import atomic_directory
from eiad.params import load_params
from eiad.sources import get_source


@click.command()
@click.argument("source")
@output_folder("--out", "Folder for the native data (replaced atomically when the fetch succeeds).")
@params_option
@stage
def main(source: str, out: Path, params_file: str) -> None:
    """Fetch SOURCE (a package of eiad/sources, e.g. `demo`) as set in `sources.SOURCE.fetch`."""
    params = load_params(f"sources.{source}.fetch", params_file)
    with atomic_directory(out) as staging:
        get_source(source).fetch(params, staging)


if __name__ == "__main__":
    main()
