"""DVC stage `fetch_model`: the base model (tiny offline build, or a pinned Hub download)."""

from pathlib import Path

import click

from eiad.cli import folder, output_folder, params_option, stage
from eiad.io import atomic_directory
from eiad.models.config import ModelHandle
from eiad.models.fetch import fetch_base_model


@click.command()
@output_folder("--out", "Folder for the Hugging Face model folder (replaced atomically).")
@folder("--ddqa", "DDQA folder: its text trains the tiny model's tokenizer.")
@params_option
@stage
def main(out: Path, ddqa: Path, params_file: str) -> None:
    """Build or download the base model as set in `model`."""
    model = ModelHandle.load(params_file)
    with atomic_directory(out) as staging:
        fetch_base_model(model, staging, ddqa)


if __name__ == "__main__":
    main()
