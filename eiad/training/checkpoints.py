"""Checkpoints that resume an interrupted run of the same settings, and only that.

A fingerprint of what a run trains with is stamped into the checkpoint folder; a run finds
checkpoints of its own fingerprint and resumes them, clears anything else and starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from eiad.training.config import TrainConfig, deepspeed_config_file

FINGERPRINT = "eiad-run.json"
COMPLETE = "eiad-run.complete"  # written when the run finished: its checkpoints are not to be resumed


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(config: TrainConfig, train_file: Path, model_dir: Path, world_size: int) -> dict[str, Any]:
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


def agreed_resume_point(checkpoints: Path, fingerprint: dict[str, Any], main: bool) -> bool:
    """Rank 0 decides whether to resume (and clears stale checkpoints); every rank gets its answer.

    Letting each rank look for itself races with rank 0 clearing the folder, and ranks on
    other nodes may not see the same files.
    """
    decision = [_resume_point(checkpoints, fingerprint) if main else None]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(decision, src=0)
    return bool(decision[0])
