"""`pipeline.precision: fp8`: the UNet's Linear layers in float8 through torchao.

torchao's `Float8DynamicActivationFloat8WeightConfig` with per-row scales (`PerRow`): weights
stored as float8 (e4m3) with one scale per output row, activations quantized per row at run
time, the products by `torch._scaled_mm` on float8 tensor cores, outputs in bfloat16. Those
tensor cores exist from compute capability 8.9 (Ada, Hopper and newer), and the quantize and
scale steps only pay off fused by `torch.compile` (eager float8 is slower than bfloat16), so
fp8 always runs compiled. Only layers whose both sides are multiples of 16 are converted (the
float8 matrix product's rule); every SDXL Linear layer qualifies. It changes pixels: compare it
with the same seeds before relying on it.

`problems(device)` says why fp8 cannot run on a worker (torchao or Triton missing, a device
that is not CUDA 8.9+); the worker raises them as a ConfigError before loading anything.
"""

from __future__ import annotations

import importlib.util

MIN_CAPABILITY = (8, 9)
KEY = "pipeline.precision"


def problems(device) -> list[str]:
    """Why `precision: fp8` cannot run on `device` (empty when it can)."""
    out = []
    if importlib.util.find_spec("torchao") is None:
        out.append(f"{KEY}: fp8 needs torchao, which is not installed (pip install "
                   "'animagine-batch[fp8]'); allowed without it: auto")
    if not str(device).startswith("cuda"):
        out.append(f"{KEY}: fp8 needs a CUDA GPU of compute capability 8.9 or higher (Ada, "
                   f"Hopper or newer); this worker runs on {device}; allowed here: auto")
        return out
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < MIN_CAPABILITY:
        out.append(f"{KEY}: fp8 needs a CUDA GPU of compute capability 8.9 or higher (Ada, "
                   f"Hopper or newer); {torch.cuda.get_device_name(device)} has {major}.{minor}; "
                   "allowed here: auto")
    if importlib.util.find_spec("triton") is None:
        out.append(f"{KEY}: fp8 runs compiled and needs Triton, which is not installed; "
                   "allowed without it: auto")
    return out


def eligible(module, name: str = "") -> bool:
    """A Linear layer float8 matrix products can take (both sides multiples of 16)."""
    import torch

    return (isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0
            and module.out_features % 16 == 0)


def quantize(unet) -> int:
    """Convert the UNet's eligible Linear layers in place; returns how many were converted."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    count = sum(1 for m in unet.modules() if eligible(m))
    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
              filter_fn=eligible)
    return count
