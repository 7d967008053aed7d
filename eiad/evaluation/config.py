"""The ``evaluate`` params block: the protocol and its switches, how answers are computed, intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eiad.benchmark.mmad import TemplateKind
from eiad.benchmark.protocols import Protocol, Wording, protocol_named
from eiad.errors import ConfigError
from eiad.launch import LaunchSettings
from eiad.models.config import Precision
from eiad.params import Params
from eiad.stats import BootstrapSettings

AnswerMode = Literal["generate", "choice"]


@dataclass(frozen=True)
class EvalConfig(Params):
    protocol: str  # mmad-1shot | mmad-0shot | eiad-0shot (eiad.benchmark.protocols)
    templates: TemplateKind  # which normal templates the 1-shot protocol shows: random | similar
    template_count: int  # templates per query image for mmad-1shot (MMAD's --few_shot_model)
    domain_knowledge: bool  # MMAD's --domain_knowledge: the class's domain_knowledge.json texts in the prompt
    history: bool  # MMAD's --record_history: earlier questions of the image and the answers given
    wording: Wording  # minicpm (MMAD's MiniCPM/GPT-4 scripts) | qwen2_5_vl (its Qwen2.5-VL script)
    answer: AnswerMode  # generate (MMAD's protocol) | choice (the likeliest offered letter, never unparsed)
    batch_size: int  # questions per forward pass; consecutive images are grouped until theirs fill one
    max_new_tokens: int  # multiple-choice answers
    max_new_tokens_box: int  # DFM answers: a list of boxes
    precision: Precision
    bootstrap: BootstrapSettings
    launch: LaunchSettings  # processes over which images are dealt (torchrun; one process runs in place)

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_new_tokens, self.max_new_tokens_box, self.template_count) < 1:
            raise ConfigError("evaluate: batch_size, max_new_tokens and template_count must be >= 1")
        if self.bootstrap.samples < 0:
            raise ConfigError("evaluate.bootstrap.samples must be >= 0")
        protocol = self.asked_protocol
        if not protocol.instructed and (self.domain_knowledge or self.history):
            raise ConfigError(f"evaluate: {protocol.name} ({protocol.description}) has no domain knowledge or "
                              "history; they are switches of the mmad-* protocols")
        if self.wording == "qwen2_5_vl" and self.history:
            raise ConfigError("evaluate: MMAD's Qwen2.5-VL script has no answer history (wording: minicpm has)")
        if self.history and self.answer == "choice":
            raise ConfigError("evaluate: history records the model's generated answers; use answer: generate")

    @property
    def asked_protocol(self) -> Protocol:
        return protocol_named(self.protocol)

    def answer_budget(self, answer: str) -> int:
        """New tokens allowed for an answer of this kind (a DDQA task's ``answer``)."""
        return self.max_new_tokens_box if answer == "boxes" else self.max_new_tokens
