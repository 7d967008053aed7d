"""DVC stage `evaluate@<model>`: MMAD (MMAD's protocol) and the DDQA test split."""

from pathlib import Path

import click

from eiad.base_model import model_config
from eiad.cli import params_option, stage
from eiad.evaluate import EvalConfig, run_evaluation
from eiad.models import get_adapter
from eiad.params import from_dict, load_params


@click.command()
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Model folder to evaluate (base or merged).")
@click.option("--benchmark", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="MMAD-format benchmark folder (mmad.json + images).")
@click.option("--ddqa-test", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="DDQA test split (jsonl).")
@click.option("--metrics", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for mmad.json, ddqa.json and mmad_per_type.json (git-tracked metrics).")
@click.option("--predictions", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for per-question answers (MMAD's answers format) and DDQA predictions.")
@params_option
@stage
def main(model: Path, benchmark: Path, ddqa_test: Path, metrics: Path, predictions: Path, params_file: str) -> None:
    """Score MODEL as set in `evaluate`."""
    config = from_dict(EvalConfig, load_params("evaluate", params_file), "evaluate")
    base = model_config(load_params("model", params_file))
    scores = run_evaluation(get_adapter(base.family), model, benchmark, ddqa_test, metrics, predictions, config,
                            base.trust_remote_code)
    click.echo(f"MMAD average: {scores['mmad']['average'].get('Average')}  DDQA: {scores['ddqa']}")


if __name__ == "__main__":
    main()
