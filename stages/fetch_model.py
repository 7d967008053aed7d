"""DVC stage `fetch_model`: the base model (tiny offline build, or a pinned Hub download)."""

from pathlib import Path

import click

from eiad.base_model import fetch_base_model, model_config
from eiad.cli import params_option, stage
from eiad.io import atomic_directory
from eiad.params import load_params


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the Hugging Face model folder (replaced atomically).")
@click.option("--ddqa", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="DDQA folder: its text trains the tiny model's tokenizer.")
@params_option
@stage
def main(out: Path, ddqa: Path, params_file: str) -> None:
    """Build or download the base model as set in `model`."""
    config = model_config(load_params("model", params_file))
    with atomic_directory(out) as staging:
        fetch_base_model(config, staging, ddqa)


if __name__ == "__main__":
    main()
