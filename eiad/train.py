"""LoRA supervised fine-tuning of a VLM on DDQA with the transformers Trainer and peft.

Loss is on the assistant's answer only (prompt and image tokens are masked with -100).
Checkpoints go to a folder that survives an interrupted run: re-running with the same
settings resumes from the last checkpoint, other settings start afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from eiad.ddqa import record_prompt
from eiad.errors import ConfigError
from eiad.io import atomic_directory, read_jsonl
from eiad.models.base import IGNORE_INDEX, Example, VLMAdapter, matching_modules

log = logging.getLogger(__name__)

FINGERPRINT = "eiad-run.json"
Precision = Literal["fp32", "bf16", "fp16"]
LossReduction = Literal["token", "sample"]


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.05
    targets: str = "llm+projector"  # a preset of the model family, or a regex over module names


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults are ms-swift 2.x's, as the EIAD release used them."""

    seed: int = 42
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 1e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_batch: int = 1
    grad_accum: int = 16
    max_length: int = 2048
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"
    weight_decay: float = 0.1
    max_grad_norm: float = 0.5
    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    loss_reduction: LossReduction = "token"  # token: ms-swift's mean over answer tokens

    def __post_init__(self) -> None:
        if self.deepspeed and not Path(self.deepspeed).is_file():
            raise ConfigError(f"train.deepspeed: {self.deepspeed} does not exist")
        if min(self.per_device_batch, self.grad_accum, self.lora.r, self.save_steps, self.logging_steps) < 1:
            raise ConfigError("train: batch, accumulation, LoRA rank, save and logging steps must be >= 1")


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


def attach_lora(model: Any, adapter: VLMAdapter, settings: LoraSettings) -> Any:
    """Wrap ``model`` with a LoRA adapter; a target regex that matches nothing is an error."""
    from peft import LoraConfig, get_peft_model

    pattern = adapter.lora_targets(settings.targets)
    if not matching_modules(model, pattern):
        raise ConfigError(
            f"train.lora.targets {settings.targets!r} (regex {pattern!r}) matches no linear layer of this "
            f"{adapter.family} model; presets: {sorted(adapter.lora_presets)}"
        )
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=pattern)
    return get_peft_model(model, config)


def per_sample_loss(grad_accum: int) -> Callable[..., torch.Tensor]:
    """Mean over records of each record's mean token loss, for the Trainer's ``compute_loss_func``.

    With the token mean, a 30-token box answer outweighs a one-letter answer thirty times;
    here every record weighs the same. The Trainer neither divides a custom loss by the
    accumulation steps nor undoes its multiplication by the process count, so both happen here.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs.logits[:, :-1].float()
        target = labels[:, 1:].to(logits.device)
        per_token = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none"
        )
        mask = (target != IGNORE_INDEX).float()
        per_record = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_record.sum() / (per_record.numel() * grad_accum * world)

    return loss


def _fingerprint(config: TrainConfig, train_file: Path, model_dir: Path) -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed."""
    data = hashlib.sha256(train_file.read_bytes()).hexdigest()
    model = hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()
    return {"config": asdict(config), "train_sha256": data, "model_config_sha256": model}


def _resume_point(checkpoints: Path, fingerprint: dict[str, Any]) -> bool:
    """True when ``checkpoints`` holds a checkpoint of this very run; otherwise clears it."""
    stamp = checkpoints / FINGERPRINT
    if stamp.is_file() and json.loads(stamp.read_text()) == fingerprint and any(checkpoints.glob("checkpoint-*")):
        return True
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir(parents=True)
    stamp.write_text(json.dumps(fingerprint, indent=2))
    return False


def train_lora(
    adapter: VLMAdapter,
    model_dir: Path,
    train_file: Path,
    out: Path,
    checkpoints: Path,
    metrics_dir: Path,
    config: TrainConfig,
    trust_remote_code: bool = False,
) -> dict[str, float]:
    """Fine-tune and save the LoRA adapter into ``out``; returns the final train metrics."""
    from dvclive import Live
    from dvclive.huggingface import DVCLiveCallback
    from transformers import Trainer, TrainingArguments, set_seed

    set_seed(config.seed)
    processor = adapter.load_processor(model_dir, trust_remote_code)
    model = adapter.load_model(model_dir, torch.float32, trust_remote_code)
    model = attach_lora(model, adapter, config.lora)  # fails fast, before encoding the data
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    examples = encode_dataset(adapter, processor, read_jsonl(train_file), config.max_length)
    resume = _resume_point(checkpoints, _fingerprint(config, train_file, model_dir))
    pad_id = processor.tokenizer.pad_token_id
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        seed=config.seed,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch,
        gradient_accumulation_steps=config.grad_accum,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type=config.scheduler,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        deepspeed=config.deepspeed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        report_to="none",  # DVCLive is attached below, writing where dvc.yaml expects it
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    with Live(str(metrics_dir), dvcyaml=False, resume=resume, save_dvc_exp=False) as live:
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=examples,
            data_collator=lambda batch: adapter.collate(batch, pad_id),
            callbacks=[DVCLiveCallback(live=live)],
            compute_loss_func=per_sample_loss(config.grad_accum) if config.loss_reduction == "sample" else None,
        )
        result = trainer.train(resume_from_checkpoint=resume or None)
    with atomic_directory(out) as staging:
        model.save_pretrained(staging)
    return {key: float(value) for key, value in result.metrics.items()}
