"""What a model is asked for one benchmark question: MMAD's 1-shot prompt, or EIAD's 0-shot form."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from eiad.benchmark.mmad import Question, TemplateKind, template
from eiad.data.images import load_rgb
from eiad.questions import Prompt, format_question

INSTRUCTION = (
    "You are an industrial inspector who checks products by images. You should judge whether there is a defect "
    "in the query image and answer the questions about it. Answer with the option's letter from the given "
    "choices directly."
)
TEMPLATE_NOTE = "Image 1 is a normal sample, which can be used as a template to compare the image being queried."
QUERY_NOTE = (
    "The last image is the query image: Following is the question list. Answer with the option's letter from "
    "the given choices directly:"
)

Protocol = Literal["0-shot", "1-shot"]


def build_prompt(root: Path, question: Question, protocol: Protocol, kind: TemplateKind = "random") -> Prompt:
    """One question as MMAD asks it: 0-shot (EIAD's form, as DDQA trains) or 1-shot."""
    query = load_rgb(root / question.image)
    if protocol == "0-shot":
        return [query, format_question(question.text, question.options)]
    options = "\n".join(f"{letter}. {text}" for letter, text in question.options.items())
    text = f"{INSTRUCTION}\n{TEMPLATE_NOTE}\n{QUERY_NOTE}\nQuestion 1: {question.text} \n{options}"
    return [load_rgb(root / template(root, question, kind)), query, text]


