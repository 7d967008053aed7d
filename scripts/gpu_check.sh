#!/usr/bin/env bash
# On the GPU machine: the whole check, its full log kept under $OUT (the device tool's folder) when set.
# From a session: run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# after `bash scripts/gpu_wheels.sh` has filled .whl/ here.
set -o pipefail
cd "$(dirname "$0")/.."
PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
