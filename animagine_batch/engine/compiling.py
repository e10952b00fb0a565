"""`torch.compile` of the UNet: static shapes, whole or regional, a persistent cache, padding.

- `pipeline.compile: unet` (or `true`) compiles the UNet's forward as one graph; `regional`
  compiles each repeated transformer block instead (diffusers' `compile_repeated_blocks`, SDXL's
  `BasicTransformerBlock`): every block of one width shares a compiled graph, so a compile
  costs a fraction of the whole UNet's; the convolutions, norms and up/down blocks between them
  stay eager. `auto` compiles the whole UNet when `accel.compile_wanted` says so.
- `fullgraph=True`: a graph break is an error (under `auto`: eager from then on, with a warning),
  never a silent split into pieces. `dynamic=False`: every shape (image size, batch, prompt
  length in 77-token chunks, the halved batch after a CFG cut-off) is its own static graph,
  compiled once; dynamo's recompile limit is raised to `RECOMPILE_LIMIT` per code object, so a
  sweep over many sizes keeps compiling instead of falling back to eager after eight shapes.
- Padding: a call of fewer images than the compiled batch (a unit's last, smaller batch, or a
  prompt-length split of a unit) is padded to the compiled batch with copies of its last image's
  inputs (conditioning and seed), and the extra images are dropped (`pad`), so the call reuses
  the compiled shape. The rows and the other images are unchanged: each image of a batch is
  computed independently, and the padded call has the shape of a full one.
- Cache: Inductor's cache folder (`TORCHINDUCTOR_CACHE_DIR`: FX graphs, AOTAutograd results
  and Triton kernels) under the project cache folder, keyed by torch, Triton and GPU
  (`<cache>/compile/torch-2.14.1+cu130-triton-3.8.0-NVIDIA_H200-sm90`), so every worker and run
  on a machine after the first loads compiled kernels instead of compiling them; Ray workers on
  one node share it. A `TORCHINDUCTOR_CACHE_DIR` set by the user is kept.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import warnings
from pathlib import Path

from ..cache import cache_dir

BACKEND = "inductor"  # torch.compile's backend (tests count compiles with another one)
RECOMPILE_LIMIT = 64
MODES = {"true": "unet", "unet": "unet", "auto": "unet", "regional": "regional"}


def cache_key(device) -> str:
    """The compile cache's folder name: torch, Triton and GPU (name and compute capability)."""
    import torch

    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "none"
    gpu = "cpu"
    if str(device).startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(device)
        gpu = f"{torch.cuda.get_device_name(device)}-sm{major}{minor}"
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", f"torch-{torch.__version__}-triton-{triton}-{gpu}")


def use_cache(device) -> Path:
    """Point Inductor's cache at the project cache folder (unless the user set one); returns
    the folder compiled artefacts go to."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        folder = cache_dir() / "compile" / cache_key(device)
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


class CompiledOrEager:
    """The UNet's forward: the compiled one, or eager from the first compilation error on when
    `fallback` is set (a warning names the error). `undo` reverts a regional compile."""

    def __init__(self, compiled, eager, fallback: bool, undo=None):
        self.compiled, self.eager, self.fallback, self.undo = compiled, eager, fallback, undo
        self.error: str | None = None

    def __call__(self, *args, **kwargs):
        if self.error is None:
            import torch._dynamo.exc as dynamo_exc

            try:
                return self.compiled(*args, **kwargs)
            except dynamo_exc.TorchDynamoException as e:
                if not self.fallback:
                    raise
                self.error = f"{type(e).__name__}: {str(e)[:300]}"
                if self.undo is not None:
                    self.undo()
                warnings.warn(f"torch.compile of the UNet failed, running eager: {self.error}",
                              RuntimeWarning, stacklevel=2)
        return self.eager(*args, **kwargs)


def repeated_blocks(unet) -> list:
    """The modules `compile_repeated_blocks` compiles (by class name, as diffusers finds them)."""
    names = set(getattr(unet, "_repeated_blocks", None) or ())
    return [m for m in unet.modules() if type(m).__name__ in names]


def compile_unet(pipe, mode: str, fallback: bool) -> None:
    """Compile `pipe.unet` in place: `unet` (the whole forward) or `regional` (see module doc)."""
    import torch
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True  # 1x1 convolutions as matrix products: fusable epilogues
    dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
    options = {"fullgraph": True, "dynamic": False, "backend": BACKEND}
    eager = pipe.unet.forward
    if mode == "regional":
        blocks = repeated_blocks(pipe.unet)
        pipe.unet.compile_repeated_blocks(**options)

        def undo():
            for block in blocks:
                block._compiled_call_impl = None

        pipe.unet.forward = CompiledOrEager(eager, eager, fallback, undo)
    else:
        pipe.unet.forward = CompiledOrEager(torch.compile(eager, **options), eager, fallback)


def pad(prompt_args: dict, generators: list, size: int, seed: int) -> tuple[dict, list]:
    """A call's pipeline arguments and generators padded to `size` images with copies of its
    last image's conditioning and a generator of `seed` (its last image's)."""
    import torch

    extra = size - len(generators)
    if extra <= 0:
        return prompt_args, generators
    padded = {}
    for name, value in prompt_args.items():
        if isinstance(value, torch.Tensor):
            value = torch.cat([value, value[-1:].expand(extra, *value.shape[1:])])
        elif isinstance(value, list):
            value = value + value[-1:] * extra
        padded[name] = value
    return padded, generators + [torch.Generator("cpu").manual_seed(seed) for _ in range(extra)]
