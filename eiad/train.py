"""LoRA supervised fine-tuning of a VLM on DDQA with the transformers Trainer and peft.

Loss is on the assistant's answer only (prompt and image tokens are masked with -100).
Checkpoints go to a folder that survives an interrupted run: re-running with the same
settings resumes from the last checkpoint, other settings start afresh. In a run of several
processes (see eiad.launch) every rank trains; only rank 0 writes the adapter and the curves.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from eiad.ddqa import record_prompt
from eiad.errors import ConfigError
from eiad.io import atomic_directory, read_jsonl
from eiad.launch import LaunchSettings, single_process_group
from eiad.models.base import DTYPES, IGNORE_INDEX, Example, VLMAdapter, matching_modules

log = logging.getLogger(__name__)

FINGERPRINT = "eiad-run.json"
COMPLETE = "eiad-run.complete"  # written when the run finished: its checkpoints are not to be resumed
Precision = Literal["fp32", "bf16", "fp16"]
LossReduction = Literal["token", "sample"]
# train.deepspeed may name one of these (configs/deepspeed/<name>.json) instead of giving a path
DEEPSPEED_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "deepspeed"


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
    deepspeed: str | None = None  # a DeepSpeed JSON config: a name in configs/deepspeed (zero2, zero3) or a path
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    loss_reduction: LossReduction = "token"  # token: ms-swift's mean over answer tokens
    # eager: every record encoded once, up front, and kept (fast for small sets); lazy: encoded
    # when a batch needs it, so memory does not grow with the data (pixels of real images)
    encoding: Literal["eager", "lazy"] = "lazy"
    dataloader_workers: int = 0  # processes encoding batches ahead of the GPU (lazy encoding)
    launch: LaunchSettings = field(default_factory=LaunchSettings)

    def __post_init__(self) -> None:
        if self.deepspeed:
            deepspeed_config_file(self.deepspeed)
        if (self.deepspeed or self.launch.launcher == "deepspeed") and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("train: DeepSpeed is asked for but not installed (pip install -e '.[deepspeed]')")
        if min(self.per_device_batch, self.grad_accum, self.lora.r, self.save_steps, self.logging_steps) < 1:
            raise ConfigError("train: batch, accumulation, LoRA rank, save and logging steps must be >= 1")
        if self.dataloader_workers < 0:
            raise ConfigError("train.dataloader_workers must be >= 0")


def deepspeed_config_file(name_or_path: str) -> Path:
    """The JSON file that ``train.deepspeed`` means: a config of configs/deepspeed by name, or a path."""
    named = DEEPSPEED_CONFIGS / f"{name_or_path}.json"
    if named.is_file():
        return named
    if Path(name_or_path).is_file():
        return Path(name_or_path).resolve()  # absolute: workers of a multi-node run may start elsewhere
    known = sorted(path.stem for path in DEEPSPEED_CONFIGS.glob("*.json"))
    raise ConfigError(f"train.deepspeed: {name_or_path} is neither a file nor one of {known}")


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
    """Records encoded when the data loader asks for them; nothing is kept.

    A record longer than ``max_length`` is replaced by the next one that fits, as ms-swift's
    lazy dataset replaces it (by a random one there; the next one here, so runs repeat exactly).
    """

    def __init__(self, adapter: VLMAdapter, processor: Any, records: list[dict[str, Any]], max_length: int) -> None:
        if not records:
            raise ConfigError("train: the training file holds no record")
        self.adapter, self.processor, self.records, self.max_length = adapter, processor, records, max_length

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example:
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint(config: TrainConfig, train_file: Path, model_dir: Path, world_size: int) -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed.

    How the processes were launched does not matter, how many there were does: the data order
    and DeepSpeed's partitioned optimizer states depend on it. So does the DeepSpeed config's
    content (a ZeRO stage's checkpoint does not load into another stage).
    """
    settings = {key: value for key, value in asdict(config).items() if key != "launch"}
    deepspeed = _sha256(deepspeed_config_file(config.deepspeed)) if config.deepspeed else None
    return {"config": settings, "world_size": world_size, "deepspeed_sha256": deepspeed,
            "train_sha256": _sha256(train_file), "model_config_sha256": _sha256(model_dir / "config.json")}


def _resume_point(checkpoints: Path, fingerprint: dict[str, Any]) -> bool:
    """True when ``checkpoints`` holds a checkpoint of this very run, interrupted; otherwise clears it.

    A finished run's last checkpoint is not resumed: re-running the stage (after a code change,
    say) would otherwise "resume" at the last step and report that step's metrics as the run's.
    """
    stamp = checkpoints / FINGERPRINT
    if (stamp.is_file() and json.loads(stamp.read_text()) == fingerprint and not (checkpoints / COMPLETE).exists()
            and any(checkpoints.glob("checkpoint-*"))):
        return True
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir(parents=True)
    stamp.write_text(json.dumps(fingerprint, indent=2))
    return False


def _agreed_resume_point(checkpoints: Path, fingerprint: dict[str, Any], main: bool) -> bool:
    """Rank 0 decides whether to resume (and clears stale checkpoints); every rank gets its answer.

    Letting each rank look for itself races with rank 0 clearing the folder, and ranks on
    other nodes may not see the same files.
    """
    decision = [_resume_point(checkpoints, fingerprint) if main else None]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(decision, src=0)
    return bool(decision[0])


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
    """Fine-tune and save the LoRA adapter into ``out``; returns the final train metrics.

    Called in every worker of a launched run. A DeepSpeed run without a launcher becomes a
    one-process group on its own.
    """
    with single_process_group() if config.deepspeed else nullcontext():
        return _train(adapter, model_dir, train_file, out, checkpoints, metrics_dir, config, trust_remote_code)


def _train(adapter: VLMAdapter, model_dir: Path, train_file: Path, out: Path, checkpoints: Path, metrics_dir: Path,
           config: TrainConfig, trust_remote_code: bool) -> dict[str, float]:
    from transformers import Trainer, set_seed

    set_seed(config.seed)
    # before the model: under ZeRO-3 these arguments make from_pretrained load it already partitioned
    arguments = training_arguments(config, checkpoints)
    _check_process_group(arguments, bool(config.deepspeed))
    main = arguments.process_index == 0
    processor = adapter.load_processor(model_dir, trust_remote_code)
    # frozen weights in the training precision (an 8B model: 16 GB in bf16, not 32); peft keeps
    # the LoRA weights in fp32 and the Trainer's autocast (or DeepSpeed) computes in bf16/fp16
    model = adapter.load_model(model_dir, DTYPES[config.precision], trust_remote_code)
    model = attach_lora(model, adapter, config.lora)  # fails fast, before encoding the data
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    records = read_jsonl(train_file)
    if config.encoding == "eager":
        examples: Any = encode_dataset(adapter, processor, records, config.max_length)
    else:
        examples = LazyExamples(adapter, processor, records, config.max_length)
    fingerprint = _fingerprint(config, train_file, model_dir, arguments.world_size)
    resume = _agreed_resume_point(checkpoints, fingerprint, main)
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
