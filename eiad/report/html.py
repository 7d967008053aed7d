"""Small HTML helpers: escaped text, tables, and the page frame every report page shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #1d2430; }
h1, h2, h3 { margin: 1.2em 0 .4em; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d5dae0; padding: .25em .6em; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; } th { background: #f2f4f7; }
.band { color: #6b7785; font-size: 90%; } .up { color: #137333; } .down { color: #b3261e; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; } .card { border: 1px solid #d5dae0; border-radius: 6px;
  padding: .6em 1em; min-width: 12em; } .card b { font-size: 150%; display: block; }
.sample { display: flex; gap: 1em; border-top: 1px solid #e3e6ea; padding: .6em 0; }
.sample img { border: 1px solid #ccd; } .records td, .records th { text-align: left; } .views img { width: 64px; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: .4em; margin: 0; max-width: 60em; }
.controls label { margin-right: 1em; } .row { border-top: 1px solid #e3e6ea; padding: .5em 0; display: flex; gap: 1em; }
"""


def page(title: str, body: str, depth: int = 0) -> str:
    """A complete page: no external resource of any kind (it must open from disk, offline)."""
    up = "../" * depth
    navigation = (f'<nav><a href="{up}index.html">Summary</a><a href="{up}gallery.html">DDQA gallery</a>'
                  f'<a href="{up}errors.html">Answers to browse</a></nav>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{navigation}<h1>{escape(title)}</h1>{body}</body></html>\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table; cells are escaped unless they are :class:`Markup`."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell if isinstance(cell, Markup) else escape(str(cell))}</td>"
                                    for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """Text that is already HTML."""


def figure(value: float | None, band: Sequence[float] | None = None, signed: bool = False) -> Markup:
    """A number with its 95% interval beneath it; a signed difference is coloured by its direction
    when the interval excludes zero."""
    if value is None:
        return Markup("–")
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    if band is None:
        return Markup(escape(text))
    low, high = band
    tone = ("up" if low > 0 else "down" if high < 0 else "") if signed else ""
    return Markup(f'<span class="{tone}">{escape(text)}</span> <span class="band">[{low:.2f}, {high:.2f}]</span>')
