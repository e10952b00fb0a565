"""Where a worker runs: its device and dtype, out-of-memory errors, and freeing GPU memory."""

from __future__ import annotations


def resolve_device(runner, pipeline=None):
    """(device, torch dtype): `runner.device` (auto: CUDA when present), and `pipeline.dtype`
    (auto: fp32 on a CPU; on a GPU bf16 when optimised, else fp16)."""
    import torch

    from ..jobspec.job import PipelineSpec
    from . import accel

    pipeline = pipeline if pipeline is not None else PipelineSpec()
    device = runner.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if pipeline.dtype == "auto":
        dtype = torch.float32 if device == "cpu" else accel.gpu_dtype(pipeline, device)
    else:
        dtype = names[pipeline.dtype]
    return device, dtype


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def free_cache() -> None:
    """Return cached GPU memory to the device (after an out-of-memory error, or a model)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
