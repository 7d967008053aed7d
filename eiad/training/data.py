"""Training examples: DDQA records encoded once up front (eager) or per batch (lazy, optionally kept)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from tqdm import tqdm

from eiad.ddqa.records import record_prompt
from eiad.errors import ConfigError
from eiad.models.adapter import Example, VLMAdapter

log = logging.getLogger(__name__)


def encode_dataset(adapter: VLMAdapter, processor: Any, records: list[dict[str, Any]], max_length: int) -> list[Example]:
    """Tokenise every record once, up front; records longer than ``max_length`` are dropped."""
    examples = []
    for record in tqdm(records, desc="train: encoding", unit="record"):
        prompt, answer = record_prompt(record)
        example = adapter.encode(processor, prompt, answer)
        if example.length <= max_length:
            examples.append(example)
    dropped = len(records) - len(examples)
    if dropped:
        log.warning("dropped %d of %d records longer than max_length=%d tokens", dropped, len(records), max_length)
    if not examples:
        raise ConfigError(f"train: no record fits max_length={max_length}")
    return examples


class LazyExamples(torch.utils.data.Dataset):
    """Records encoded when the data loader asks for them; kept for the next epoch only if ``keep``.

    A record longer than ``max_length`` is replaced by the next one that fits, as ms-swift's
    lazy dataset replaces it (by a random one there; the next one here, so runs repeat exactly).
    With data-loader workers, each worker keeps what it encoded (persistent workers keep it
    across epochs).
    """

    def __init__(self, adapter: VLMAdapter, processor: Any, records: list[dict[str, Any]], max_length: int,
                 keep: bool) -> None:
        if not records:
            raise ConfigError("train: the training file holds no record")
        self.adapter, self.processor, self.records, self.max_length = adapter, processor, records, max_length
        self.kept: dict[int, Example] | None = {} if keep else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example:
        if self.kept is None:
            return self._fitting(index)
        if index not in self.kept:
            self.kept[index] = self._fitting(index)
        return self.kept[index]

    def _fitting(self, index: int) -> Example:
        for offset in range(len(self.records)):
            example = self._encode((index + offset) % len(self.records))
            if example.length <= self.max_length:
                if offset:
                    log.warning("record %d is longer than max_length=%d tokens: record %d trains in its place",
                                index, self.max_length, (index + offset) % len(self.records))
                return example
        raise ConfigError(f"train: no record fits max_length={self.max_length}")

    def _encode(self, index: int) -> Example:
        prompt, answer = record_prompt(self.records[index])
        return self.adapter.encode(self.processor, prompt, answer)
