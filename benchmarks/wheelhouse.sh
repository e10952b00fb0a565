#!/bin/sh
# Wheels of the packages benchmarks/gpu_throughput.py needs beyond what the GPU machine has
# (CUDA torch, transformers, numpy, pillow, safetensors, pyyaml, huggingface_hub, regex, ...),
# downloaded into .whl/ (git-ignored) at the versions installed here. All are pure Python but
# torchao (pipeline.precision: fp8), whose wheel is built for CPython's stable ABI (cp310-abi3).
#
#   sh benchmarks/wheelhouse.sh [DEST]     # needs PyPI; PYTHON=... picks the interpreter
#
# On the machine, offline, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site python3 benchmarks/gpu_throughput.py
set -eu
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PACKAGES="diffusers importlib_metadata compel open_clip_torch ftfy wcwidth torchao"
PINS=$("$PYTHON" - $PACKAGES <<'PY'
import importlib.metadata as m
import sys
print(" ".join(f"{name}=={m.version(name)}" for name in sys.argv[1:]))
PY
)
mkdir -p "$DEST"
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" $PINS
ls -l "$DEST"
