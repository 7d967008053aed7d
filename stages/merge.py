"""DVC stage `merge`: fold the LoRA adapter into the base model."""

from pathlib import Path

import click

from eiad.cli import folder, output_folder, params_option, stage
from eiad.models.config import ModelHandle
from eiad.training.merge import merge_lora


@click.command()
@folder("--base", "Base model folder.")
@folder("--adapter", "LoRA adapter folder (train_lora's output).")
@output_folder("--out", "Folder for the merged model (replaced atomically).")
@params_option
@stage
def main(base: Path, adapter: Path, out: Path, params_file: str) -> None:
    """Merge ADAPTER into BASE and save a model folder that loads on its own."""
    merge_lora(ModelHandle.load(params_file), base, adapter, out)


if __name__ == "__main__":
    main()
