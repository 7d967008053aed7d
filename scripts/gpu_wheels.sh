#!/usr/bin/env bash
# Fill .whl/ with what scripts/gpu_check.py installs on the offline GPU machine when missing:
# deepspeed and dvclive with their dependencies, for that machine's Python (3.12 unless given).
# Run it here (with network); the device call then carries the folder: carry [".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${1:-3.12}"
dest=.whl
mkdir -p "$dest"
# (.gitignore keeps the wheels out of git; the device call names the folder in carry)
# sdist-only, pure-Python packages: built here once, good for any Python 3
pip wheel --quiet --no-deps --wheel-dir "$dest" "deepspeed>=0.19" "antlr4-python3-runtime==4.9.3"
# everything else as binary wheels for the device's interpreter; the resolver takes the two above from --find-links
pip download --quiet --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --find-links "$dest" --dest "$dest" dvclive hjson pydantic
du -sh "$dest"
