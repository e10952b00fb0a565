"""GPU optimisations of a loaded SDXL pipeline, driven by the job's execution options.

`apply(pipe, pipeline, device, dtype)` runs once, right after the pipeline is loaded. Options
(`pipeline.*`, conf/base.yaml):

- `optimise`: `auto` (default) optimises on CUDA devices and leaves a CPU pipeline exactly as
  loaded (same image bytes); `on` applies the same steps on any device; `none` never.
- `compile`: `auto` (default) compiles the whole UNet when optimising on a CUDA GPU with bf16
  tensor cores (compute capability 8.0+) and Triton installed, for a worker expected to make at
  least `compile_min_images` images of the model (default 1500; see step 6), or always under
  `precision: fp8`; `true` or `unet` force a whole-UNet compile, `regional` compiles the repeated
  transformer blocks only (`compiling.py`), `false` never compiles.
- `precision`: `auto` (default) computes in the pipeline's dtype; `fp8` converts the UNet's
  Linear layers to float8 (`fp8.py`; CUDA 8.9+, torchao, compiled). It changes pixels.
- `overlap`: `auto` (default: on CUDA) lets the local runner encode PNGs and score unit N on a
  background thread while unit N+1 generates (`runners/overlap.py`).

Steps when optimising:

1. Attention through PyTorch's `scaled_dot_product_attention`: `AttnProcessor2_0` is diffusers'
   default whenever torch has SDPA; a model that came with another processor is switched to it.
2. Fused QKV projections (`pipe.fuse_qkv_projections()`): one matrix product instead of three
   in every self-attention of the UNet and VAE (two in cross-attention). The fused layers are
   copies, so a LoRA loaded afterwards would be ignored by them: `loras.LoraAdapters` unfuses
   before it loads one.
3. `channels_last` memory format for the UNet and VAE (cuDNN's fastest convolution layout on
   tensor cores) and cuDNN autotuning (`torch.backends.cudnn.benchmark`) on CUDA.
4. A VAE precision that cannot overflow. The standard SDXL VAE overflows in float16 (decoder
   activations beyond float16's maximum of 65504 become inf, then NaN: black images), which is
   why diffusers upcasts it to float32 for every decode when `force_upcast` is set. bfloat16
   has float32's exponent range (up to ~3e38), so it cannot overflow where float32 does not:
   the VAE runs in the pipeline's dtype when that is bfloat16 or float32, and in bfloat16 (or
   float32 on GPUs without bf16) under a float16 pipeline, with latents cast on the way in.
   With `dtype: auto` an optimised CUDA pipeline is bfloat16 throughout (`gpu_dtype`).
5. With `precision: fp8`, torchao's float8 dynamic activations and weights with per-row scales
   in the UNet's Linear layers (`fp8.py`), before the compile that fuses their scaling.
6. `torch.compile` of the UNet (`compiling.py`): inductor's default mode, `fullgraph=True`,
   static shapes (`dynamic=False`: one graph per size, batch and prompt length, each compiled
   once), smaller calls padded to the job's batch size so that a unit's last, smaller batch
   reuses the compiled shape, and Inductor's cache in the project cache folder keyed by torch,
   Triton and GPU, so a second worker or run on the machine loads the kernels. Not
   `reduce-overhead`: CUDA graphs remove kernel-launch overhead, which at 1024x1024 is a few
   percent of a step that is compute-bound, and they hold a private memory pool per shape. Not
   `max-autotune(-no-cudagraphs)`: autotuning every matrix product and convolution adds minutes
   per shape for little over cuBLAS/cuDNN at these sizes. A cold compile is slow; what it costs
   and saves on a GPU, and after how many images it is earned back, is measured in
   BENCHMARKS.md. Hence `compile_min_images` (default 1500, from those figures): under
   `compile: auto` a worker compiles only when it is expected to make at least that many images
   of the model (the driver passes the pending count per model; the Ray runner divides it among
   its actors). Under `compile: auto` a compilation error (a graph break included) falls back
   to eager with a warning (the worker's printed set-up then says so); otherwise it fails the
   unit.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..jobspec.sections import execution_options as options
from . import compiling, fp8
from .compiling import CompiledOrEager  # noqa: F401 - the UNet forward's wrapper, re-exported


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def active(pipeline, device) -> bool:
    """Whether `apply` changes the pipeline on this device."""
    mode = options(pipeline)["optimise"]
    return mode == "on" or (mode == "auto" and _is_cuda(device))


def gpu_dtype(pipeline, device):
    """The torch dtype `dtype: auto` means on an accelerator: bfloat16 when optimising on a GPU
    with bf16 support, else float16."""
    import torch

    if active(pipeline, device) and _is_cuda(device) and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def overlap(pipeline, device) -> bool:
    """Whether the local runner overlaps post-processing with generation."""
    value = options(pipeline)["overlap"]
    return value == "true" or (value == "auto" and _is_cuda(device))


def vae_dtype(dtype, device):
    """The VAE's dtype under a pipeline of `dtype`: one that cannot overflow (see module doc)."""
    import torch

    if dtype != torch.float16:
        return dtype
    if _is_cuda(device) and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def compile_wanted(pipeline, device, images: int | None = None) -> tuple[bool, str]:
    """Whether to compile the UNet, and why (see the module doc). `images`: how many images
    this worker is expected to make (None: unknown, counted as many)."""
    opts = options(pipeline)
    value = opts["compile"]
    if value != "auto":
        return value != "false", f"compile: {value}"
    if opts["precision"] == "fp8":  # fp8.problems has checked the GPU and Triton
        return True, "precision: fp8 runs compiled"
    least = int(getattr(pipeline, "compile_min_images", 0) or 0)
    if images is not None and images < least:
        return False, f"{images} images < pipeline.compile_min_images ({least})"
    if not _is_cuda(device):
        return False, "not a CUDA device"
    import importlib.util

    import torch

    if torch.cuda.get_device_capability(device)[0] < 8:
        return False, "GPU without bf16 tensor cores (compute capability < 8.0)"
    if importlib.util.find_spec("triton") is None:
        return False, "Triton is not installed"
    return True, "compile: auto"


def check(pipeline, device) -> None:
    """Refuse, before anything loads, what this worker cannot run: a ConfigError naming
    `pipeline.precision` and what is allowed (fp8 without torchao, Triton or a CUDA 8.9+ GPU)."""
    if options(pipeline)["precision"] == "fp8" and (problems := fp8.problems(device)):
        raise ConfigError(problems)


def summary(done: dict) -> str:
    """One line for the run's output: what `apply` did to a worker's pipeline."""
    if not done.get("optimised"):
        return f"pipeline as loaded ({done.get('reason', 'not optimised')})"
    compiled = "UNet eager ({})".format(done.get("compile_reason", "not compiled"))
    if done.get("compiled"):
        compiled = "UNet compiled" + {"regional": " (repeated blocks)"}.get(
            done.get("compile_mode"), "")
    precision = f", {done['precision']}" if done.get("precision") else ""
    return (f"{done['dtype']}, VAE {done['vae_dtype']}, SDPA, fused QKV, channels_last"
            f"{precision}, {compiled}")


def _cast_input(fn, dtype):
    def cast(z, *args, **kwargs):
        return fn(z.to(dtype), *args, **kwargs)

    cast.__wrapped__ = fn
    return cast


def apply(pipe, pipeline, device, dtype, images: int | None = None) -> dict:
    """Optimise a loaded pipeline in place (see the module doc); returns what was done.
    `images`: how many images this worker is expected to make (`compile: auto` weighs it)."""
    opts = options(pipeline)
    if not active(pipeline, device):
        return {"optimised": False, "reason": f"pipeline.optimise: {opts['optimise']} on {device}"}
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    if any(type(p).__name__ not in ("AttnProcessor2_0", "FusedAttnProcessor2_0")
           for p in pipe.unet.attn_processors.values()):
        pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.fuse_qkv_projections()
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    vae = vae_dtype(dtype, device)
    if vae != pipe.vae.dtype:
        pipe.vae.to(dtype=vae)
        pipe.vae.decode = _cast_input(pipe.vae.decode, vae)
    if _is_cuda(device):
        torch.backends.cudnn.benchmark = True
    wanted, why = compile_wanted(pipeline, device, images)
    done = {"optimised": True, "dtype": str(dtype).removeprefix("torch."),
            "vae_dtype": str(vae).removeprefix("torch."), "attention": "sdpa", "fused_qkv": True,
            "channels_last": True, "compiled": False, "compile_reason": why}
    if opts["precision"] == "fp8":
        done["precision"] = f"fp8 UNet Linear layers ({fp8.quantize(pipe.unet)})"
    if wanted:
        mode = compiling.MODES[opts["compile"]]
        done["compile_cache"] = str(compiling.use_cache(device))
        compiling.compile_unet(pipe, mode, fallback=opts["compile"] == "auto")
        done.update(compiled=True, compile_mode=mode)
    return done
