#!/bin/sh
# Wheels of the packages benchmarks/gpu_throughput.py and benchmarks/gpu_probe.py need beyond
# what the GPU machine has (CUDA torch, transformers, numpy, pillow, safetensors, pyyaml,
# huggingface_hub, regex, typing_extensions, packaging, sympy, ...), downloaded into .whl/
# (git-ignored) at the versions installed here, plus torchao at a fixed version (FP8; not a
# dependency of the CPU install). onnxruntime is the CPU build: onnxruntime-gpu (about 250 MB)
# does not fit the 64 MiB that travels with a device run. About 50 MB in all.
#
#   sh benchmarks/wheelhouse.sh [DEST]     # needs PyPI; PYTHON=... picks the interpreter
#
# On the machine, offline, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site python3 benchmarks/gpu_probe.py      (or: sh benchmarks/gpu_probe.sh)
set -eu
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# diffusers, compel, open_clip: the framework; onnxruntime (with flatbuffers, protobuf) runs the
# WD tagger; onnx (with ml_dtypes) lets torch.onnx.export write the probe's tagger
PACKAGES="diffusers importlib_metadata compel open_clip_torch ftfy wcwidth onnxruntime flatbuffers
protobuf onnx ml_dtypes"
FIXED="torchao==0.18.0"
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
    -d "$DEST" $PINS $FIXED
ls -l "$DEST"
du -sh "$DEST"
