"""The report's charts, drawn by matplotlib (no browser-side charting, so pages open offline)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI runner
import matplotlib.pyplot as plt

COLOURS = {"base": "#9aa5b1", "tuned": "#1f77b4"}


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


Bar = tuple[float, tuple[float, float] | None]  # value and its 95% interval, if known


def paired_bars(labels: Sequence[str], series: dict[str, Sequence[Bar]], title: str, ylabel: str,
                limit: float = 100.0) -> bytes:
    """Bars per label for each model, with their 95% intervals as error bars."""
    figure, axes = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 3.2))
    width = 0.8 / max(1, len(series))
    for index, (name, bars) in enumerate(series.items()):
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        values = [value for value, _ in bars]
        errors = [[value - (band or (value, value))[0] for value, band in bars],
                  [(band or (value, value))[1] - value for value, band in bars]]
        axes.bar(xs, values, width, yerr=errors, capsize=3, label=name, color=COLOURS.get(name))
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylim(0, limit)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(frameon=False, fontsize=8)
    return _png(figure)


def curves(panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], title: str) -> bytes:
    """One panel per quantity (loss, learning rate), a line per run: (steps, values)."""
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.0), squeeze=False)
    for axis, (name, lines) in zip(axes[0], panels.items()):
        for label, (steps, values) in lines.items():
            axis.plot(steps, values, label=label, color=COLOURS.get(label))
        axis.set_xlabel("step")
        axis.set_title(name)
        if len(lines) > 1:
            axis.legend(frameon=False, fontsize=8)
    figure.suptitle(title)
    return _png(figure)


def histogram(series: dict[str, Sequence[float]], title: str, xlabel: str) -> bytes:
    figure, axes = plt.subplots(figsize=(4.5, 3.0))
    for name, values in series.items():
        axes.hist(values, bins=20, range=(0, 1), alpha=0.6, label=name, color=COLOURS.get(name))
    axes.set_xlabel(xlabel)
    axes.set_ylabel("records")
    axes.set_title(title)
    axes.legend(frameon=False, fontsize=8)
    return _png(figure)
