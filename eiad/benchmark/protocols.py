"""How a benchmark question is asked: MMAD's and EIAD's protocols, to the character of their scripts.

The texts below are MMAD's (``evaluation/examples/Transformers/minicpm_query.py`` with the question
parsing of ``GPT4/gpt4v.py``; ``qwen2_5_vl_query.py`` for the Qwen2.5-VL wording) and EIAD's
(``eval/evaluation.py``); REFERENCE.md §1a has them. A protocol is data: which images come before
the question, which text surrounds it, and which letter of an answer counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eiad.benchmark.mmad import Question, TemplateKind
from eiad.errors import ConfigError
from eiad.questions import ImageRef, PromptPlan, format_question

# gpt4v.py's `instruction`, which starts and ends with a newline
INSTRUCTION = (
    "\nYou are an industrial inspector who checks products by images. You should judge whether there is a defect "
    "in the query image and answer the questions about it.\nAnswer with the option's letter from the given choices "
    "directly.\n"
)
KNOWLEDGE_LEAD = ("Following is the domain knowledge which contains some type of defect and the normal object "
                  "characteristics: \n ")
QUERY_LEAD = ("The last image is the query image: Following is the question list. Answer with the option's letter "
              "from the given choices directly: \n")
# qwen2_5_vl_query.py's own lines around the images
QWEN_ANSWER_NOTE = "Answer with the option's letter from the given choices directly! "
QWEN_TEMPLATE_NOTE = "Following is/are {count} image of normal sample, which can be used as a template to compare " \
                     "the image being queried."
QWEN_QUERY_NOTE = "Following is the query image: "
QWEN_QUESTIONS_NOTE = "Following is the question list: "

Wording = Literal["minicpm", "qwen2_5_vl"]
Letter = Literal["first", "last"]


@dataclass(frozen=True)
class Protocol:
    """``templates``: normal templates come before the query image; ``instructed``: MMAD's inspector
    instruction and question list surround the question (else EIAD's bare question); ``letter``:
    which standalone capital of an answer counts."""

    name: str
    templates: bool
    instructed: bool
    letter: Letter
    description: str


PROTOCOLS: dict[str, Protocol] = {protocol.name: protocol for protocol in (
    Protocol("mmad-1shot", True, True, "last", "MMAD's headline setting: normal template(s), then the query image"),
    Protocol("mmad-0shot", False, True, "last", "MMAD's scripts with no template: the instruction stays"),
    Protocol("eiad-0shot", False, False, "first", "EIAD's eval/evaluation.py: the query image and the bare question"),
)}


def protocol_named(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"evaluate.protocol: no protocol {name!r}; known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass(frozen=True)
class Asking:
    """How every question of a run is asked (the ``evaluate`` params, resolved)."""

    protocol: Protocol
    template_kind: TemplateKind
    template_count: int
    wording: Wording
    history: bool
    knowledge: dict[str, str] | None  # image -> domain knowledge text, when on

    @property
    def templates(self) -> int:
        """Templates per query image (0 for a protocol without them)."""
        return self.template_count if self.protocol.templates else 0


def template_note(count: int) -> str:
    if count == 1:
        return "Image 1 is a normal sample, which can be used as a template to compare the image being queried."
    return f"Image 1-{count} are {count} normal samples, which can be used as a template to compare the image " \
           "being queried."


def question_block(question: Question, numbered: bool = True) -> str:
    """gpt4v.py's ``parse_conversation`` text: numbered by the question's position in its image's conversation."""
    options = "".join(f"{letter}. {text}\n" for letter, text in question.options.items())
    lead = f"Question {question.index + 1}: " if numbered else ""
    return f"{lead}{question.text} \n{options}"


def history_entry(question: Question, response: str) -> str:
    """What ``--record_history`` adds after a question is answered: its text, then the model's response."""
    return question_block(question) + "\n" + "\n" + response + "\n"


def plan(question: Question, asking: Asking, history: str = "") -> PromptPlan:
    """The prompt for ``question``: images as references, text exactly as the protocol's script writes it."""
    query = ImageRef(question.image)
    if not asking.protocol.instructed:
        return [query, format_question(question.text, question.options)]
    templates = [ImageRef(path) for path in question.templates(asking.template_kind)[:asking.templates]]
    knowledge = asking.knowledge[question.image] if asking.knowledge is not None else None
    lead = KNOWLEDGE_LEAD + knowledge if knowledge is not None else ""
    if asking.wording == "qwen2_5_vl":
        notes = [QWEN_TEMPLATE_NOTE.format(count=len(templates))] if templates else []
        return [INSTRUCTION, QWEN_ANSWER_NOTE, *([lead] if lead else []), *notes, *templates, QWEN_QUERY_NOTE, query,
                QWEN_QUESTIONS_NOTE, question_block(question, numbered=False)]
    incontext = lead + (template_note(len(templates)) if templates else "")
    text = INSTRUCTION + incontext + "\n" + QUERY_LEAD + history + question_block(question) + "\n"
    return [*templates, query, text]
