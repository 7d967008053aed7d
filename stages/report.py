"""DVC stage `report`: the pipeline's outputs as a static site (reports/index.html) and a summary."""

from pathlib import Path

import click

from eiad.cli import folder, input_file, output_folder, stage
from eiad.report.build import Inputs, build_report


@click.command()
@folder("--ddqa", "DDQA folder (train.jsonl, test.jsonl).")
@folder("--organised", "Folder of the organised sources (their manifests give masks and groups).")
@input_file("--counts", "DDQA's record counts (build_ddqa's metrics/ddqa_counts.json).")
@folder("--benchmark", "The MMAD-format benchmark (its images).")
@folder("--predictions", "Folder holding base/ and tuned/ predictions (evaluate's outputs).")
@folder("--base-metrics", "The base model's score tables (metrics/base).")
@folder("--tuned-metrics", "The fine-tuned model's score tables (metrics).")
@input_file("--compared", "The paired comparison (compare's metrics/compare_scores.json).")
@folder("--training", "DVCLive's training folder (metrics/train).")
@output_folder("--out", "Folder for the site (replaced atomically).")
@stage
def main(ddqa: Path, organised: Path, counts: Path, benchmark: Path, predictions: Path, base_metrics: Path,
         tuned_metrics: Path, compared: Path, training: Path, out: Path) -> None:
    """Write the report of the pipeline's outputs into OUT."""
    build_report(Inputs(ddqa, organised, counts, benchmark, predictions, base_metrics, tuned_metrics, compared,
                        training), out)
    click.echo(f"report: {out / 'index.html'}")


if __name__ == "__main__":
    main()
