"""DVC stage `evaluate@<model>`: MMAD (MMAD's protocol) and the DDQA test split."""

from pathlib import Path

import click

from eiad.cli import folder, input_file, output_folder, params_option, stage
from eiad.evaluation.runner import EvalConfig, run_evaluation
from eiad.models.config import ModelHandle


@click.command()
@folder("--model", "Model folder to evaluate (base or merged).")
@folder("--benchmark", "MMAD-format benchmark folder (mmad.json + images).")
@input_file("--ddqa-test", "DDQA test split (jsonl).")
@output_folder("--metrics", "Folder for mmad.json, ddqa.json and mmad_per_type.json (git-tracked metrics).")
@output_folder("--predictions", "Folder for per-question answers (MMAD's answers format) and DDQA predictions.")
@params_option
@stage
def main(model: Path, benchmark: Path, ddqa_test: Path, metrics: Path, predictions: Path, params_file: str) -> None:
    """Score MODEL as set in `evaluate`."""
    config = EvalConfig.load("evaluate", params_file)
    scores = run_evaluation(ModelHandle.load(params_file), model, benchmark, ddqa_test, metrics, predictions, config)
    click.echo(f"MMAD average: {scores['mmad']['average'].get('Average')}  DDQA: {scores['ddqa']}")


if __name__ == "__main__":
    main()
