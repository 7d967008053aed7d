"""The report's summary as Markdown for a pull request: tables with intervals, and the per-type
chart as a Mermaid ``xychart`` that GitHub draws itself (no image host, no web service)."""

from __future__ import annotations

from typing import Any

from eiad.benchmark.scoring import SHORT_TYPES, TYPES


def _cell(value: float | None, band: list[float] | None = None, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return f"{text} [{band[0]:.2f}, {band[1]:.2f}]" if band else text


def summary_markdown(scores: dict[str, Any], ddqa: dict[str, Any], compared: dict[str, Any],
                     charts: dict[str, str]) -> str:
    base, tuned, paired = scores["base"], scores["tuned"], compared["mmad"]
    types = [name for name in (*TYPES, "Average") if name in tuned["average"]]

    def band(table: dict[str, Any], name: str) -> list[float] | None:
        return table.get("intervals", {}).get("average", {}).get(name)

    lines = [
        "### MMAD: base and fine-tuned (95% bootstrap intervals over images)",
        "",
        (f"{tuned['protocol']}, answers by {tuned['answer']}, {tuned['questions']} questions. "
        f"MMAD's own script: {base['mmad_script']['average']['Average']:.2f} (base), "
        f"{tuned['mmad_script']['average']['Average']:.2f} (fine-tuned)."),
        "",
        "| | base | fine-tuned | fine-tuned − base |",
        "|---|---|---|---|",
    ]
    for name in types:
        pair = paired.get(name)
        difference = _cell(pair["difference"], [pair["low"], pair["high"]], signed=True) if pair else "–"
        lines.append(f"| {name} | {_cell(base['average'][name], band(base, name))} | "
                     f"{_cell(tuned['average'][name], band(tuned, name))} | {difference} |")
    lines += ["", (f"The fine-tuned model got {paired['tuned_only']} questions right that the base did not, "
                  f"the base {paired['base_only']}."), "", "```mermaid", "xychart-beta",
              '    title "MMAD per question type"',
              "    x-axis [" + ", ".join(f'"{SHORT_TYPES.get(n, n)}"' for n in types) + "]",
              '    y-axis "percent" 0 --> 100',
              "    bar [" + ", ".join(f"{base['average'][n]:.1f}" for n in types) + "]",
              "    bar [" + ", ".join(f"{tuned['average'][n]:.1f}" for n in types) + "]",
              "```", "", "(bars: base, then fine-tuned)", "", "### DDQA test split", "",
              "| task | base | fine-tuned | fine-tuned − base |", "|---|---|---|---|"]
    for task in sorted(tuned_tasks := ddqa["tuned"]):
        pair = compared["ddqa"].get(task, {})
        name = pair.get("figure", "accuracy")
        scale = "mean IoU" if name == "mean_iou" else name.replace("_", " ")
        difference = _cell(pair["difference"], [pair["low"], pair["high"]], signed=True) if pair else "–"
        lines.append(f"| {task} ({scale}) | {_cell(ddqa['base'][task].get(name), ddqa['base'][task].get('intervals', {}).get(name))}"
                     f" | {_cell(tuned_tasks[task].get(name), tuned_tasks[task].get('intervals', {}).get(name))}"
                     f" | {difference} |")
    lines += ["", "Charts and the answers to browse are in the report artifact (" +
              ", ".join(f"`{path}`" for path in charts.values()) + ")."]
    return "\n".join(lines) + "\n"
