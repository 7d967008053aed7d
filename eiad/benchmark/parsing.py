"""Reading the chosen option's letter out of a model's answer, as MMAD's and EIAD's scripts do."""

from __future__ import annotations

import difflib
import re
from typing import Literal

_LETTER = re.compile(r"\b([A-E])\b")

ParseStatus = Literal["letter", "fuzzy", "unparsed", "choice"]


def parse_answer(output: str, options: dict[str, str], keep: Literal["first", "last"] = "last",
                 ) -> tuple[str | None, ParseStatus]:
    """The standalone capital A-E that ``keep`` names (MMAD's scripts keep the last, EIAD's the first);
    else the closest option text (difflib, cutoff 0, as their fallback), flagged ``fuzzy``.

    Lower-case letters are not letters to their regex, so they go to the fuzzy match. An empty
    output, or one with no options to match against, is unparsed.
    """
    letters = _LETTER.findall(output)
    if letters:
        return letters[-1 if keep == "last" else 0], "letter"
    if not output.strip() or not options:
        return None, "unparsed"
    texts = list(options.values())
    closest = difflib.get_close_matches(output, texts, n=1, cutoff=0.0)
    if not closest:
        return None, "unparsed"
    return list(options)[texts.index(closest[0])], "fuzzy"
