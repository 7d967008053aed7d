"""Running a stage as one process per GPU: which launcher, how many processes, who writes outputs.

A stage that asks for more than one process re-runs itself under ``torchrun`` (one node) or the
``deepspeed`` launcher (one node, or several listed in a hostfile). The launchers tell each
worker its place through ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; a process started
without them is the one that launches, or a single-process run.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eiad.errors import ConfigError
from eiad.params import Params

Launcher = Literal["torchrun", "deepspeed"]


@dataclass(frozen=True)
class LaunchSettings(Params):
    """A stage's `launch` block (`train.launch`, `evaluate.launch`); one node with one GPU runs in-process."""

    launcher: Launcher
    nodes: int
    gpus_per_node: int
    hostfile: str | None  # deepspeed's format: one "host slots=N" line per node
    master_addr: str | None  # None: 127.0.0.1 on one node, the hostfile's first host on several
    master_port: int

    def __post_init__(self) -> None:
        if min(self.nodes, self.gpus_per_node) < 1:
            raise ConfigError("launch: nodes and gpus_per_node must be >= 1")
        if not 1024 <= self.master_port <= 65535:
            raise ConfigError(f"launch.master_port: {self.master_port} is not a port in 1024-65535")
        if self.nodes > 1 and self.launcher != "deepspeed":
            # torchrun starts processes on its own node only; the deepspeed launcher reaches the others by ssh
            raise ConfigError("launch: several nodes need launcher: deepspeed (with a hostfile)")
        if self.nodes > 1 and not self.hostfile:
            raise ConfigError("launch: several nodes need a hostfile listing them")
        if self.hostfile and not Path(self.hostfile).is_file():
            raise ConfigError(f"launch.hostfile: {self.hostfile} does not exist")

    @property
    def processes(self) -> int:
        return self.nodes * self.gpus_per_node


def is_worker() -> bool:
    """True inside a process that a launcher started (it set the rank variables)."""
    return "LOCAL_RANK" in os.environ


def needs_launch(settings: LaunchSettings) -> bool:
    """True when this process must start the workers instead of training itself."""
    return settings.processes > 1 and not is_worker()


def rank() -> int:
    """This process's global rank (0 outside a launched run)."""
    return int(os.environ.get("RANK", "0"))


def end_worker() -> None:
    """End a launched worker whose work has succeeded: its process group destroyed, its output
    flushed, then ``os._exit(0)``, as a multiprocessing child ends, without the interpreter's
    shutdown. Outside a launched run it does nothing.

    Why not a normal exit: a gloo thread that drops the last reference to a finished
    collective's tensors needs the GIL to free them; once the interpreter shuts down it cannot
    have it, and the worker aborts (SIGABRT, "terminate called without an active exception"),
    so the launcher reports a failed run although every output was written. Destroying the
    group does not stop those threads while a DistributedDataParallel model still holds it (the
    Trainer's does). Outputs are written (atomically) before this is called, so nothing is lost
    by skipping the shutdown. Not called after an error: another rank may still wait in a
    collective.
    """
    if not is_worker():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch_command(settings: LaunchSettings, script: str | Path, args: Sequence[str],
                   python: str = sys.executable) -> list[str]:
    """The command line that runs ``script args`` as ``settings.processes`` workers.

    Both launchers run as modules of ``python``, so the workers use this interpreter and its
    packages whatever is on PATH.
    """
    if settings.launcher == "torchrun":
        launcher = [python, "-m", "torch.distributed.run", "--nnodes=1",
                    f"--nproc_per_node={settings.gpus_per_node}",
                    f"--master_addr={settings.master_addr or '127.0.0.1'}", f"--master_port={settings.master_port}"]
    else:
        # --no_local_rank: the workers read LOCAL_RANK from the environment; the stage's
        # command line has no --local_rank option
        launcher = [python, "-m", "deepspeed.launcher.runner", "--no_local_rank",
                    f"--num_gpus={settings.gpus_per_node}", f"--master_port={settings.master_port}"]
        if settings.hostfile:
            launcher += [f"--hostfile={settings.hostfile}", f"--num_nodes={settings.nodes}"]
        if settings.master_addr:
            launcher.append(f"--master_addr={settings.master_addr}")
    return [*launcher, str(script), *args]


def run_launched(settings: LaunchSettings, script: str | Path, args: Sequence[str]) -> int:
    """Run the workers to completion; the launcher's exit status (non-zero if any worker failed)."""
    return subprocess.run(launch_command(settings, script, args), check=False).returncode


def free_port() -> int:
    """A TCP port nobody listens on now (for a rendezvous on this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def single_process_group() -> Iterator[None]:
    """Rank variables for a one-process distributed run started without a launcher.

    DeepSpeed always sets up a process group; without these variables it falls back to MPI
    discovery (and fails where mpi4py is missing). Inside a launched worker nothing changes.
    Afterwards the environment is restored (accelerate also leaves ACCELERATE_USE_DEEPSPEED
    behind), so a later run in this process is not taken for a DeepSpeed one. The group of one
    stays: DeepSpeed keeps handles to it and reuses it in a later run.
    """
    if is_worker():
        yield
        return
    saved = dict(os.environ)
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
