"""Check the training path on a GPU machine in a few minutes, and measure LoRA at real size.

Parts, each in its own process with its own time limit (a hung or crashed part cannot take
the others down, and each starts with the whole GPU memory):

  env    versions, the GPU and the peak bf16 rate assumed for MFU
  tiny   the pipeline end to end on the offline tiny model: demo data, DDQA, LoRA through
         eiad.train with DeepSpeed ZeRO-2 in bf16, merge, MMAD and DDQA evaluation
  scale  LoRA steps on a randomly initialised model of Qwen2-VL-7B's shape (built on the GPU
         in bf16, nothing downloaded) with synthetic image + text batches: tokens/s,
         samples/s, peak memory and model FLOPs utilisation
  evaluate  MMAD 1-shot questions/s on the same random 7B shape (448-px demo benchmark
         images): the MMAD-style loop against eiad's engine, generated and with choice scoring

Missing packages (deepspeed, dvclive) are installed from a wheel folder when there is one
(the device machine has no network; scripts/gpu_wheels.sh fills it), else the parts that need
them are skipped with the reason. The last lines printed are one summary block.

    python scripts/gpu_check.py                 # on the GPU machine, under 9 minutes
    python scripts/gpu_check.py --cpu-smoke     # the same logic at toy sizes on a CPU
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the device machine has the repository, not an installed eiad

PARTS = ("env", "tiny", "scale")
TIMEOUTS = {"env": 90, "tiny": 180, "scale": 300, "evaluate": 150}  # seconds; the whole run is also capped by --budget
NEEDS = {"tiny": ("deepspeed", "dvclive")}  # packages a part cannot run without
# peak dense bf16 rates (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name(); first match wins
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("GH200", 989.0), ("A100", 312.0), ("L40S", 362.0))
FLOPS_FORMULA = ("MFU = model FLOPs per step / (step time x peak bf16 dense rate); model FLOPs = "
                 "4*N_llm*T + 6*N_lora*T + 4*N_head*K + 3*A_llm + 2*N_vision*P + 2*N_merger*I + A_vision, with "
                 "N the weights of each part's matrix products, T the tokens, K the positions with logits, P the "
                 "image patches, I the image tokens, A the forward attention products (causal in the LLM): frozen "
                 "LLM weights run forward and input gradient (4), adapters also weight gradient (6), the frozen "
                 "vision tower forward only (2); recomputation by checkpointing is not counted")


class Skip(Exception):
    """A part that cannot run here, for a reason that is no failure of the code under test."""


# --- sizes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A Qwen2-VL configuration, and the synthetic batch it is measured on."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    mrope: tuple[int, int, int]
    vision_depth: int
    vision_width: int
    vision_heads: int
    vision_mlp_ratio: int
    patch: int
    merge: int
    image_side: int  # pixels of the square image in every sample
    answer_tokens: int  # positions with a loss at the end of each sample (DDQA answers are short)

    @property
    def patches(self) -> int:
        return (self.image_side // self.patch) ** 2

    @property
    def image_tokens(self) -> int:
        return self.patches // self.merge**2


# Qwen2-VL-7B-Instruct's config.json: 7.6 B in the language model, 0.68 B in the vision tower
QWEN2_VL_7B = Shape(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064, mrope=(16, 24, 24),
                    vision_depth=32, vision_width=1280, vision_heads=16, vision_mlp_ratio=4, patch=14, merge=2,
                    image_side=448, answer_tokens=32)
TOY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, mrope=(4, 2, 2),
            vision_depth=2, vision_width=32, vision_heads=2, vision_mlp_ratio=2, patch=14, merge=2,
            image_side=56, answer_tokens=4)


@dataclass(frozen=True)
class Variant:
    name: str
    checkpointing: bool
    batch: int  # halved on out-of-memory, down to 1
    seq: int


SCALE_VARIANTS = (Variant("checkpointing", True, 8, 4096), Variant("no-checkpointing", False, 2, 4096))
TOY_VARIANTS = (Variant("checkpointing", True, 2, 64), Variant("no-checkpointing", False, 2, 64))

# demo data for the tiny part: a few hundred DDQA records (as tests/conftest.py's small demo)
VOCABULARY = {"products": ["washer", "plate", "screw_head", "pcb"],
              "defects": ["scratch", "hole", "crack", "stain", "missing_part"]}
RENDER = {"image_size": 56, "defect_area": [0.03, 0.15], "dark_contrast": [90, 125], "bright_contrast": [70, 95],
          "noise": 3.0}
DEMO_FETCH = {"seed": 3, **VOCABULARY, "normal_parts_per_product": 6, "defective_parts_per_defect": 3,
              "views_per_part": 2, "render": RENDER}
DEMO_BENCHMARK = {"seed": 1000, **VOCABULARY, "normal_per_product": 3, "defective_per_defect": 1,
                  "templates_per_product": 2, "render": RENDER}
TOY_MODEL = {"vocab_size": 320, "hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate_size": 64,
             "vision_depth": 1, "vision_width": 32, "vision_heads": 2, "image_size": 28}


def params(dotted: str) -> Any:
    """A copy of the value at ``dotted`` in the repository's params.yaml (every other setting's base)."""
    import yaml

    node: Any = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for part in dotted.split("."):
        node = node[part]
    return copy.deepcopy(node)


# --- FLOPs and MFU ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MatmulParams:
    """Weights of the model's matrix products, by how a LoRA step uses them."""

    llm: int  # frozen language-model layers: every token
    lora: int  # trained adapters: every token, with weight gradients
    head: int  # lm_head: only the positions whose logits are computed
    vision: int  # frozen vision blocks and patch embedding: every patch, forward only
    merger: int  # frozen patch merger: every image token, forward only


def matmul_params(model: Any) -> MatmulParams:
    """Count the weights of every Linear and Conv3d of a (LoRA-wrapped) Qwen2-VL by role."""
    import torch

    counts = dict.fromkeys(("llm", "lora", "head", "vision", "merger"), 0)
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv3d)):
            continue
        role = ("lora" if "lora_" in name else "merger" if "visual.merger" in name else "vision" if "visual" in name
                else "head" if "lm_head" in name else "llm")
        counts[role] += module.weight.numel()
    return MatmulParams(**counts)


def matmul_flops(params: MatmulParams, shape: Shape, batch: int, seq: int) -> float:
    """FLOPs of the matrix products of one LoRA step (forward and backward) on ``batch`` x ``seq``."""
    tokens = batch * seq
    return (4 * params.llm * tokens + 6 * params.lora * tokens + 4 * params.head * batch * (shape.answer_tokens + 1)
            + 2 * params.vision * batch * shape.patches + 2 * params.merger * batch * shape.image_tokens)


def attention_flops(shape: Shape, batch: int, seq: int) -> float:
    """Score and value products: causal in the LLM (forward + backward = 3 forwards), full in the
    frozen vision tower (forward only)."""
    llm = 3 * shape.layers * 2 * seq**2 * shape.hidden  # causal forward: 2 products x S^2/2 x d x 2 FLOPs
    vision = shape.vision_depth * 4 * shape.patches**2 * shape.vision_width
    return batch * (llm + vision)


def peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


# --- the model at scale -----------------------------------------------------------------------


def qwen2_vl_config(shape: Shape) -> Any:
    from transformers import Qwen2VLConfig

    special = {name: shape.vocab - 1 - offset for offset, name in enumerate(
        ("image", "video", "vision_start", "vision_end", "bos", "eos"))}
    return Qwen2VLConfig(
        text_config={"vocab_size": shape.vocab, "hidden_size": shape.hidden, "intermediate_size": shape.intermediate,
                     "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
                     "num_key_value_heads": shape.kv_heads, "max_position_embeddings": 32768,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(shape.mrope)},
                     "bos_token_id": special["bos"], "eos_token_id": special["eos"]},
        vision_config={"depth": shape.vision_depth, "embed_dim": shape.vision_width, "hidden_size": shape.hidden,
                       "num_heads": shape.vision_heads, "mlp_ratio": shape.vision_mlp_ratio,
                       "patch_size": shape.patch, "spatial_merge_size": shape.merge, "temporal_patch_size": 2},
        image_token_id=special["image"], video_token_id=special["video"],
        vision_start_token_id=special["vision_start"], vision_end_token_id=special["vision_end"],
        tie_word_embeddings=False, attn_implementation="sdpa",
    )


@contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def random_lora_model(shape: Shape, device: str, dtype: Any) -> Any:
    """Qwen2-VL of ``shape``, randomly initialised where it will run, with LoRA on the LLM's linears."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from eiad.models import get_adapter
    from eiad.training.config import LoraSettings
    from eiad.training.trainer import attach_lora

    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):  # no full-size copy on the host, no fp32 detour
        model = Qwen2VLForConditionalGeneration(qwen2_vl_config(shape))
    lora = LoraSettings.parse({"r": 16, "alpha": 32, "dropout": 0.0, "targets": "llm"}, "lora")
    model = attach_lora(model, get_adapter("qwen2_vl"), lora)
    # gradients from the first LLM layer on, so that every frozen LLM product also runs for the
    # input gradient (4 N T, as counted); the vision tower stays forward-only
    model.get_input_embeddings().register_forward_hook(lambda module, args, output: output.requires_grad_(True))
    return model


def synthetic_batch(model: Any, shape: Shape, batch: int, seq: int, device: str, dtype: Any) -> dict[str, Any]:
    """One image then random text per sample, no padding (so attention takes the causal fast path)."""
    import torch

    config = model.config
    text = torch.randint(0, shape.vocab - 8, (batch, seq), device=device)  # clear of the special ids at the top
    text[:, 0] = config.vision_start_token_id
    text[:, 1:1 + shape.image_tokens] = config.image_token_id
    text[:, 1 + shape.image_tokens] = config.vision_end_token_id
    side = shape.image_side // shape.patch
    inputs = {
        "input_ids": text,
        "pixel_values": torch.randn(batch * shape.patches, 3 * 2 * shape.patch**2, device=device, dtype=dtype),
        "image_grid_thw": torch.tensor([[1, side, side]] * batch, device=device),
        "logits_to_keep": shape.answer_tokens + 1,
    }
    if "mm_token_type_ids" in inspect.signature(model.get_base_model().forward).parameters:
        inputs["mm_token_type_ids"] = (text == config.image_token_id).int()
    return inputs


def lora_step(model: Any, inputs: dict[str, Any], answer_tokens: int) -> Any:
    """Forward and backward with the loss on the last ``answer_tokens`` positions (fp32 cross entropy)."""
    import torch

    logits = model(**inputs).logits[:, :-1].float()
    target = inputs["input_ids"][:, -answer_tokens:]
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target)
    loss.backward()
    return loss.detach()


def set_checkpointing(model: Any, on: bool) -> None:
    """Non-reentrant activation checkpointing on every layer, or none."""
    base = model.get_base_model()
    # "activation" in recent transformers 5 releases, "gradient" (now deprecated) before
    prefix = "activation" if hasattr(base, "activation_checkpointing_enable") else "gradient"
    if on:  # non-reentrant: needs no input that requires grad, and is the variant torch recommends
        getattr(base, f"{prefix}_checkpointing_enable")({"use_reentrant": False})
    else:
        getattr(base, f"{prefix}_checkpointing_disable")()


def measure(model: Any, shape: Shape, variant: Variant, steps: int, warmup: int, device: str, dtype: Any,
            peak: float | None) -> dict[str, Any]:
    """Time ``steps`` optimiser steps after ``warmup``; on out-of-memory retry with half the batch."""
    import torch

    set_checkpointing(model, variant.checkpointing)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=device == "cuda")
    batch = variant.batch
    while True:
        try:
            return _timed_steps(model, optimizer, shape, variant, batch, steps, warmup, device, dtype, peak)
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
        # out here the failed step's tensors are gone with its traceback, so the cache can be emptied
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        batch //= 2
        print(f"scale: {variant.name} out of memory, retrying with batch {batch}", flush=True)


def _timed_steps(model: Any, optimizer: Any, shape: Shape, variant: Variant, batch: int, steps: int, warmup: int,
                 device: str, dtype: Any, peak: float | None) -> dict[str, Any]:
    import torch

    cuda = device == "cuda"
    inputs = synthetic_batch(model, shape, batch, variant.seq, device, dtype)
    losses = []
    for step in range(warmup + steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
        losses.append(lora_step(model, inputs, shape.answer_tokens))  # read after the clock: no sync per step
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    losses = [float(loss) for loss in losses]
    flops = matmul_flops(matmul_params(model), shape, batch, variant.seq) + attention_flops(shape, batch, variant.seq)
    result = {
        "variant": variant.name, "batch": batch, "seq": variant.seq, "step_s": round(seconds, 4),
        "tokens_per_s": round(batch * variant.seq / seconds, 1), "samples_per_s": round(batch / seconds, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "model_tflops_per_step": round(flops / 1e12, 3), "loss": round(losses[-1], 4),
        "finite": all(map(math.isfinite, losses)),
    }
    if peak:
        result["mfu_percent"] = round(100 * flops / seconds / (peak * 1e12), 2)
    return result


# --- parts ------------------------------------------------------------------------------------


def part_env(smoke: bool, work: Path) -> dict[str, Any]:
    import torch

    versions = {name: _version(name) for name in ("torch", "transformers", "peft", "accelerate", "deepspeed",
                                                    "dvclive")}
    lines = [f"python {platform.python_version()}, " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    result: dict[str, Any] = {"python": platform.python_version(), **versions, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        card = torch.cuda.get_device_properties(0)
        peak = peak_tflops(card.name)
        result.update(device=card.name, memory_gib=round(card.total_memory / 2**30, 1),
                      capability=f"sm_{card.major}{card.minor}", peak_bf16_tflops=peak)
        lines.append(f"{card.name}, {card.total_memory / 2**30:.0f} GiB, sm_{card.major}{card.minor}, "
                     f"peak bf16 dense {peak or 'unknown'} TFLOP/s")
    elif not smoke:
        raise Skip("no CUDA device visible to torch")
    result["lines"] = lines
    return result


def part_tiny(smoke: bool, work: Path) -> dict[str, Any]:
    """Demo data -> DDQA -> tiny model -> LoRA (ZeRO-2) -> merge -> MMAD + DDQA scores."""
    import torch

    from eiad.data.layout import read_manifest
    from eiad.ddqa.build import DDQAConfig, build_ddqa
    from eiad.evaluation.config import EvalConfig
    from eiad.evaluation.runner import run_evaluation
    from eiad.models.config import ModelConfig, ModelHandle
    from eiad.models.fetch import fetch_base_model
    from eiad.sources.demo import SOURCE as DEMO
    from eiad.training.config import TrainConfig
    from eiad.training.merge import merge_lora
    from eiad.training.trainer import train_lora

    if not smoke and not torch.cuda.is_available():
        raise Skip("no CUDA device visible to torch")
    for folder in ("raw", "organised", "benchmark", "base"):
        (work / folder).mkdir(parents=True)
    DEMO.fetch(copy.deepcopy(DEMO_FETCH), work / "raw")
    DEMO.organise(params("sources.demo.organise"), work / "raw", work / "organised")
    DEMO.fetch_benchmark(copy.deepcopy(DEMO_BENCHMARK), work / "benchmark")
    build_ddqa(read_manifest(work / "organised"), work / "ddqa", work / "counts.json",
               DDQAConfig.parse({**params("ddqa"), "test_ratio": 0.3}, "ddqa"))
    tiny = {**params("model.tiny"), **(TOY_MODEL if smoke else {})}
    qwen = ModelHandle.from_config(ModelConfig.parse({**params("model"), "family": "qwen2_vl", "source": "tiny",
                                                      "tiny": tiny}, "model"))
    fetch_base_model(qwen, work / "base", work / "ddqa")
    steps = 2 if smoke else 40
    config = TrainConfig.parse({
        **params("train"), "seed": 0, "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": "all"},
        "learning_rate": 2e-3, "max_steps": steps, "per_device_batch": 8 if smoke else 32, "grad_accum": 1,
        "max_length": 512, "warmup_ratio": 0.0, "scheduler": "constant", "weight_decay": 0.0, "max_grad_norm": 1.0,
        "precision": "fp32" if smoke else "bf16", "gradient_checkpointing": True, "deepspeed": "zero2",
        "save_steps": steps, "logging_steps": max(1, steps // 4), "loss_reduction": "sample", "encoding": "lazy",
    }, "train")
    start = time.perf_counter()
    trained = train_lora(qwen, work / "base", work / "ddqa" / "train.jsonl", work / "adapter", work / "checkpoints",
                         work / "train_metrics", config)
    train_seconds = time.perf_counter() - start
    merge_lora(qwen, work / "base", work / "adapter", work / "merged")
    scores = run_evaluation(qwen, work / "merged", work / "benchmark", work / "ddqa" / "test.jsonl", work / "metrics",
                            work / "predictions", work / "evaluate-cache",
                            EvalConfig.parse({**params("evaluate"), "batch_size": 32, "precision": config.precision},
                                             "evaluate"))
    mmad = scores["mmad"]
    loss = trained["train_loss"]
    if not math.isfinite(loss):
        raise RuntimeError(f"train loss is {loss}")
    line = (f"LoRA {steps} steps, ZeRO-2 {config.precision}: train loss {loss:.4f} in {train_seconds:.1f} s; "
            f"merged; MMAD average {mmad['average']['Average']} over {mmad['questions']} questions "
            f"({mmad['parse']['unparsed']} unparsed); DDQA tasks scored: {', '.join(sorted(scores['ddqa']))}")
    return {
        "train_loss": round(loss, 4), "steps": steps, "train_s": round(train_seconds, 1),
        "precision": config.precision, "mmad_questions": mmad["questions"], "mmad_average": mmad["average"]["Average"],
        "mmad_unparsed": mmad["parse"]["unparsed"], "ddqa_tasks": sorted(scores["ddqa"]), "lines": [line],
    }


def part_scale(smoke: bool, work: Path) -> dict[str, Any]:
    """LoRA steps on a randomly initialised Qwen2-VL of 7B shape (toy shape with --cpu-smoke)."""
    import torch

    cuda = torch.cuda.is_available()
    if not smoke and not cuda:
        raise Skip("no CUDA device visible to torch")
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True  # peft keeps the adapters in fp32: their small products on TF32
    shape, variants = (TOY, TOY_VARIANTS) if smoke else (QWEN2_VL_7B, SCALE_VARIANTS)
    peak = peak_tflops(torch.cuda.get_device_name()) if cuda else None
    start = time.perf_counter()
    model = random_lora_model(shape, device, dtype)
    build_seconds = time.perf_counter() - start
    params = matmul_params(model)
    steps, warmup = (2, 1) if smoke else (5, 2)
    runs = [measure(model, shape, variant, steps, warmup, device, dtype, peak) for variant in variants]
    size = sum(p.numel() for p in model.parameters()) / 1e6
    built = f"built in {build_seconds:.1f} s on {device} in {dtype}"
    lines = [f"Qwen2-VL of {size:,.1f} M parameters ({params.lora / 1e6:.1f} M LoRA), {built}"]
    for run in runs:
        memory = f", peak {run['peak_memory_gib']} GiB" if run["peak_memory_gib"] is not None else ""
        mfu = f", MFU {run['mfu_percent']}%" if "mfu_percent" in run else ", MFU n/a (unknown peak)"
        lines.append(f"{run['variant']}: batch {run['batch']}x{run['seq']}: {run['tokens_per_s']} tokens/s, "
                     f"{run['samples_per_s']} samples/s{memory}{mfu}, loss {run['loss']}")
    if not all(run["finite"] for run in runs):
        raise RuntimeError("a loss was not finite: " + "; ".join(lines))
    return {"runs": runs, "peak_bf16_tflops": peak, "params": params.__dict__, "lines": lines}


def part_evaluate(smoke: bool, work: Path) -> dict[str, Any]:
    """MMAD 1-shot questions/s of the MMAD-style loop (one question per call, batch 1, as MMAD's
    scripts ask: eiad.evaluation.anchor), the engine and the engine with choice scoring, on a random
    Qwen2-VL of the 7B shape, each after one image asked untimed (as benchmarks/evaluate_speed.py
    does on the CPU)."""
    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    from eiad.benchmark.mmad import by_image, load_benchmark
    from eiad.benchmark.protocols import PROTOCOLS, Asking, plan
    from eiad.data.images import load_rgb
    from eiad.evaluation.anchor import ask_as_mmad
    from eiad.evaluation.engine import Ask, Engine
    from eiad.evaluation.runner import Job, job_groups
    from eiad.models.config import ModelConfig, ModelHandle
    from eiad.questions import load_prompt
    from eiad.sources.demo import SOURCE as DEMO

    cuda = torch.cuda.is_available()
    if not smoke and not cuda:
        raise Skip("no CUDA device visible to torch")
    shape, device, dtype = (TOY, "cpu", torch.float32) if smoke else (QWEN2_VL_7B, "cuda", torch.bfloat16)
    benchmark = work / "benchmark"
    benchmark.mkdir(parents=True)
    DEMO.fetch_benchmark({**copy.deepcopy(DEMO_BENCHMARK), "render": {**RENDER, "image_size": shape.image_side}},
                         benchmark)
    questions = load_benchmark(benchmark)
    # the processor of a tiny model with the shape's patches; the network is the shape, with its token ids
    tiny = {**params("model.tiny"), **TOY_MODEL, "patch_size": shape.patch, "merge_size": shape.merge,
            "image_size": shape.image_side}
    qwen = ModelHandle.from_config(ModelConfig.parse({**params("model"), "family": "qwen2_vl", "source": "tiny",
                                                      "tiny": tiny}, "model"))
    qwen.adapter.build_tiny(tiny, sorted({q.text for q in questions}), work / "processor")
    processor, ids = qwen.adapter.load_processor(work / "processor"), AutoConfig.from_pretrained(work / "processor")
    config = qwen2_vl_config(shape)
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        setattr(config, name, getattr(ids, name))
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        network = Qwen2VLForConditionalGeneration(config).eval()
    asking = Asking(PROTOCOLS["mmad-1shot"], "random", 1, "minicpm", False, None)
    load = lambda path: load_rgb(benchmark / path)
    images = list(by_image(questions))[:3 if smoke else 24]

    def loop(chosen: list[Any]) -> None:
        for question in chosen:
            ask_as_mmad(qwen.adapter, network, processor, load_prompt(plan(question, asking), load), 8)

    def engine(mode: str) -> Callable[[list[Any]], None]:
        def ask(chosen: list[Any]) -> None:
            # built when first asked, after the loop: the engine sets its attention on the shared model
            asker = Engine(qwen, network, processor, mode, 32)
            for group in job_groups([Job(questions=tuple(image)) for image in by_image(chosen)], 32):
                asker.answer_all([[Ask(plan(q, asking), 8, q.options) for q in job.questions] for job in group], load)
        return ask

    timed = [q for image in images[1:] for q in image]
    rates = {}
    for name, path in (("mmad-loop", loop), ("engine", engine("generate")), ("engine-choice", engine("choice"))):
        path(images[0])  # untimed: first calls and lazy set-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        path(timed)
        if cuda:
            torch.cuda.synchronize()
        rates[name] = len(timed) / (time.perf_counter() - start)
    anchor = rates["mmad-loop"]
    heading = (f"mmad-1shot on a random Qwen2-VL of {shape.hidden} wide, {shape.layers} layers ({device}, {dtype}), "
               f"{len(timed)} questions over {len(images) - 1} images of {shape.image_side} px:")
    lines = [heading]
    lines += [f"{name}: {rate:.2f} questions/s" + ("" if name == "mmad-loop" else
                                                  f", {rate / anchor:.1f}x the MMAD-style loop")
              for name, rate in rates.items()]
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
    return {"questions": len(timed), "questions_per_s": {k: round(v, 3) for k, v in rates.items()},
            "ratios": {k: round(v / anchor, 2) for k, v in rates.items() if k != "mmad-loop"},
            "peak_memory_gib": peak, "lines": lines}


PART_FUNCTIONS: dict[str, Callable[[bool, Path], dict[str, Any]]] = {
    "env": part_env, "tiny": part_tiny, "scale": part_scale, "evaluate": part_evaluate}


# --- driver -----------------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def ensure_packages(names: Sequence[str], wheels: Path) -> list[str]:
    """Install each missing package from ``wheels`` (no index: the device machine is offline)."""
    lines = []
    for name in names:
        if importlib.util.find_spec(name):
            lines.append(f"{name} {_version(name)}: present")
        elif not any(wheels.glob("*.whl")):
            lines.append(f"{name}: missing, and no wheels in {wheels} (scripts/gpu_wheels.sh makes them)")
        else:
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                                   str(wheels), name], capture_output=True, text=True, timeout=300, check=False)
            tail = (done.stderr.strip().splitlines() or ["?"])[-1]
            lines.append(f"{name} {_version(name)}: installed from {wheels}" if done.returncode == 0
                         else f"{name}: install from {wheels} failed: {tail}")
    return lines


def run_part(name: str, smoke: bool, work: Path, timeout: float) -> dict[str, Any]:
    """Run one part in a child process; its result, or why there is none."""
    result_file = work / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--work", str(work / name),
               "--result", str(result_file), *(["--cpu-smoke"] if smoke else [])]
    start = time.perf_counter()
    try:
        subprocess.run(command, timeout=timeout, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 1),
                "lines": [f"stopped after its {timeout:.0f} s limit"]}
    seconds = round(time.perf_counter() - start, 1)
    if not result_file.is_file():
        return {"status": "failed", "seconds": seconds, "lines": ["the part's process died without a result"]}
    return {**json.loads(result_file.read_text()), "seconds": seconds}


def child(name: str, smoke: bool, work: Path) -> dict[str, Any]:
    """Run a part in this process; every outcome becomes a result with a status."""
    missing = [package for package in NEEDS.get(name, ()) if importlib.util.find_spec(package) is None]
    if missing:
        return {"status": "skipped", "lines": [f"missing {', '.join(missing)}"]}
    try:
        return {"status": "ok", **PART_FUNCTIONS[name](smoke, work)}
    except Skip as reason:
        return {"status": "skipped", "lines": [str(reason)]}
    except Exception as error:  # noqa: BLE001 - a failed part is reported, and the others still run
        traceback.print_exc()
        return {"status": "failed", "lines": [f"{type(error).__name__}: {error}"[:500]]}


def summary(packages: list[str], results: dict[str, dict[str, Any]]) -> str:
    rule = "=" * 30
    out = [f"{rule} GPU CHECK SUMMARY {rule}", *(f"package  {line}" for line in packages)]
    for name, result in results.items():
        lines = result.get("lines") or [""]
        out.append(f"[{result['status']:>7}] {name:<5} {result.get('seconds', 0):7.1f} s  {lines[0]}")
        out.extend(f"{'':24}{line}" for line in lines[1:])
    out += [FLOPS_FORMULA, "=" * (len(rule) * 2 + 19)]
    return "\n".join(out)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes and few steps, on the CPU if no GPU")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl", help="wheels to install missing packages from")
    parser.add_argument("--budget", type=float, default=520, help="seconds for all parts together (installs aside)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.part:
        args.work.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(child(args.part, args.cpu_smoke, args.work)))
        return 0
    parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; known: {list(PARTS)}")
    packages = ensure_packages(sorted({name for part in parts for name in NEEDS.get(part, ())}), args.wheels)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = args.work or Path(scratch)
        deadline = time.monotonic() + args.budget
        results = {}
        for part in parts:
            timeout = min(TIMEOUTS[part], deadline - time.monotonic())
            results[part] = (run_part(part, args.cpu_smoke, work, timeout) if timeout > 0 else
                             {"status": "skipped", "lines": ["no time left in --budget"]})
    print(summary(packages, results), flush=True)
    return 0 if all(result["status"] in ("ok", "skipped") for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
