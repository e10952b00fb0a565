"""Parts of the GPU probe (benchmarks/gpu_probe.py): the JSON-lines log, the time budget, the
environment and SDPA backend step, FLOP counting and the profile split by kernel class."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

VERSIONS = ("torch", "diffusers", "transformers", "torchao", "triton", "onnxruntime", "onnx",
            "open_clip_torch", "compel", "numpy", "pillow")
# kernel (or operator) name -> class, first match wins: attention and convolution kernels also
# say "gemm" in their names, so they come first
KERNEL_CLASSES = (
    ("attention", r"flash|fmha|attention|sdpa|_efficient_attention|cudnn_attn|mha_"),
    ("conv", r"conv|implicit_gemm|fprop|dgrad|wgrad|winograd|im2col"),
    ("matmul", r"gemm|matmul|\bmm\b|aten::mm|addmm|bmm|linear|cutlass|cublas|nvjet|scaled_mm"
               r"|triton_tem|xmma|wgmma"),
    ("norm", r"norm|triton_per|triton_red|welford|reduce"),
    ("copy", r"copy|memcpy|memset|\bcat\b|aten::cat|transpose|contiguous|clone|permute|index"
             r"|gather|scatter|_to_copy|catarray"),
    ("elementwise", r"elementwise|vectorized|triton_poi|unrolled|aten::(add|mul|sub|div|silu|gelu"
                    r"|sigmoid|exp|pow|where|fill|neg|rsqrt|sqrt|tanh|clamp|cos|sin)|"
                    r"act_and_mul|silu|gelu"),
)


class Log:
    """One JSON line per step: printed to stdout and appended (flushed) to `path`, so a run cut
    off by a timeout keeps every step that finished."""

    def __init__(self, path: Path, start: float):
        self.path, self.start = path, start
        path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, record: dict) -> dict:
        record = {**record, "t": round(time.perf_counter() - self.start, 1)}
        line = json.dumps(record, default=str)
        print(line, flush=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return record


class Budget:
    """Seconds the probe may still spend. `reserve` is kept back for the closing baseline, so a
    step starts only when its estimate fits in what is left after it."""

    def __init__(self, seconds: float, start: float | None = None):
        self.seconds = float(seconds)
        self.start = time.perf_counter() if start is None else start
        self.reserve = 0.0

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def refuse(self, need: float, keep: bool = True) -> str | None:
        """None when a step estimated at `need` seconds fits, else the reason to skip it."""
        free = self.left() - (self.reserve if keep else 0.0)
        if free >= need:
            return None
        kept = f" after the {self.reserve:.0f} s kept for the closing baseline" if keep and \
            self.reserve else ""
        return f"budget: needs ~{need:.0f} s, {max(free, 0.0):.0f} s left{kept}"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in VERSIONS:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def driver() -> str | None:
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def sdpa_shapes(quick: bool, batch: int) -> dict:
    """(q, kv) shapes [batch, heads, tokens, head dim] of the UNet's attention at 1024 px: the
    640-channel level (64x64 tokens, 10 heads) and the 1280 one (32x32, 20 heads), self- and
    cross-attention (77 text tokens); the CFG batch is twice the unit's."""
    b = 2 * batch
    if quick:
        return {"self_64": ((b, 2, 64, 16), (b, 2, 64, 16)),
                "cross_64": ((b, 2, 64, 16), (b, 2, 77, 16))}
    return {"self_4096": ((b, 10, 4096, 64), (b, 10, 4096, 64)),
            "cross_4096": ((b, 10, 4096, 64), (b, 10, 77, 64)),
            "self_1024": ((b, 20, 1024, 64), (b, 20, 1024, 64)),
            "cross_1024": ((b, 20, 1024, 64), (b, 20, 77, 64))}


def sdpa_backends(device: str, dtype, quick: bool, batch: int) -> dict:
    """Per attention shape: the backend PyTorch picks by default, and each backend's time when
    forced alone with `sdpa_kernel` (None where it cannot run these inputs)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    names = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
    out = {}
    for label, (qs, kvs) in sdpa_shapes(quick, batch).items():
        q = torch.randn(qs, device=device, dtype=dtype)
        k, v = (torch.randn(kvs, device=device, dtype=dtype) for _ in range(2))
        try:
            chosen = SDPBackend(int(torch._fused_sdp_choice(q, k, v))).name
        except Exception as e:  # noqa: BLE001 - a private helper: report, do not fail
            chosen = f"unknown ({type(e).__name__})"
        ms = {}
        for name in names:
            try:
                with sdpa_kernel(getattr(SDPBackend, name)):
                    ms[name] = round(_time_ms(lambda: sdpa(q, k, v), device), 3)
            except RuntimeError:
                ms[name] = None
        out[label] = {"q": list(qs), "kv": list(kvs), "default": chosen, "ms": ms}
    return out


def _time_ms(fn, device: str, reps: int = 5) -> float:
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) * 1000 / reps


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def environment(device: str, dtype, quick: bool, batch: int) -> dict:
    import torch

    env = {"python": sys.version.split()[0], "versions": versions(), "device": device,
           "cpus": os.cpu_count(), "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                   driver=driver(), bf16=torch.cuda.is_bf16_supported())
    else:
        env.update(gpu=None, compute_capability=None, driver=None)
    try:
        env["sdpa"] = sdpa_backends(device, dtype, quick, batch)
    except Exception as e:  # noqa: BLE001 - the rest of the step still reports
        env["sdpa"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return env


def count_flops(module, args, kwargs) -> int:
    """FLOPs of one call, counted by torch's FlopCounterMode (matrix products, convolutions,
    attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


def kernel_class(name: str) -> str:
    low = name.lower()
    for label, pattern in KERNEL_CLASSES:
        if re.search(pattern, low):
            return label
    return "other"


def split_by_class(events, device_side: bool) -> dict:
    """Self time per kernel class from profiler averages: device kernels on a GPU (their own
    entries), operators' self CPU time on a CPU."""
    totals: dict[str, float] = {}
    top: dict[str, float] = {}
    for e in events:
        if device_side:
            if "cuda" not in str(getattr(e, "device_type", "")).lower():
                continue
            us = float(getattr(e, "self_device_time_total", 0.0) or 0.0)
        else:
            if not e.key.startswith("aten::"):
                continue
            us = float(e.self_cpu_time_total or 0.0)
        if us <= 0:
            continue
        label = kernel_class(e.key)
        totals[label] = totals.get(label, 0.0) + us
        top[e.key] = top.get(e.key, 0.0) + us
    whole = sum(totals.values()) or 1.0
    return {"ms": {k: round(v / 1000, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            "share": {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            "top": [[k[:120], kernel_class(k), round(v / 1000, 3)]
                    for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:12]]}


def profile(module, args, kwargs, device: str, calls: int) -> dict:
    """`calls` forwards (denoising steps) under torch.profiler, split by kernel class."""
    import torch
    from torch.profiler import ProfilerActivity

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.no_grad():
        module(*args, **kwargs)  # outside the profile: nothing left to compile or tune
        sync(device)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(calls):
                module(*args, **kwargs)
            sync(device)
    events = prof.key_averages()
    split = split_by_class(events, device_side=cuda)
    if cuda and not split["ms"]:  # no kernel entries: the operators' device time instead
        split = split_by_class(events, device_side=False)
        split["source"] = "operators (no kernel entries)"
    split.setdefault("source", "CUDA kernels" if cuda else "CPU operators")
    split["calls"] = calls
    split["ms_per_call"] = round(sum(split["ms"].values()) / calls, 3)
    return split
