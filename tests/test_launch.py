"""Multi-process launching: command lines, settings, rank-0-only writes, and two CPU workers end to end."""

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from conftest import PARAMS, REPO, TINY, config, load_stage, model_handle, params, train_config

from eiad.errors import ConfigError
from eiad.launch import LaunchSettings, free_port, launch_command, needs_launch, single_process_group
from eiad.training.checkpoints import agreed_resume_point, fingerprint
from eiad.training.trainer import _check_process_group, _live, save_adapter, train_lora


def launch_settings(**changes) -> LaunchSettings:
    return config(LaunchSettings, "train.launch", **changes)

ARGS = ["--model", "models/base", "--params", "params.yaml"]


def test_torchrun_on_one_node():
    command = launch_command(launch_settings(gpus_per_node=4, master_port=29600), "stages/train_lora.py", ARGS,
                             python="/venv/bin/python")
    assert command == ["/venv/bin/python", "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=4",
                       "--master_addr=127.0.0.1", "--master_port=29600", "stages/train_lora.py", *ARGS]


def test_deepspeed_launcher_on_one_node():
    command = launch_command(launch_settings(launcher="deepspeed", gpus_per_node=8), "stages/train_lora.py", ARGS,
                             python="python3")
    assert command == ["python3", "-m", "deepspeed.launcher.runner", "--no_local_rank", "--num_gpus=8",
                       "--master_port=29500", "stages/train_lora.py", *ARGS]


def test_deepspeed_launcher_on_several_nodes(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    settings = launch_settings(launcher="deepspeed", nodes=2, gpus_per_node=8, hostfile=str(hostfile),
                              master_addr="10.0.0.1")
    command = launch_command(settings, "stages/train_lora.py", ARGS, python="python3")
    assert command[:3] == ["python3", "-m", "deepspeed.launcher.runner"]
    assert set(command[3:9]) == {"--no_local_rank", "--num_gpus=8", "--master_port=29500", f"--hostfile={hostfile}",
                                 "--num_nodes=2", "--master_addr=10.0.0.1"}
    assert command[9:] == ["stages/train_lora.py", *ARGS]
    assert settings.processes == 16


@pytest.mark.parametrize("settings, message", [
    ({"nodes": 2, "hostfile": None}, "launcher: deepspeed"),
    ({"launcher": "deepspeed", "nodes": 2}, "hostfile"),
    ({"launcher": "deepspeed", "hostfile": "no/such/hostfile"}, "does not exist"),
    ({"gpus_per_node": 0}, ">= 1"),
    ({"master_port": 80}, "1024-65535"),
    ({"launcher": "mpirun"}, "not one of"),
])
def test_bad_launch_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        train_config(launch=settings)


def test_deepspeed_must_be_installed_when_asked_for(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "deepspeed"
                        else find_spec(name, *rest))
    with pytest.raises(ConfigError, match="not installed"):
        train_config(launch={"launcher": "deepspeed"})
    train_config()  # params.yaml launches nothing that needs it


def test_one_process_runs_in_place_and_workers_never_relaunch(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not needs_launch(launch_settings())
    assert needs_launch(launch_settings(gpus_per_node=2))
    monkeypatch.setenv("LOCAL_RANK", "1")  # what the launcher sets in each worker
    assert not needs_launch(launch_settings(gpus_per_node=2))


def test_the_launch_does_not_decide_resuming_but_the_world_size_does(tiny_model, small_ddqa):
    settings = train_config()
    train = small_ddqa / "train.jsonl"
    relaunched = replace(settings, launch=launch_settings(launcher="deepspeed", gpus_per_node=2, master_port=30000))
    assert fingerprint(settings, train, tiny_model, 2) == fingerprint(relaunched, train, tiny_model, 2)
    assert fingerprint(settings, train, tiny_model, 2) != fingerprint(settings, train, tiny_model, 4)
    assert fingerprint(settings, train, tiny_model, 1) != fingerprint(replace(settings, deepspeed="zero2"), train,
                                                                      tiny_model, 1)


def test_single_process_group_restores_the_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    with single_process_group():
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("0", "1")
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # what accelerate leaves behind
    assert dict(os.environ) == before


def test_other_ranks_write_nothing(tmp_path):
    stamp = {"config": "x"}
    assert not agreed_resume_point(tmp_path / "checkpoints", stamp, main=False)
    with _live(tmp_path / "metrics", resume=False, main=False) as callbacks:
        assert callbacks == []
    save_adapter(object(), tmp_path / "adapter", main=False, deepspeed=False)
    assert list(tmp_path.iterdir()) == []


WORKER_ENDING = """
import atexit, os, sys
import torch
import torch.distributed as dist
from eiad.launch import end_worker, free_port
os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
if sys.argv[1] == "worker":
    os.environ["LOCAL_RANK"] = "0"
dist.init_process_group("gloo")
dist.all_reduce(torch.ones(4))
atexit.register(print, "interpreter shut down")
destroy = dist.destroy_process_group
dist.destroy_process_group = lambda: (print("group destroyed"), destroy())
print("work done", end=" ")  # still in the buffer when the worker ends
end_worker()
print("returned; group kept:", dist.is_initialized())
"""


@pytest.mark.parametrize("place, printed", [
    ("worker", "work done group destroyed"),
    ("one process", "work done returned; group kept: True\ninterpreter shut down"),
])
def test_a_launched_worker_ends_without_the_interpreters_shutdown(place, printed):
    """A worker destroys its group, flushes what it printed and exits 0 before the interpreter's
    shutdown, where a gloo thread can abort it; outside a launched run nothing changes (a
    DeepSpeed run's one-process group stays for a later run)."""
    env = {key: value for key, value in os.environ.items() if key not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", WORKER_ENDING, place], check=False, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed


def test_two_cpu_workers_through_the_stage(tiny_model, small_ddqa, tmp_path, monkeypatch):
    """torchrun starts two gloo workers on the CPU; rank 0 alone writes the adapter and the curves."""
    params_file = tmp_path / "params.yaml"
    train = {**params("train"), "seed": 0, "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "targets": "llm"},
             "max_steps": 2, "per_device_batch": 4, "grad_accum": 1, "max_length": 256, "logging_steps": 1,
             "save_steps": 2, "gradient_checkpointing": True,
             "launch": {**params("train.launch"), "gpus_per_node": 2, "master_port": free_port()}}
    model = {**params("model"), "tiny": TINY}
    params_file.write_text(yaml.safe_dump({**PARAMS, "train": train, "model": model}))
    # the workers run stages/train_lora.py as a script: they find eiad where this process does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # else accelerate runs CPU workers as independent processes
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model), "--data", str(small_ddqa / "train.jsonl"), "--out", str(out / "adapter"),
            "--checkpoints", str(out / "checkpoints"), "--metrics", str(out / "metrics"), "--summary", str(out / "train.json"),
            "--params", str(params_file)]
    monkeypatch.setattr("sys.argv", ["stages/train_lora.py", *args])  # as DVC runs the script
    result = CliRunner().invoke(load_stage("train_lora"), args)
    assert result.exit_code == 0, result.output
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(out.glob(".adapter.*"))  # no second, half-written staging folder
    rows = (out / "metrics" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2, rows  # header and one row per step: only rank 0 logged
    summary = json.loads((out / "train.json").read_text())
    assert set(summary) == {"train_loss", "train_seconds"} and summary["train_loss"] > 0
    assert json.loads((out / "checkpoints" / "eiad-run.json").read_text())["world_size"] == 2


def test_workers_the_trainer_does_not_see_stop_the_run(tiny_model, small_ddqa, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched, but the Trainer finds no process group to join
    with pytest.raises(ConfigError, match="2 processes were launched but the Trainer runs 1"):
        train_lora(model_handle(), tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter",
                   tmp_path / "checkpoints", tmp_path / "metrics", train_config())
    assert list(tmp_path.iterdir()) == []


def test_deepspeed_config_on_cpu_workers_stops_the_run(monkeypatch):
    """accelerate runs CPU workers with DDP whatever the DeepSpeed config says."""
    from accelerate.utils import DistributedType

    monkeypatch.setenv("WORLD_SIZE", "2")
    ddp = SimpleNamespace(world_size=2, distributed_state=SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))
    with pytest.raises(ConfigError, match="single process"):
        _check_process_group(ddp, deepspeed=True)
    _check_process_group(ddp, deepspeed=False)
