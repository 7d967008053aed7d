"""DVC stage `train_lora`: LoRA fine-tuning on DDQA's train.jsonl (resumes an interrupted run).

With `train.launch` asking for more than one process, the stage re-runs itself under the
launcher, one worker per GPU, and waits for them.
"""

from pathlib import Path

import click

from eiad.base_model import model_config
from eiad.cli import params_option, stage
from eiad.errors import EiadError
from eiad.launch import needs_launch, rank, run_launched
from eiad.models import get_adapter
from eiad.params import from_dict, load_params
from eiad.train import TrainConfig, train_lora


@click.command()
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Base model folder.")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Training records (ms-swift messages + images jsonl).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the trained LoRA adapter (replaced atomically).")
@click.option("--checkpoints", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint folder kept across runs, so an interrupted run resumes.")
@click.option("--metrics", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="DVCLive folder for the training curves.")
@params_option
@stage
def main(model: Path, data: Path, out: Path, checkpoints: Path, metrics: Path, params_file: str) -> None:
    """Fine-tune the base model with LoRA as set in `train`."""
    config = from_dict(TrainConfig, load_params("train", params_file), "train")
    base = model_config(load_params("model", params_file))
    if needs_launch(config.launch):
        args = ["--model", model, "--data", data, "--out", out, "--checkpoints", checkpoints, "--metrics", metrics,
                "--params", params_file]
        status = run_launched(config.launch, Path(__file__), [str(arg) for arg in args])
        if status:
            raise EiadError(f"train_lora: the {config.launch.launcher} workers failed (exit status {status})")
        return
    result = train_lora(get_adapter(base.family), model, data, out, checkpoints, metrics, config,
                        base.trust_remote_code)
    if rank() == 0:
        click.echo(f"train loss {result.get('train_loss', float('nan')):.4f} in {result.get('train_runtime', 0):.0f} s")


if __name__ == "__main__":
    main()
