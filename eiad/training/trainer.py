"""LoRA supervised fine-tuning of a VLM on DDQA with the transformers Trainer and peft.

Loss is on the assistant's answer only (prompt and image tokens are masked with -100).
Checkpoints go to a folder that survives an interrupted run: re-running with the same
settings resumes from the last checkpoint, other settings start afresh. In a run of several
processes (see eiad.launch) every rank trains; only rank 0 writes the adapter and the curves.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from eiad.errors import ConfigError
from eiad.io import atomic_directory, read_jsonl
from eiad.launch import single_process_group
from eiad.models.adapter import Example, VLMAdapter, matching_modules
from eiad.models.attention import use_varlen_sdpa
from eiad.models.config import ModelHandle
from eiad.training.checkpoints import COMPLETE, agreed_resume_point, fingerprint
from eiad.training.config import LoraSettings, TrainConfig, deepspeed_config_file
from eiad.training.data import LazyExamples, encode_dataset
from eiad.training.loss import answer_loss, logits_only_at, predicting_positions
from eiad.training.packing import PREDICTING, pack

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


class AnswerTrainer(Trainer):
    """The transformers Trainer, with the output layer run only where an answer token is predicted.

    ``output_layer``: the module :func:`~eiad.training.loss.logits_only_at` narrows during each
    training forward pass; ``None`` keeps the model's logits at every position.
    """

    def __init__(self, *args: Any, output_layer: torch.nn.Module | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_layer = output_layer

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if self.output_layer is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # a packed batch brings its row's predicting positions; a padded one's follow from its labels
        predicting = inputs.pop(PREDICTING) if PREDICTING in inputs else predicting_positions(inputs["labels"])
        with logits_only_at(self.output_layer, predicting):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length-grouped batches from the encoded lengths (the Trainer's own sampler reads them
        from dict-like records only)."""
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        dataset = self.train_dataset if train_dataset is None else train_dataset
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=[example.length for example in dataset])

    @functools.cached_property
    def _parameters_without_embeddings(self) -> int:
        return self.model.num_parameters(exclude_embeddings=True)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate for ``total_flos`` (6 x tokens x parameters), counting the parameters
        once rather than at every step (1.4 ms of a demo step's ~90)."""
        if "input_ids" not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        return 6 * inputs["input_ids"].numel() * self._parameters_without_embeddings


def output_layer_to_narrow(model: Any, config: TrainConfig) -> torch.nn.Module | None:
    """The model's output layer when ``train.supervised_logits_only`` asks for it and the model's
    forward is transformers' kind (it takes ``logits_to_keep``, so it applies the output layer to
    the last hidden states and nothing else); otherwise None: logits everywhere."""
    if not config.supervised_logits_only:
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        log.info("train: %s computes logits at every position (its forward is not transformers' kind)",
                 type(base).__name__)
        return None
    return model.get_output_embeddings()


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
        dataloader_persistent_workers=config.dataloader_workers > 0,  # kept encodings live in the workers
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        use_liger_kernel=config.liger_kernel,
        torch_compile=config.torch_compile is not None,
        torch_compile_backend=config.torch_compile,
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
    from transformers import set_seed

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
    packed = padding_free(model, adapter, config)
    model = attach_lora(model, adapter, config.lora)  # fails fast, before encoding the data
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    records = read_jsonl(train_file)
    if config.encoding == "eager":
        examples: Any = encode_dataset(adapter, processor, records, config.max_length)
    else:
        keep = config.keep_encoded and _revisits_records(config, arguments.world_size, len(records))
        examples = LazyExamples(adapter, processor, records, config.max_length, keep)
    stamp = fingerprint(config, train_file, model_dir, arguments.world_size)
    resume = agreed_resume_point(checkpoints, stamp, main)
    pad_id = processor.tokenizer.pad_token_id
    with _live(metrics_dir, resume, main) as callbacks:
        trainer = AnswerTrainer(
            model=model,
            args=arguments,
            train_dataset=examples,
            data_collator=training_collator(adapter, model.get_base_model(), pad_id, packed),
            callbacks=callbacks,
            compute_loss_func=answer_loss(config.loss_reduction, config.grad_accum),
            output_layer=output_layer_to_narrow(model, config),
        )
        result = trainer.train(resume_from_checkpoint=resume or None)
    save_adapter(model, out, main, bool(config.deepspeed))
    if main:
        (checkpoints / COMPLETE).touch()
    return {key: float(value) for key, value in result.metrics.items()}


def run_summary(metrics: dict[str, float]) -> dict[str, float]:
    """The Trainer's final metrics cut to what a person compares across commits (DVCLive's full
    summary stays beside the curves): the mean training loss and the seconds the run took (only
    the resumed part's, after an interruption)."""
    return {"train_loss": round(metrics.get("train_loss", float("nan")), 4),
            "train_seconds": round(metrics.get("train_runtime", 0.0), 1)}


def training_collator(adapter: VLMAdapter, model: Any, pad_id: int, packed: bool,
                      ) -> Callable[[list[Example]], dict[str, Any]]:
    """Batches as the adapter collates them, with the position ids the family computes ahead of the
    forward pass, and ``packed`` into one row without padding (all in the data-loader workers, when
    there are any: off the training step).

    Positions are computed for a batch's records drawn for the first time, in one call, and kept
    with each record: Qwen's M-RoPE positions took 16 ms of a demo step of 32 records (a Python
    loop over records and images), and the demo draws each record 14 times."""

    def keep_positions(examples: list[Example], batch: dict[str, torch.Tensor]) -> None:
        # one call for the records drawn for the first time (the family's loop is per batch), kept per record
        new = [example for example in examples if "position_ids" not in example.derived]
        if not new:
            return
        positions = adapter.position_ids(model, batch if len(new) == len(examples) else adapter.collate(new, pad_id))
        for index, example in enumerate(new):
            row = None if positions is None else positions.narrow(-2, index, 1)[..., :example.length].clone()
            example.derived["position_ids"] = row

    def collate(examples: list[Example]) -> dict[str, Any]:
        batch = adapter.collate(examples, pad_id)
        keep_positions(examples, batch)
        rows = [example.derived["position_ids"] for example in examples]
        if rows[0] is not None:  # right-padded with 0, as the batch's own computation leaves padding
            width = batch["input_ids"].shape[1]
            positions = [torch.nn.functional.pad(row, (0, width - row.shape[-1])) for row in rows]
            batch = {**batch, "position_ids": torch.cat(positions, dim=-2)}
        return pack(batch) if packed else batch

    return collate


def padding_free(model: Any, adapter: VLMAdapter, config: TrainConfig) -> bool:
    """Whether batches are packed (``train.padding_free``, where the family's language model takes a
    packed row); if so, its attention takes the records' bounds (flash-attention where the model
    runs it, else :func:`~eiad.models.attention.varlen_sdpa`)."""
    if not config.padding_free:
        return False
    if not adapter.padding_free:
        log.info("train: %s takes padded batches only (train.padding_free does not apply to it)", adapter.family)
        return False
    use_varlen_sdpa(model.config.get_text_config())
    return True


def _revisits_records(config: TrainConfig, world_size: int, records: int) -> bool:
    """Whether the run draws more samples than there are records (so it sees some twice)."""
    if config.max_steps > 0:
        return config.max_steps * config.per_device_batch * config.grad_accum * world_size > records
    return config.epochs > 1


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
