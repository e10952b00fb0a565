"""GPU probe: where the time goes on one GPU, in one run that fits in 8 minutes with the build.

Full-size SDXL with random weights (`sdxl_random`, the real architecture's FLOPs), 1024x1024,
28 steps, CFG 7, Euler a. One JSON line per step, printed and appended to
`$OUT/gpu_probe.jsonl` as it goes (a timeout keeps what finished):

1. `environment`: versions (torch, diffusers, torchao, triton, ...), GPU, driver, compute
   capability, and the SDPA backend PyTorch picks at the UNet's attention shapes, with each
   backend forced alone (`torch.nn.attention.sdpa_kernel`);
2. `baseline_start`: a plain diffusers loop on its own fp16 pipeline, batch 1, PIL out, one
   warm-up and 4 timed images (`baseline_end` repeats it last: a stability check);
3. `scorers`: aesthetic-shadow-v2 (a 1.09 B ViT at 1024 px), open_clip ViT-H-14 and a WD-tagger
   sized ViT exported to ONNX (448 px, onnxruntime), random weights in the project's scorer
   classes (`probe_scorers.py`), seconds per image; the variants score with them;
4. `variant` x4 through the framework's Generator (local runner, overlap on): `eager` bf16,
   `regional` (compile of the repeated transformer blocks), `regional_fp8` (plus torchao FP8
   on the UNet's Linear layers), `unet_static` (whole UNet, fullgraph, static shapes), each on
   its own copy of the pipeline; options go through the framework when it knows them, else
   directly (`via`). Each: warm-up seconds, end-to-end and steady images/s, UNet forward ms
   (CUDA events), TFLOP/s (FLOPs of one forward, FlopCounterMode), peak memory, compile
   seconds, pixel error against eager on the same seeds; `profile` lines split a few UNet
   forwards by kernel class (matmul, conv, attention, norm, elementwise, copy);
5. `compile_warm`: the regional compile again in a fresh process, warm from this run's Inductor
   cache directory (`dir`) or from saved cache artefacts (`artifacts`);
6. `summary`: images/s per variant, ratio to the mean of the two baselines, fraction of the
   2.06 images/s floor, and the targets met or missed.

    python benchmarks/gpu_probe.py [--quick] [--budget-s 440] [--batch 4] [--images 12]
                                   [--variants eager,regional,...] [--scorers aesthetic,clip,wd14]

`--budget-s` is checked before every step and between units inside one; a step whose estimate
does not fit (keeping time for the closing baseline) is skipped with the reason. `--quick` runs
the same code on the CPU: tiny model and scorers, 64x64, 2 steps, compile with aot_eager; its
rates say nothing about a GPU. On the device: `sh benchmarks/gpu_probe.sh` (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FLOOR = 2.06  # images/s: the bf16 compute floor for this workload (SPEC.md section 6)
TARGETS = {"images_per_s_without_fp8": 1.2, "images_per_s_with_fp8": 1.5, "vs_baseline": 2.5,
           "warm_compile_s": 40.0}
ESTIMATES = {  # step -> (full-size seconds, quick seconds) it needs to start
    "scorers": (60, 5), "eager": (50, 6), "regional": (120, 8), "regional_fp8": (120, 8),
    "unet_static": (260, 12), "profile": (20, 2), "compile_warm": (90, 20),
    "compile_artifacts": (90, 20)}
ORDER = ("eager", "regional", "regional_fp8", "compile_warm", "compile_artifacts", "unet_static")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model and scorers on the CPU")
    p.add_argument("--budget-s", type=float, default=None, help="default 440 (quick: 55)")
    p.add_argument("--batch", type=int, default=None, help="images per unit (default 4; quick 2)")
    p.add_argument("--images", type=int, default=None, help="timed images per variant (12; 4)")
    p.add_argument("--baseline-images", type=int, default=4)
    p.add_argument("--variants", default="eager,regional,regional_fp8,unet_static")
    p.add_argument("--scorers", default="aesthetic,clip,wd14", help="'' for none")
    p.add_argument("--profile-calls", type=int, default=3, help="UNet forwards profiled")
    p.add_argument("--compile-child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.budget_s = a.budget_s if a.budget_s is not None else (55.0 if a.quick else 440.0)
    a.batch = a.batch or (2 if a.quick else 4)
    a.images = a.images or (4 if a.quick else 12)
    if a.images % a.batch or min(a.batch, a.images, a.baseline_images) < 1:
        p.error("--images must be a positive multiple of --batch (one compiled shape), "
                "--baseline-images at least 1")
    a.variants = [v for v in a.variants.split(",") if v]
    a.scorers = [v for v in a.scorers.split(",") if v]
    unknown = sorted(set(a.variants) - set(ESTIMATES))
    if unknown or "eager" not in a.variants:
        p.error(f"--variants: needs eager (the reference) and only names from eager, regional, "
                f"regional_fp8, unet_static (got {', '.join(unknown) or 'no eager'})")
    return a


def settings(quick: bool) -> dict:
    if quick:
        return {"model": "tiny", "width": 64, "height": 64, "steps": 2, "cfg": 7.0}
    return {"model": "sdxl_random", "width": 1024, "height": 1024, "steps": 28, "cfg": 7.0}


def guarded(p, name: str, fn, head: dict | None = None) -> dict | None:
    """Run one step; a skip (budget) or failure is a line of its own (starting with `head`),
    never the end of the run."""
    head = head or {"step": name}
    need = p.estimate(name)
    reason = p.budget.refuse(need) if need else None
    if reason:
        return p.log.emit({**head, "skipped": reason})
    try:
        return p.log.emit(fn())
    except Exception as e:  # noqa: BLE001 - one failing step must not lose the rest
        return p.log.emit({**head, "error": f"{type(e).__name__}: {str(e).strip()[:600]}"})
    finally:  # lines a step left to follow its own (its profile)
        while p.after:
            p.log.emit(p.after.pop(0))


def _label(r: dict) -> str:
    return r["step"] + "".join(f":{r[k]}" for k in ("name", "mode") if k in r)


def summary(p, lines: list[dict], quick: bool) -> dict:
    base = [r["images_per_s"] for r in lines if r and r.get("step", "").startswith("baseline_")
            and r.get("images_per_s")]
    mean = sum(base) / len(base) if base else None
    variants = {}
    for r in lines:
        if r and r.get("step") == "variant" and r.get("images_per_s"):
            variants[r["name"]] = {
                "images_per_s": round(r["images_per_s"], 4),
                "steady_images_per_s": r.get("steady_images_per_s"),
                "vs_baseline": None if not mean else round(r["images_per_s"] / mean, 3),
                "of_floor": round(r["images_per_s"] / FLOOR, 4), "via": r.get("via")}
    warm = {r["mode"]: r["compile_s"] for r in lines if r and r.get("step") == "compile_warm"
            and r.get("compile_s") is not None}
    cold = next((r.get("compile_s") for r in lines if r and r.get("name") == "regional"), None)
    no_fp8 = [v["images_per_s"] for k, v in variants.items() if "fp8" not in k]
    values = {"images_per_s_without_fp8": max(no_fp8, default=None),
              "images_per_s_with_fp8": variants.get("regional_fp8", {}).get("images_per_s"),
              "vs_baseline": max((v["vs_baseline"] for v in variants.values()
                                  if v["vs_baseline"] is not None), default=None),
              "warm_compile_s": min(warm.values(), default=None)}
    targets = {}
    for key, target in TARGETS.items():
        value = values[key]
        met = None if quick or value is None else (
            value <= target if key == "warm_compile_s" else value >= target)
        targets[key] = {"target": target, "value": value, "met": met}
    return {"step": "summary", "quick": quick, "baseline": {
        "runs": [round(b, 4) for b in base], "mean": mean,
        "drift": None if len(base) < 2 else round(base[-1] / base[0] - 1, 4)},
        "variants": variants, "compile": {"cold_s": cold, "warm_s": warm},  # warm: by cache mode
        "floor_images_per_s": FLOOR, "targets": targets,
        "skipped": {_label(r): r["skipped"] for r in lines if r and "skipped" in r},
        "errors": {_label(r): r["error"] for r in lines if r and "error" in r},
        "note": "CPU check: the rates say nothing about a GPU" if quick else None}


def main(argv=None) -> None:
    a = parse(argv)
    if a.compile_child:
        from probe_steps import child

        print(json.dumps(child(json.loads(a.compile_child))), flush=True)
        return
    t0 = time.perf_counter()
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_probe-"))
    made = [] if "TORCHINDUCTOR_CACHE_DIR" in os.environ else [
        tempfile.mkdtemp(prefix="probe-inductor-")]  # a fresh cache: the first compile is cold
    cache = os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", made[0] if made else "")
    made += [cache + "-fresh"] if made else []
    os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(cache, "triton"))
    from probe_parts import Budget, Log, environment

    log = Log(out / "gpu_probe.jsonl", t0)
    import gpu_throughput as gt

    found = gt.packages()
    missing = sorted(k for k, v in found.items() if v is None)
    if missing:
        log.emit({"step": "environment", "error": f"missing packages: {', '.join(missing)}; "
                  "build the wheelhouse with benchmarks/wheelhouse.sh (BENCHMARKS.md)"})
        sys.exit(2)
    import torch

    device = "cpu" if a.quick else "cuda"
    if not a.quick and not torch.cuda.is_available():
        log.emit({"step": "environment", "error": "no CUDA device: --quick runs on the CPU"})
        sys.exit(2)
    if a.quick:
        torch.set_num_threads(1)  # a shared CPU: two threads can stall each other
    from probe_steps import baseline, compile_warm, run_variant, use_backend
    from probe_scorers import build_and_time

    s = settings(a.quick)
    p = SimpleNamespace(
        quick=a.quick, device=device, s=s, batch=a.batch, images=a.images, out=out,
        baseline_images=a.baseline_images, budget=Budget(a.budget_s, t0), log=log,
        dtype_name="float32" if a.quick else "bfloat16", backend="aot_eager" if a.quick else None,
        cudnn_benchmark=torch.backends.cudnn.benchmark, baseline_first=None, sample=None,
        flops=None, reference={}, after=[], unet_inputs={}, scorers=(), compare=min(2, a.images),
        png_dir=Path(tempfile.mkdtemp(prefix="probe-png-")),
        estimate=lambda step: ESTIMATES.get(step, (0, 0))[1 if a.quick else 0])
    if p.backend:
        use_backend(p.backend)
    from probe_variants import framework_knows

    lines = [log.emit({"step": "environment", **environment(device, getattr(torch, p.dtype_name),
                                                          a.quick, a.batch),
                       "settings": {**s, "sampler": "Euler a", "batch": a.batch,
                                    "images": a.images}, "packages": found,
                       "compile_backend": p.backend or "inductor", "budget_s": a.budget_s,
                       "framework_knows": {f"{k}: {v}": framework_knows(k, v) for k, v in (
                           ("compile", "regional"), ("compile", "unet"), ("precision", "fp8"))},
                       "out": str(out)})]
    start = time.perf_counter()
    p.baseline_pipe = gt.build(s["model"], device, torch.float32 if a.quick else torch.float16)
    p.master = gt.build(s["model"], device, getattr(torch, p.dtype_name))
    lines.append(log.emit({"step": "build", "seconds": round(time.perf_counter() - start, 2),
                           "unet_params": sum(t.numel() for t in p.master.unet.parameters())}))
    first = guarded(p, "baseline_start", lambda: baseline(p, "baseline_start"))
    lines.append(first)
    p.budget.reserve = (first.get("warmup_s", 0) + first.get("seconds", 0)) * 1.2 + 5 \
        if first and "seconds" in first else 30.0
    if a.scorers and p.sample is None:
        lines.append(log.emit({"step": "scorers", "skipped": "no image to score: the opening "
                               "baseline did not run"}))
    elif a.scorers:
        def scorers():
            images = [p.sample] * a.batch
            made.append(tempfile.mkdtemp(prefix="probe-wd-"))
            p.scorers, report = build_and_time(a.scorers, device, a.quick, Path(made[-1]),
                                               images, gt.PROMPT)
            return {"step": "scorers", "images": len(images), "scorers": report,
                    "s_per_image_total": round(sum(r["s_per_image"] for r in report.values()), 4)}
        lines.append(guarded(p, "scorers", scorers))
    for step in ORDER:
        if step in ("compile_warm", "compile_artifacts"):
            mode = "dir" if step == "compile_warm" else "artifacts"
            lines.append(guarded(p, step, lambda: compile_warm(p, mode, Path(__file__)),
                                 {"step": "compile_warm", "mode": mode}))
        elif step in a.variants:
            lines.append(guarded(p, step, lambda: run_variant(p, step, a.profile_calls),
                                 {"step": "variant", "name": step}))
    p.budget.reserve = 0.0
    lines.append(guarded(p, "baseline_end", lambda: baseline(p, "baseline_end", keep=False)))
    record = summary(p, lines, a.quick)
    record["total_s"] = round(time.perf_counter() - t0, 1)
    log.emit(record)
    for folder in [p.png_dir, *made]:  # what the probe made, not $OUT
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
