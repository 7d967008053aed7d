"""DVC stage `evaluate@<model>`: MMAD (the protocol of `evaluate.protocol`) and the DDQA test split.

Answers are kept in a scratch cache as they come, so a killed run continues where it stopped.
With `evaluate.launch` asking for more than one process, the stage re-runs itself under the
launcher, images dealt to the processes, and rank 0 writes the outputs.
"""

import sys
from pathlib import Path

import click

from eiad.cli import folder, input_file, output_folder, params_option, stage
from eiad.errors import EiadError
from eiad.evaluation.config import EvalConfig
from eiad.evaluation.runner import run_evaluation
from eiad.launch import end_worker, needs_launch, run_launched
from eiad.models.config import ModelHandle


@click.command()
@folder("--model", "Model folder to evaluate (base or merged).")
@folder("--benchmark", "MMAD-format benchmark folder (mmad.json + images).")
@input_file("--ddqa-test", "DDQA test split (jsonl).")
@output_folder("--metrics", "Folder for mmad.json, ddqa.json and mmad_per_type.json (git-tracked metrics).")
@output_folder("--predictions", "Folder for per-question answers (MMAD's answers format) and DDQA predictions.")
@output_folder("--cache", "Scratch folder for answers as they come (kept across runs, so a killed run resumes).")
@params_option
@stage
def main(model: Path, benchmark: Path, ddqa_test: Path, metrics: Path, predictions: Path, cache: Path,
         params_file: str) -> None:
    """Score MODEL as set in `evaluate`."""
    config = EvalConfig.load("evaluate", params_file)
    handle = ModelHandle.load(params_file)
    if needs_launch(config.launch):
        status = run_launched(config.launch, Path(__file__), sys.argv[1:])
        if status:
            raise EiadError(f"evaluate: the {config.launch.launcher} workers failed (exit status {status})")
        return
    scores = run_evaluation(handle, model, benchmark, ddqa_test, metrics, predictions, cache, config)
    if scores is not None:
        click.echo(f"MMAD average: {scores['mmad']['average'].get('Average')} "
                   f"(MMAD's script: {scores['mmad']['mmad_script']['average'].get('Average')})")
    end_worker()


if __name__ == "__main__":
    main()
