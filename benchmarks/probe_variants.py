"""Variants of the GPU probe: each on its own copy of the random-weight pipeline, handed to the
framework's `Generator` (through a local runner with the overlap thread), with the options
applied by the framework when the installed framework knows them (`pipeline.compile: regional
| unet`, `pipeline.precision: fp8`) and otherwise directly with diffusers / torchao calls on the
pipeline it was handed; each variant's record says which (`via`)."""

from __future__ import annotations

import copy
import dataclasses
import io
import time

import numpy as np

VARIANTS = {  # name -> wanted options
    "eager": {},
    "regional": {"compile": "regional"},
    "regional_fp8": {"compile": "regional", "precision": "fp8"},
    "unet_static": {"compile": "unet"},
}
BLOCKS = ("BasicTransformerBlock",)  # the SDXL UNet's repeated transformer block


def framework_knows(field: str, value: str) -> bool:
    """Whether the installed framework accepts `pipeline.<field>: <value>`."""
    from animagine_batch.errors import ConfigError
    from animagine_batch.jobspec.job import PipelineSpec
    from animagine_batch.jobspec.sections import execution_options

    if field not in {f.name for f in dataclasses.fields(PipelineSpec)}:
        return False
    try:
        execution_options(PipelineSpec(**{field: value}))
    except (ConfigError, TypeError, ValueError):
        return False
    return True


def pipeline_spec(wanted: dict, dtype: str):
    """The PipelineSpec asking the framework for what it knows of `wanted`."""
    from animagine_batch.jobspec.job import PipelineSpec

    asked = {k: v for k, v in wanted.items() if framework_knows(k, v)}
    return PipelineSpec(dtype=dtype, optimise="on", overlap=True,
                        compile=asked.get("compile", False),
                        **({"precision": asked["precision"]} if "precision" in asked else {})), asked


def applied(unet) -> dict:
    """What is in effect on a UNet: compiled blocks, FP8 weights, a compiled forward."""
    import torch

    linears = [m for m in unet.modules() if isinstance(m, torch.nn.Linear)]
    forward = unet.forward
    # the framework wraps the forward either way (engine/compiling.CompiledOrEager); under a
    # regional compile its compiled forward is the eager one and the blocks are compiled
    whole = getattr(unet, "_compiled_call_impl", None) is not None or (
        getattr(forward, "compiled", forward) is not getattr(forward, "eager", None)
        and getattr(forward, "__func__", None) is not type(unet).forward)
    regional = any(getattr(m, "_compiled_call_impl", None) is not None
                   for m in unet.modules() if m is not unet)
    return {
        "compile": "regional" if regional else "unet" if whole else None,
        "precision": "fp8" if any("float8" in type(m.weight).__name__.lower()
                                  for m in linears) else None,
    }


def complete(pipe, wanted: dict) -> dict:
    """Apply directly what `wanted` asks and the pipeline does not have yet; returns how each
    option came to be in effect (framework / direct)."""
    import torch

    unet, have = pipe.unet, applied(pipe.unet)
    via = {}
    if wanted.get("precision") == "fp8":
        via["precision"] = "framework" if have["precision"] == "fp8" else "direct"
        if have["precision"] != "fp8":
            from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig, PerRow,
                                              quantize_)

            quantize_(unet, Float8DynamicActivationFloat8WeightConfig(
                granularity=PerRow(), set_inductor_config=False),
                filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    mode = wanted.get("compile")
    if mode:
        via["compile"] = "framework" if have["compile"] == mode else "direct"
        if have["compile"] != mode and mode == "regional":
            if not getattr(unet, "_repeated_blocks", None):
                unet._repeated_blocks = BLOCKS
            unet.compile_repeated_blocks(fullgraph=True, dynamic=False)
        elif have["compile"] != mode:
            unet.forward = torch.compile(unet.forward, fullgraph=True, dynamic=False)
    return via


class UNetTimer:
    """Times every UNet call from outside any compiled region (the UNet's class is swapped for a
    subclass whose `__call__` wraps the module call): CUDA events on a GPU, perf_counter on a
    CPU. The first call is timed on the wall clock with a sync on both sides (it carries the
    compilation) and its inputs are kept for FLOP counting, the profile and compile checks."""

    def __init__(self, unet, device: str):
        import torch

        self.cuda, self.device = device.startswith("cuda"), device
        self.calls: list = []
        self.first_s: float | None = None
        self.inputs = None
        base, timer = type(unet), self

        def __call__(module, *args, **kwargs):
            return timer.call(lambda: base.__call__(module, *args, **kwargs), args, kwargs)

        unet.__class__ = type(base.__name__, (base,), {"__call__": __call__,
                                                       "__module__": base.__module__})
        self._torch = torch

    def call(self, fn, args, kwargs):
        torch = self._torch
        if self.inputs is None:
            clone = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
            self.inputs = torch.utils._pytree.tree_map(clone, (args, kwargs))
            self._sync()
            start = time.perf_counter()
            out = fn()
            self._sync()
            self.first_s = time.perf_counter() - start
            return out
        if not self.cuda:
            start = time.perf_counter()
            out = fn()
            self.calls.append((time.perf_counter() - start) * 1000)
            return out
        begin, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        begin.record()
        out = fn()
        end.record()
        self.calls.append((begin, end))
        return out

    def _sync(self):
        if self.cuda:
            self._torch.cuda.synchronize()

    def ms(self, since: int = 0) -> list[float]:
        self._sync()
        return [c if isinstance(c, float) else c[0].elapsed_time(c[1]) for c in self.calls[since:]]


def describe(inputs) -> object:
    """JSON form of the UNet's inputs (tensors as shape, dtype, device) for the compile child."""
    import torch

    if isinstance(inputs, torch.Tensor):
        return {"tensor": list(inputs.shape), "dtype": str(inputs.dtype)[6:],
                "device": str(inputs.device)}
    if isinstance(inputs, (list, tuple)):
        return [describe(v) for v in inputs]
    if isinstance(inputs, dict):
        return {k: describe(v) for k, v in inputs.items()}
    return inputs


def materialise(desc, seed: int = 0):
    """Random tensors of the shapes `describe` wrote."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if isinstance(desc, dict) and "tensor" in desc and "dtype" in desc:
        dtype = getattr(torch, desc["dtype"])
        t = torch.randn(desc["tensor"], generator=gen) if dtype.is_floating_point else \
            torch.zeros(desc["tensor"])
        return t.to(device=desc["device"], dtype=dtype)
    if isinstance(desc, list):
        return [materialise(v, seed + i) for i, v in enumerate(desc)]
    if isinstance(desc, dict):
        return {k: materialise(v, seed) for k, v in desc.items()}
    return desc


def copy_pipeline(master):
    """A pipeline of its own for one variant: copies of the UNet and VAE (the parts a variant
    changes), the text encoders, tokenizers and scheduler config shared with `master`."""
    from diffusers import StableDiffusionXLPipeline

    c = master.components
    pipe = StableDiffusionXLPipeline(
        vae=copy.deepcopy(c["vae"]), unet=copy.deepcopy(c["unet"]), scheduler=c["scheduler"],
        text_encoder=c["text_encoder"], text_encoder_2=c["text_encoder_2"],
        tokenizer=c["tokenizer"], tokenizer_2=c["tokenizer_2"], add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def start_runner(pipe, model: str, device: str, spec, scorers):
    """A local runner (overlap on) whose worker's Generator is handed `pipe` and `scorers`."""
    from animagine_batch.engine import loading
    from animagine_batch.engine import sources
    from animagine_batch.jobspec.job import ModelSpec, RunnerSpec
    from animagine_batch.runners.base import WorkerContext
    from animagine_batch.runners.local import LocalRunner
    from animagine_batch.runners.worker import Worker

    loading.load_pipeline = lambda spec_, dev, dtype: pipe.to(device=dev, dtype=dtype)
    m = ModelSpec(name=model, embedded=model, id=f"embedded/{model}", min_size=16, max_size=2048)
    ctx = WorkerContext(job="gpu_probe", models={model: m}, identities={model: sources.identity(m)},
                        runner=RunnerSpec(device=device), pipeline=spec, png_compress_level=1)
    runner = LocalRunner()
    runner.overlap = True
    runner.worker = Worker(ctx)
    runner.worker.scorers = tuple(scorers)
    runner.worker.use(model)
    return runner


def consume(results, out_dir, keep: set, stop) -> dict:
    """Write each result's PNGs; decode those of the seeds in `keep` (for the error against
    eager); stop early when `stop(last_unit_seconds)` says the budget will not hold a unit more."""
    from PIL import Image

    c = {"images": 0, "ok": 0, "pngs": 0, "scored": 0, "errors": [], "arrivals": [],
         "pixels": {}, "cut_short": False}
    last = time.perf_counter()
    for result in results:
        for row, png in zip(result.rows, result.pngs):
            c["images"] += 1
            c["ok"] += row.get("status") == "ok"
            c["scored"] += row.get("aesthetic_score") is not None or row.get("clip_score") is not None
            if png is not None:
                (out_dir / f"{row['task_id']}.png").write_bytes(png)
                c["pngs"] += 1
                if row["seed"] in keep:
                    c["pixels"][row["seed"]] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            if row.get("error") and len(c["errors"]) < 3:
                c["errors"].append(f"{row['status']}: {row['error'][:300]}")
        now = time.perf_counter()
        c["arrivals"].append((now, len(result.rows)))
        if stop(now - last):
            c["cut_short"] = True
            break
        last = now
    return c


def pixel_error(pixels: dict, reference: dict) -> dict | None:
    seeds = sorted(set(pixels) & set(reference))
    if not seeds:
        return None
    diff = np.concatenate([np.abs(pixels[s].astype(np.int16) - reference[s].astype(np.int16)).ravel()
                           for s in seeds])
    return {"seeds": seeds, "max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 3)}
