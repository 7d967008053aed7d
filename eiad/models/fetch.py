"""The base model: built offline (a tiny model of a real family) or downloaded at a pinned revision."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from eiad.benchmark.protocols import INSTRUCTION, QUERY_LEAD, template_note
from eiad.data.hub import hub_errors, is_commit
from eiad.errors import ConfigError, DataError
from eiad.io import read_jsonl
from eiad.models import family_of
from eiad.models.adapter import VLMAdapter
from eiad.models.config import HubModel, ModelHandle


def corpus(ddqa: Path) -> Iterator[str]:
    """The text a tiny model's tokenizer is trained on: the DDQA turns and MMAD's 1-shot prompt.

    Benchmark questions are left out on purpose (the byte-level tokenizer still reads any
    text), so a benchmark change does not rebuild the model and re-run training.
    """
    yield from (INSTRUCTION, template_note(1), QUERY_LEAD)
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
    with hub_errors(hub.repo("model"), "the model"):
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


def fetch_base_model(model: ModelHandle, dest: Path, ddqa: Path) -> None:
    """Build the tiny model (its tokenizer trained on ``ddqa``'s text) or download the Hub model into ``dest``."""
    if model.config.source == "tiny":
        model.adapter.build_tiny(model.config.tiny, list(corpus(ddqa)), dest)
    else:
        download(model.config.hub, model.adapter, dest)
