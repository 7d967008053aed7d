"""DVC stage `compare`: the fine-tuned model against the base one on the same questions (paired)."""

from pathlib import Path

import click

from eiad.cli import folder, input_file, output_file, params_option, stage
from eiad.evaluation.compare import compare
from eiad.stats import BootstrapSettings


@click.command()
@folder("--base", "The base model's predictions (evaluate@base).")
@folder("--tuned", "The fine-tuned model's predictions (evaluate@tuned).")
@input_file("--ddqa-test", "DDQA test split (jsonl): the split groups resampled for DDQA's intervals.")
@output_file("--metrics", "JSON file for the headline difference (a DVC metric).")
@output_file("--details", "JSON file for every paired figure.")
@params_option
@stage
def main(base: Path, tuned: Path, ddqa_test: Path, metrics: Path, details: Path, params_file: str) -> None:
    """Tuned minus base on MMAD and DDQA, with 95% intervals as set in `evaluate.bootstrap`."""
    result = compare(base, tuned, ddqa_test, metrics, details, BootstrapSettings.load("evaluate.bootstrap", params_file))
    average = result["mmad"]["Average"]
    click.echo(f"MMAD average, tuned - base: {average['difference']:+.2f} [{average['low']}, {average['high']}]")


if __name__ == "__main__":
    main()
