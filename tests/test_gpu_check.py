"""scripts/gpu_check.py at toy sizes on the CPU: its FLOPs formula, its parts and its driver."""

import importlib
import importlib.util
import sys

import pytest
import torch
from conftest import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def test_flops_formula_equals_the_counted_matrix_products(gpu_check):
    from torch.utils.flop_counter import FlopCounterMode

    shape, batch, seq = gpu_check.TOY, 2, 32
    model = gpu_check.random_lora_model(shape, "cpu", torch.float32)
    inputs = gpu_check.synthetic_batch(model, shape, batch, seq, "cpu", torch.float32)
    with FlopCounterMode(display=False) as counter:
        gpu_check.lora_step(model, inputs, shape.answer_tokens)
    # attention kernels are counted by the formula's other term (and not at all on some CPUs)
    counted = sum(flops for op, flops in counter.get_flop_counts()["Global"].items()
                  if "scaled_dot_product" not in str(op))
    assert counted == gpu_check.matmul_flops(gpu_check.matmul_params(model), shape, batch, seq)


def test_peak_rates_by_device_name(gpu_check):
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops("Tesla T4") is None


def test_the_seven_billion_shape_is_qwen2_vl_7b(gpu_check):
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(gpu_check.qwen2_vl_config(gpu_check.QWEN2_VL_7B))
    assert 8.28e9 < sum(p.numel() for p in model.parameters()) < 8.30e9  # Qwen2-VL-7B: 8.29 B
    assert gpu_check.QWEN2_VL_7B.image_tokens == 256


def test_scale_part_measures_every_variant(gpu_check, tmp_path):
    result = gpu_check.part_scale(smoke=True, work=tmp_path)
    assert [run["variant"] for run in result["runs"]] == ["checkpointing", "no-checkpointing"]
    assert all(run["finite"] and run["tokens_per_s"] > 0 for run in result["runs"])
    assert "MFU n/a" in result["lines"][1]  # no peak rate is known for a CPU


def test_evaluate_part_compares_the_engine_with_the_mmad_loop(gpu_check, tmp_path):
    result = gpu_check.part_evaluate(smoke=True, work=tmp_path)
    assert result["questions"] > 0 and set(result["ratios"]) == {"engine", "engine-choice"}
    assert all(rate > 0 for rate in result["questions_per_s"].values())
    assert all("x the MMAD-style loop" in line for line in result["lines"][2:])


def test_tiny_part_end_to_end(gpu_check, tmp_path, monkeypatch):
    # a single rank never uses the shared-memory all-reduce DeepSpeed would compile for the CPU
    monkeypatch.setattr(importlib.import_module("deepspeed.comm.torch"), "build_shm_op", lambda: None)
    result = gpu_check.child("tiny", smoke=True, work=tmp_path)
    assert result["status"] == "ok", result["lines"]
    assert result["mmad_questions"] > 0 and result["ddqa_tasks"] == ["AD", "DC", "DFM", "RDL"]
    assert (tmp_path / "merged" / "config.json").is_file()


def test_driver_reports_each_part_and_its_time_limit(gpu_check, tmp_path, capsys):
    assert gpu_check.run_part("scale", smoke=True, work=tmp_path, timeout=0.5)["status"] == "timeout"
    env = gpu_check.run_part("env", smoke=True, work=tmp_path, timeout=120)
    assert env["status"] == "ok" and env["python"]
    print(gpu_check.summary(["deepspeed 0: present"], {"env": env}))
    block = capsys.readouterr().out
    assert "GPU CHECK SUMMARY" in block and "[     ok] env" in block and "model FLOPs per step" in block
