"""The base model: built offline (a tiny model of a real family) or downloaded at a pinned revision."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eiad.errors import ConfigError, DataError
from eiad.fetching import HubRepo, hub_errors, is_commit
from eiad.io import read_jsonl
from eiad.mmad import INSTRUCTION, QUERY_NOTE, TEMPLATE_NOTE
from eiad.models import family_of, get_adapter
from eiad.models.base import VLMAdapter
from eiad.params import from_dict



@dataclass(frozen=True)
class HubModel:
    repo_id: str = ""
    revision: str = ""  # a full commit hash: a branch or tag could move under us
    trust_remote_code: bool = False
    endpoint: str | None = None  # None: the Hugging Face Hub (or $HF_ENDPOINT)


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


def check_architecture(adapter: VLMAdapter, config_file: Path, repo_id: str) -> None:
    """The model's ``model_type`` must be one the family's adapter handles (checked before the weights come)."""
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8"))["model_type"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise DataError(config_file, f"is not a model config with a model_type ({err})") from err
    if model_type not in adapter.model_types:
        known = family_of(model_type)
        hint = f"; it is family {known!r}: set model.family: {known}" if known else "; no adapter knows it"
        raise ConfigError(f"{repo_id} is a {model_type!r} model, not one of family {adapter.family!r} "
                          f"({', '.join(adapter.model_types)}){hint}")


def download(hub: HubModel, adapter: VLMAdapter, dest: Path) -> None:
    """Snapshot a Hub repository at a pinned commit; the token comes from HF_TOKEN or `hf auth login`.

    Its config.json comes first: a model that is not of the adapter's family stops there. The
    snapshot lands in the Hugging Face cache and is hard-linked into ``dest``, so re-running the
    stage (after a code change, say) downloads nothing again.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    if not hub.repo_id or not is_commit(hub.revision):
        raise ConfigError(
            f"model.hub needs a repo_id and a pinned revision (a 40-hex commit), got {hub.repo_id!r} @ {hub.revision!r}"
        )
    where = {"repo_id": hub.repo_id, "revision": hub.revision, "endpoint": hub.endpoint}
    with hub_errors(HubRepo(hub.repo_id, hub.revision, repo_type="model", endpoint=hub.endpoint), "the model"):
        check_architecture(adapter, Path(hf_hub_download(filename="config.json", **where)), hub.repo_id)
        snapshot = Path(snapshot_download(**where))
    link_tree(snapshot, dest)


def link_tree(source: Path, dest: Path) -> None:
    """Every file under ``source`` (symlinks followed) hard-linked into ``dest``, copied across file systems."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path.resolve(), target)
            except OSError:
                shutil.copy2(path.resolve(), target)


def fetch_base_model(config: ModelConfig, dest: Path, ddqa: Path) -> None:
    adapter = get_adapter(config.family)
    if config.source == "tiny":
        adapter.build_tiny(config.tiny, list(corpus(ddqa)), dest)
    else:
        download(config.hub, adapter, dest)
