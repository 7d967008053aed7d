"""DVC stage `merge`: fold the LoRA adapter into the base model."""

from pathlib import Path

import click

from eiad.base_model import model_config
from eiad.cli import params_option, stage
from eiad.merge import merge_lora
from eiad.models import get_adapter
from eiad.params import load_params


@click.command()
@click.option("--base", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Base model folder.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="LoRA adapter folder (train_lora's output).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the merged model (replaced atomically).")
@params_option
@stage
def main(base: Path, adapter: Path, out: Path, params_file: str) -> None:
    """Merge ADAPTER into BASE and save a model folder that loads on its own."""
    config = model_config(load_params("model", params_file))
    merge_lora(get_adapter(config.family), base, adapter, out, config.trust_remote_code)


if __name__ == "__main__":
    main()
