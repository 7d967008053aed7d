"""The ``model`` params block, and the handle every model-using stage builds from it once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from eiad.data.hub import HubParams
from eiad.errors import ConfigError
from eiad.models import get_adapter
from eiad.models.adapter import VLMAdapter
from eiad.params import DEFAULT_PARAMS, Params

# params' precision names -> the dtype weights are loaded in
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class HubModel(HubParams):
    """``model.hub``: the repository, a pinned commit, and the remote-code opt-in."""

    trust_remote_code: bool  # only for families whose code lives on the Hub


@dataclass(frozen=True)
class ModelConfig(Params):
    """``model``: the family (a package of eiad/models/families) and where its base model comes from."""

    family: str
    source: Literal["tiny", "hub"]
    tiny: dict[str, Any]  # the family's tiny sizes (its TinyConfig), for source: tiny
    hub: HubModel

    def __post_init__(self) -> None:
        adapter = get_adapter(self.family)  # an unknown family fails here, before any download
        if adapter.remote_code and not self.trust_remote_code:
            raise ConfigError(f"model family {self.family!r} runs code from its Hub repository: review it at a "
                              "pinned revision, then set model.source: hub and model.hub.trust_remote_code: true")

    @property
    def trust_remote_code(self) -> bool:
        """Remote code runs only for a Hub model whose params opt in explicitly."""
        return self.source == "hub" and self.hub.trust_remote_code


@dataclass(frozen=True)
class ModelHandle:
    """A model family as the stages use it: its adapter, and loading with the remote-code opt-in applied."""

    config: ModelConfig
    adapter: VLMAdapter

    @classmethod
    def from_config(cls, config: ModelConfig) -> ModelHandle:
        return cls(config, get_adapter(config.family))

    @classmethod
    def load(cls, params_file: str | Path = DEFAULT_PARAMS) -> ModelHandle:
        """The handle of the ``model`` block of ``params_file``."""
        return cls.from_config(ModelConfig.load("model", params_file))

    def processor(self, folder: Path) -> Any:
        return self.adapter.load_processor(folder, self.config.trust_remote_code)

    def model(self, folder: Path, precision: Precision = "fp32") -> Any:
        """The model of ``folder`` with its weights in ``precision``."""
        return self.adapter.load_model(folder, DTYPES[precision], self.config.trust_remote_code)
