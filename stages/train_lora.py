"""DVC stage `train_lora`: LoRA fine-tuning on DDQA's train.jsonl (resumes an interrupted run).

Before the model loads, every value of `train` and every record's images are checked
(eiad.training.checks), so that a bad setting or a missing image stops it in seconds.

With `train.launch` asking for more than one process, the stage re-runs itself, with its own
command line, under the launcher (one worker per GPU) and waits for them.
"""

import sys
from pathlib import Path

import click

from eiad.cli import folder, input_file, output_file, output_folder, params_option, stage
from eiad.errors import EiadError
from eiad.io import atomic_write_json
from eiad.launch import end_worker, is_worker, needs_launch, rank, run_launched
from eiad.models.config import ModelHandle
from eiad.training.checks import check_training
from eiad.training.config import TrainConfig
from eiad.training.trainer import run_summary, train_lora


@click.command()
@folder("--model", "Base model folder.")
@input_file("--data", "Training records (ms-swift messages + images jsonl).")
@output_folder("--out", "Folder for the trained LoRA adapter (replaced atomically).")
@output_folder("--checkpoints", "Checkpoint folder kept across runs, so an interrupted run resumes.")
@output_folder("--metrics", "DVCLive folder for the training curves.")
@output_file("--summary", "The run's final loss and duration: the few figures `dvc metrics show` lists.")
@params_option
@stage
def main(model: Path, data: Path, out: Path, checkpoints: Path, metrics: Path, summary: Path, params_file: str) -> None:
    """Fine-tune the base model with LoRA as set in `train`."""
    config = TrainConfig.load("train", params_file)
    handle = ModelHandle.load(params_file)
    if not is_worker():  # once, before any worker starts and before the model loads
        check_training(config, data)
    if needs_launch(config.launch):
        status = run_launched(config.launch, Path(__file__), sys.argv[1:])
        if status:
            raise EiadError(f"train_lora: the {config.launch.launcher} workers failed (exit status {status})")
        return
    result = train_lora(handle, model, data, out, checkpoints, metrics, config)
    if rank() == 0:
        figures = run_summary(result)
        atomic_write_json(summary, figures)
        click.echo(f"train loss {figures['train_loss']:.4f} in {figures['train_seconds']:.0f} s")
    end_worker()


if __name__ == "__main__":
    main()
