"""The base model: built offline (a tiny model of a real family) or downloaded at a pinned revision."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eiad.errors import ConfigError
from eiad.fetching import HubRepo, hub_errors
from eiad.io import read_jsonl
from eiad.mmad import INSTRUCTION, QUERY_NOTE, TEMPLATE_NOTE
from eiad.models import get_adapter
from eiad.params import from_dict

_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubModel:
    repo_id: str = ""
    revision: str = ""  # a full commit hash: a branch or tag could move under us
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ModelConfig:
    family: str = "qwen2_vl"
    source: Literal["tiny", "hub"] = "tiny"
    tiny: dict[str, Any] = field(default_factory=dict)
    hub: HubModel = field(default_factory=HubModel)

    @property
    def trust_remote_code(self) -> bool:
        """Remote code runs only for a Hub model whose params opt in explicitly."""
        return self.source == "hub" and self.hub.trust_remote_code


def model_config(params: dict[str, Any]) -> ModelConfig:
    config = from_dict(ModelConfig, params, "model")
    adapter = get_adapter(config.family)  # an unknown family fails here, before any download
    if adapter.remote_code and not config.trust_remote_code:
        raise ConfigError(f"model family {config.family!r} runs code from its Hub repository: review it at a pinned "
                          "revision, then set model.source: hub and model.hub.trust_remote_code: true")
    return config


def corpus(ddqa: Path) -> Iterator[str]:
    """The text a tiny model's tokenizer is trained on: the DDQA turns and MMAD's 1-shot prompt.

    Benchmark questions are left out on purpose (the byte-level tokenizer still reads any
    text), so a benchmark change does not rebuild the model and re-run training.
    """
    yield from (INSTRUCTION, TEMPLATE_NOTE, QUERY_NOTE)
    for path in sorted(ddqa.rglob("*.jsonl")):
        for record in read_jsonl(path):
            yield from (message["content"] for message in record["messages"])


def download(hub: HubModel, dest: Path) -> None:
    """Snapshot a Hub repository at a pinned commit; the token comes from HF_TOKEN or `hf auth login`."""
    from huggingface_hub import snapshot_download

    if not hub.repo_id or not _COMMIT.fullmatch(hub.revision):
        raise ConfigError(
            f"model.hub needs a repo_id and a pinned revision (a 40-hex commit), got {hub.repo_id!r} @ {hub.revision!r}"
        )
    with hub_errors(HubRepo(hub.repo_id, hub.revision, repo_type="model"), "the model"):
        snapshot_download(repo_id=hub.repo_id, revision=hub.revision, local_dir=dest)


def fetch_base_model(config: ModelConfig, dest: Path, ddqa: Path) -> None:
    adapter = get_adapter(config.family)
    if config.source == "tiny":
        adapter.build_tiny(config.tiny, list(corpus(ddqa)), dest)
    else:
        download(config.hub, dest)
