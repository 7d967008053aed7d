"""The ``train`` params block: LoRA, optimiser, precision, DeepSpeed and launch settings."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eiad.errors import ConfigError
from eiad.launch import LaunchSettings
from eiad.models.config import Precision
from eiad.params import Params
from eiad.training.loss import LossReduction

# train.deepspeed may name one of these (configs/deepspeed/<name>.json) instead of giving a path
DEEPSPEED_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"


@dataclass(frozen=True)
class LoraSettings(Params):
    r: int
    alpha: int
    dropout: float
    targets: str  # a preset of the model family (llm, llm+projector, all, ...), or a regex over module names


@dataclass(frozen=True)
class TrainConfig(Params):
    """``train``: the paper's values (ms-swift 2.x's defaults, as the EIAD release used them) are
    in ``profiles/eiad-paper.yaml``; ``params.yaml`` holds the demo's."""

    seed: int
    lora: LoraSettings
    learning_rate: float
    epochs: float
    max_steps: int  # > 0 overrides epochs
    per_device_batch: int
    grad_accum: int
    max_length: int
    warmup_ratio: float
    scheduler: str
    weight_decay: float
    max_grad_norm: float
    precision: Precision
    gradient_checkpointing: bool
    deepspeed: str | None  # a DeepSpeed JSON config: a name in configs/deepspeed (zero2, zero3) or a path
    launch: LaunchSettings
    save_steps: int
    save_total_limit: int
    logging_steps: int
    loss_reduction: LossReduction  # token: ms-swift's mean over answer tokens; sample: every record weighs alike
    # eager: every record encoded once, up front, and kept (fast for small sets); lazy: encoded
    # when a batch needs it, so memory does not grow with the data (pixels of real images)
    encoding: Literal["eager", "lazy"]
    dataloader_workers: int  # processes encoding batches ahead of the GPU (lazy encoding)
    # lazy encoding: each data-loader process keeps what it encoded for the next epoch, when the run
    # has one (memory then grows as eager's does; no startup cost, no record encoded twice)
    keep_encoded: bool
    # the output layer runs only where an answer token is predicted (the loss is the same; a family
    # whose forward is not transformers' kind computes logits everywhere)
    supervised_logits_only: bool
    # a batch's records in one row without padding (families whose language model takes it; the
    # loss is the same): the layers run on real tokens only
    padding_free: bool
    group_by_length: bool  # batches of records of similar length (less padding); eager encoding only
    liger_kernel: bool  # Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) for the family: GPUs, pip install liger-kernel
    torch_compile: str | None  # a torch.compile backend (inductor...), or null: no compilation

    def __post_init__(self) -> None:
        if self.deepspeed:
            deepspeed_config_file(self.deepspeed)
        if (self.deepspeed or self.launch.launcher == "deepspeed") and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("train: DeepSpeed is asked for but not installed (pip install -e '.[deepspeed]')")
        if min(self.per_device_batch, self.grad_accum, self.lora.r, self.save_steps, self.logging_steps) < 1:
            raise ConfigError("train: batch, accumulation, LoRA rank, save and logging steps must be >= 1")
        if self.dataloader_workers < 0:
            raise ConfigError("train.dataloader_workers must be >= 0")
        if self.group_by_length and self.encoding != "eager":
            raise ConfigError("train.group_by_length needs encoding: eager (a record's length is known once encoded)")
        if self.padding_free and not self.supervised_logits_only:
            raise ConfigError("train.padding_free needs supervised_logits_only: true (a packed row's logits are taken "
                              "where answers are predicted, in the padded batch's order)")
        if self.liger_kernel and importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError("train.liger_kernel is asked for but not installed (pip install liger-kernel; GPUs only)")


def deepspeed_config_file(name_or_path: str) -> Path:
    """The JSON file that ``train.deepspeed`` means: a config of configs/deepspeed by name, or a path."""
    named = DEEPSPEED_CONFIGS / f"{name_or_path}.json"
    if named.is_file():
        return named
    if Path(name_or_path).is_file():
        return Path(name_or_path).resolve()  # absolute: workers of a multi-node run may start elsewhere
    known = sorted(path.stem for path in DEEPSPEED_CONFIGS.glob("*.json"))
    raise ConfigError(f"train.deepspeed: {name_or_path} is neither a file nor one of {known}")
