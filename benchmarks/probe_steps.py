"""Steps of the GPU probe (benchmarks/gpu_probe.py): the plain diffusers baseline, one variant
through the framework, and the compile-cache child (a fresh process, so only the on-disk
Inductor cache or loaded cache artifacts can make its compilation warm)."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import gpu_throughput as gt
from probe_parts import count_flops, profile, sync
from probe_variants import (VARIANTS, UNetTimer, applied, complete, consume, copy_pipeline,
                            describe, materialise, pixel_error, pipeline_spec, start_runner)


def use_backend(backend: str) -> None:
    """Make `backend` the default of every torch.compile call (the framework's, diffusers'
    `compile_repeated_blocks` and the probe's own): the CPU check compiles with aot_eager."""
    import torch

    original = torch.compile

    def compile_(*args, **kwargs):
        kwargs.setdefault("backend", backend)
        return original(*args, **kwargs)

    torch.compile = compile_
    try:  # the framework names its backend itself (engine/compiling.BACKEND)
        from animagine_batch.engine import compiling
    except ImportError:
        return
    compiling.BACKEND = backend


def memory(device: str) -> tuple[float, str]:
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process max RSS"


def baseline(p, label: str, keep: bool = True) -> dict:
    """A user's plain diffusers loop on its own fp16 pipeline (never the framework's): batch 1,
    PIL out, one warm-up image, then `p.baseline_images` timed ones on seeds 0, 1, ..."""
    import torch

    torch.backends.cudnn.benchmark = p.cudnn_benchmark  # as the process started
    pipe, s = p.baseline_pipe, p.s

    def one(seed: int):
        return pipe(prompt=gt.PROMPT, negative_prompt=gt.NEGATIVE, width=s["width"],
                    height=s["height"], num_inference_steps=s["steps"], guidance_scale=s["cfg"],
                    generator=torch.Generator("cpu").manual_seed(seed), output_type="pil").images[0]

    start = time.perf_counter()
    one(10_000)
    sync(p.device)
    warm = time.perf_counter() - start
    start, done, first = time.perf_counter(), 0, None
    for i in range(p.baseline_images):
        image = one(i)
        first = np.asarray(image) if first is None else first
        done += 1
        p.sample = image
        if p.budget.refuse(warm * 1.2, keep=keep):
            break
    sync(p.device)
    seconds = time.perf_counter() - start
    rec = {"step": label, "images": done, "warmup_s": round(warm, 2), "seconds": round(seconds, 3),
           "images_per_s": done / round(seconds, 3), "s_per_image": round(seconds / done, 3),
           "dtype": str(pipe.unet.dtype)[6:], "scheduler": type(pipe.scheduler).__name__,
           "vae_force_upcast": bool(pipe.vae.config.force_upcast),
           "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "cut_short": done < p.baseline_images}
    if p.baseline_first is None:
        p.baseline_first = first
    else:
        rec["same_pixels_as_start"] = bool(np.array_equal(first, p.baseline_first))
    return rec


def fp8_unsupported(device: str) -> str | None:
    """Why torchao's FP8 cannot run here (None: it can)."""
    import importlib.util

    import torch

    if not device.startswith("cuda") or torch.cuda.get_device_capability(device) < (8, 9):
        return (f"FP8 needs a CUDA GPU of compute capability 8.9 or more (torchao's float8 "
                f"matrix products); this is {device}")
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (benchmarks/wheelhouse.sh carries torchao==0.18.0)"
    return None


def _via(via: dict) -> str:
    return "direct" if "direct" in via.values() else "framework"


def run_variant(p, name: str, profile_calls: int = 0) -> dict:
    """One variant: a copy of the pipeline handed to the framework's Generator, one warm-up
    unit, then `p.images` timed images end to end (every PNG written, every image scored)."""
    import torch

    from animagine_batch.jobspec import sweep

    wanted = VARIANTS[name]
    if p.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    resident = torch.cuda.memory_allocated() / 2**30 if p.device.startswith("cuda") else None
    rec = {"step": "variant", "name": name, "wanted": wanted, "batch": p.batch}
    pipe, runner = copy_pipeline(p.master), None
    spec, asked = pipeline_spec(wanted, p.dtype_name)
    rec["framework_asked"] = asked
    if wanted.get("precision") == "fp8" and fp8_unsupported(p.device):
        return {**rec, "skipped": fp8_unsupported(p.device)}
    try:
        try:
            runner = start_runner(pipe, p.s["model"], p.device, spec, p.scorers)
            gen = runner.worker.generator
            via = complete(gen.pipe, wanted)
        except Exception as e:  # noqa: BLE001 - unsupported here (no torchao, no FP8 GPU, ...)
            rec["skipped"] = f"{type(e).__name__}: {str(e).strip()[:400]}"
            return rec
        rec.update(via=_via(via), via_detail=via, setup=gen.setup(),
                   in_effect=applied(gen.pipe.unet))
        timer = UNetTimer(gen.pipe.unet, p.device)
        graphs = _graphs()
        start = time.perf_counter()
        warm = consume(runner.run(sweep.units(gt.make_tasks(p.s, p.batch, 50_000, f"{name}w"),
                                              p.batch)), p.png_dir, set(), lambda s: False)
        rec["warmup_s"] = round(time.perf_counter() - start, 2)
        rec["first_unet_call_s"] = round(timer.first_s or 0.0, 3)
        mark = len(timer.calls)
        units = sweep.units(gt.make_tasks(p.s, p.images, 0, name), p.batch)
        sync(p.device)
        start = time.perf_counter()
        c = consume(runner.run(units), p.png_dir, set(range(p.compare)),
                    lambda unit_s: p.budget.refuse(unit_s * 1.5) is not None)
        seconds = time.perf_counter() - start
        ms = timer.ms(mark)
        arrivals = c.pop("arrivals")
        pixels = c.pop("pixels")
        rec.update({k: c[k] for k in ("images", "ok", "pngs", "scored", "errors", "cut_short")})
        rec["warmup_errors"] = warm["errors"]
        rec["seconds"] = round(seconds, 3)
        rec["images_per_s"] = c["images"] / rec["seconds"]  # the rate of the recorded seconds
        rec["steady_images_per_s"] = (sum(n for _, n in arrivals[1:])
                                      / (arrivals[-1][0] - arrivals[0][0])) \
            if len(arrivals) > 1 else None
        unet_ms = statistics.median(ms) if ms else None
        if name == "eager" and timer.inputs is not None:
            p.flops = count_flops(gen.pipe.unet, *timer.inputs)
            p.reference = pixels
        rec.update(unet_calls=len(ms), unet_ms=None if unet_ms is None else round(unet_ms, 3),
                   unet_flops=p.flops,
                   unet_tflop_per_s=None if not (p.flops and unet_ms) else
                   round(p.flops / (unet_ms / 1000) / 1e12, 3))
        if unet_ms and rec["steady_images_per_s"]:
            per_image = unet_ms / 1000 * p.s["steps"] / p.batch
            rec["unet_s_per_image"] = round(per_image, 4)
            rec["unet_share_of_steady"] = round(per_image * rec["steady_images_per_s"], 3)
        if wanted.get("compile") and timer.first_s is not None and unet_ms:
            rec["compile_s"] = round(timer.first_s - unet_ms / 1000, 2)
        rec["graphs_compiled"] = _graphs() - graphs
        rec["vs_eager"] = pixel_error(pixels, p.reference) if name != "eager" else None
        peak, kind = memory(p.device)
        rec.update(peak_mem_gib=round(peak, 2), peak_mem_kind=kind,
                   resident_before_gib=None if resident is None else round(resident, 2))
        if timer.inputs is not None:
            p.unet_inputs[name] = describe(timer.inputs)
        if profile_calls and timer.inputs is not None:
            if p.budget.refuse(p.estimate("profile")):
                p.after.append({"step": "profile", "variant": name,
                                "skipped": p.budget.refuse(p.estimate("profile"))})
            else:
                try:
                    prof = profile(gen.pipe.unet, *timer.inputs, p.device, profile_calls)
                    p.after.append({"step": "profile", "variant": name, **prof})
                except Exception as e:  # noqa: BLE001
                    p.after.append({"step": "profile", "variant": name,
                                    "error": f"{type(e).__name__}: {str(e)[:400]}"})
        return rec
    finally:
        if runner is not None:
            runner.close()
        del pipe, runner
        gc.collect()
        if p.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _graphs() -> int:
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001
        return -1


def compile_warm(p, mode: str, script: Path) -> dict:
    """The regional variant's compilation again in a fresh process: `dir` with this run's
    Inductor cache directory, `artifacts` with an empty one and the artefacts this process
    saved (torch.compiler.save_cache_artifacts / load_cache_artifacts)."""
    import torch

    rec = {"step": "compile_warm", "mode": mode, "variant": "regional"}
    if "regional" not in p.unet_inputs:
        return {**rec, "skipped": "the regional variant did not run"}
    env = dict(os.environ)
    spec = {"quick": p.quick, "model": p.s["model"], "device": p.device, "dtype": p.dtype_name,
            "wanted": VARIANTS["regional"], "inputs": p.unet_inputs["regional"], "mode": mode,
            "backend": p.backend}
    if mode == "artifacts":
        saved = torch.compiler.save_cache_artifacts()
        if not saved:
            return {**rec, "skipped": f"no cache artefacts saved (backend {p.backend or 'inductor'})"}
        path = p.out / "inductor_artifacts.bin"
        path.write_bytes(saved[0])
        rec["artifacts_mib"] = round(len(saved[0]) / 2**20, 2)
        fresh = Path(env["TORCHINDUCTOR_CACHE_DIR"] + "-fresh")
        env.update(TORCHINDUCTOR_CACHE_DIR=str(fresh), TRITON_CACHE_DIR=str(fresh / "triton"))
        spec["artifacts"] = str(path)
    limit = max(10.0, p.budget.left() - p.budget.reserve)
    start = time.perf_counter()
    r = subprocess.run([sys.executable, str(script), "--compile-child", json.dumps(spec)],
                       env=env, capture_output=True, text=True, timeout=limit)
    rec["process_s"] = round(time.perf_counter() - start, 2)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {**rec, "error": f"exit {r.returncode}: {r.stderr.strip()[-600:]}"}
    return {**rec, **json.loads(lines[-1])}


def child(spec: dict) -> dict:
    """The compile child: build the pipeline, apply the variant as the probe did, and time the
    first UNet call (compilation included) against the next ones."""
    t0 = time.perf_counter()
    import torch

    from animagine_batch.engine import accel

    if spec.get("backend"):
        use_backend(spec["backend"])
    if spec["mode"] == "artifacts":
        torch.compiler.load_cache_artifacts(Path(spec["artifacts"]).read_bytes())
    device, dtype = spec["device"], getattr(torch, spec["dtype"])
    pipe = gt.build(spec["model"], device, dtype)
    pspec, _ = pipeline_spec(spec["wanted"], spec["dtype"])
    accel.apply(pipe, pspec, device, dtype)
    via = complete(pipe, spec["wanted"])
    args, kwargs = materialise(spec["inputs"])
    setup = time.perf_counter() - t0
    graphs = _graphs()
    with torch.no_grad():
        # one call without compiling first (the probe's variants ran after eager, on the same
        # shapes): cuDNN's autotuning and library start-up are not compilation
        with torch.compiler.set_stance("force_eager"):
            pipe.unet(*args, **kwargs)
        sync(device)
        start = time.perf_counter()
        pipe.unet(*args, **kwargs)
        sync(device)
        first = time.perf_counter() - start
        steady = []
        for _ in range(2):
            start = time.perf_counter()
            pipe.unet(*args, **kwargs)
            sync(device)
            steady.append(time.perf_counter() - start)
    return {"via": _via(via), "via_detail": via, "setup_s": round(setup, 2),
            "first_call_s": round(first, 3), "steady_ms": round(min(steady) * 1000, 3),
            "compile_s": round(first - min(steady), 2), "graphs_compiled": _graphs() - graphs,
            "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}
