"""LoRA supervised fine-tuning of a VLM on DDQA with the transformers Trainer and peft.

Loss is on the assistant's answer only (prompt and image tokens are masked with -100).
Checkpoints go to a folder that survives an interrupted run: re-running with the same
settings resumes from the last checkpoint, other settings start afresh. In a run of several
processes (see eiad.launch) every rank trains; only rank 0 writes the adapter and the curves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from eiad.errors import ConfigError
from eiad.io import atomic_directory, read_jsonl
from eiad.launch import single_process_group
from eiad.models.adapter import IGNORE_INDEX, VLMAdapter, matching_modules
from eiad.models.config import ModelHandle
from eiad.training.checkpoints import COMPLETE, agreed_resume_point, fingerprint
from eiad.training.config import LoraSettings, TrainConfig, deepspeed_config_file
from eiad.training.data import LazyExamples, encode_dataset

log = logging.getLogger(__name__)


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


def training_arguments(config: TrainConfig, checkpoints: Path) -> Any:
    """The Trainer's arguments; DeepSpeed's "auto" values are filled in from these."""
    from transformers import TrainingArguments

    return TrainingArguments(
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
        deepspeed=str(deepspeed_config_file(config.deepspeed)) if config.deepspeed else None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        report_to="none",  # DVCLive is attached by train_lora, writing where dvc.yaml expects it
        remove_unused_columns=False,
        dataloader_num_workers=config.dataloader_workers,
        disable_tqdm=False,
    )


def _check_process_group(arguments: Any, deepspeed: bool) -> None:
    """Stop a run whose processes would not train as one (each would write every output)."""
    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if arguments.world_size != launched:
        raise ConfigError(f"train: {launched} processes were launched but the Trainer runs {arguments.world_size} "
                          f"(workers on CPUs need ACCELERATE_USE_CPU=true)")
    if deepspeed and arguments.distributed_state.distributed_type != DistributedType.DEEPSPEED:
        # accelerate runs several CPU workers (ACCELERATE_USE_CPU) with DDP whatever the config says
        raise ConfigError("train.deepspeed: DeepSpeed runs on GPUs, or on the CPU in a single process")


def _saved_parameters(model: Any) -> list[torch.nn.Parameter]:
    """The parameters ``save_pretrained`` writes: the LoRA weights, and the embedding layers
    (``lm_head``) that peft adds to the adapter when the targets name them."""
    from peft import get_peft_model_state_dict

    saved = set(get_peft_model_state_dict(model))
    suffix = f".{model.active_adapter}"  # peft drops the adapter's name from the saved keys
    return [param for name, param in model.named_parameters() if name.replace(suffix, "") in saved]


@contextmanager
def _gathered(model: Any, deepspeed: bool) -> Iterator[None]:
    """The adapter's weights whole on every rank: ZeRO-3 leaves each rank a slice of each.

    A no-op without ZeRO-3; with it, every rank must enter (gathering is collective).
    """
    if not deepspeed:
        yield
        return
    import deepspeed as ds

    with ds.zero.GatheredParameters(_saved_parameters(model)):
        yield


def save_adapter(model: Any, out: Path, main: bool, deepspeed: bool) -> None:
    """Rank 0 writes the adapter into ``out`` atomically; under ZeRO-3 every rank helps gather it."""
    with _gathered(model, deepspeed):
        if main:
            with atomic_directory(out) as staging:
                # the LoRA weights only: a preset naming lm_head would otherwise add the whole frozen head
                model.save_pretrained(staging, save_embedding_layers=False)


def train_lora(model: ModelHandle, model_dir: Path, train_file: Path, out: Path, checkpoints: Path,
               metrics_dir: Path, config: TrainConfig) -> dict[str, float]:
    """Fine-tune and save the LoRA adapter into ``out``; returns the final train metrics.

    Called in every worker of a launched run. A DeepSpeed run without a launcher becomes a
    one-process group on its own.
    """
    with single_process_group() if config.deepspeed else nullcontext():
        return _train(model, model_dir, train_file, out, checkpoints, metrics_dir, config)


def _train(handle: ModelHandle, model_dir: Path, train_file: Path, out: Path, checkpoints: Path, metrics_dir: Path,
           config: TrainConfig) -> dict[str, float]:
    from transformers import Trainer, set_seed

    set_seed(config.seed)
    # before the model: under ZeRO-3 these arguments make from_pretrained load it already partitioned
    arguments = training_arguments(config, checkpoints)
    _check_process_group(arguments, bool(config.deepspeed))
    main = arguments.process_index == 0
    adapter = handle.adapter
    processor = handle.processor(model_dir)
    # frozen weights in the training precision (an 8B model: 16 GB in bf16, not 32); peft keeps
    # the LoRA weights in fp32 and the Trainer's autocast (or DeepSpeed) computes in bf16/fp16
    model = handle.model(model_dir, config.precision)
    model = attach_lora(model, adapter, config.lora)  # fails fast, before encoding the data
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    records = read_jsonl(train_file)
    if config.encoding == "eager":
        examples: Any = encode_dataset(adapter, processor, records, config.max_length)
    else:
        examples = LazyExamples(adapter, processor, records, config.max_length)
    stamp = fingerprint(config, train_file, model_dir, arguments.world_size)
    resume = agreed_resume_point(checkpoints, stamp, main)
    pad_id = processor.tokenizer.pad_token_id
    with _live(metrics_dir, resume, main) as callbacks:
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=examples,
            data_collator=lambda batch: adapter.collate(batch, pad_id),
            callbacks=callbacks,
            compute_loss_func=per_sample_loss(config.grad_accum) if config.loss_reduction == "sample" else None,
        )
        result = trainer.train(resume_from_checkpoint=resume or None)
    save_adapter(model, out, main, bool(config.deepspeed))
    if main:
        (checkpoints / COMPLETE).touch()
    return {key: float(value) for key, value in result.metrics.items()}


@contextmanager
def _live(metrics_dir: Path, resume: bool, main: bool) -> Iterator[list[Any]]:
    """The Trainer callbacks that write DVCLive's curves: on rank 0 only, none elsewhere."""
    if not main:
        yield []
        return
    from dvclive import Live
    from dvclive.huggingface import DVCLiveCallback

    with Live(str(metrics_dir), dvcyaml=False, resume=resume, save_dvc_exp=False) as live:
        yield [DVCLiveCallback(live=live)]
