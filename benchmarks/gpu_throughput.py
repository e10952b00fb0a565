"""GPU throughput: full-size SDXL (random weights), a plain diffusers baseline against the
framework's own generation path.

Both paths run the full-size SDXL architecture with random weights (`sdxl_random`: the public
SDXL component configs shipped in the package, same FLOPs as the real model) at 1024x1024,
28 steps, CFG 7, Euler a, one CPU generator per image:

- baseline: a user's plain diffusers script: `StableDiffusionXLPipeline` in float16, batch 1,
  `output_type="pil"`, the VAE's own `force_upcast` rule, no PNG, no scores;
- framework: `Generator` through the local runner, with `accel.py`'s optimisations (bfloat16,
  SDPA, fused QKV, channels_last, a bf16 VAE, torch.compile of the UNet) and the overlapped
  runner (PNG encoding with both metadata chunks and scoring of unit N while unit N+1
  generates), at batch 8 and 1 by default. Rates are end to end over the timed units: every
  PNG is encoded and written and every image scored before the clock stops. The scorers are the
  embedded stand-ins `tiny_aesthetic` and `tiny_clip` (the real aesthetic-shadow and CLIP
  weights come from the hub): their CPU preprocessing and PNG work are real, their GPU work is
  smaller than the real models' (about 0.3% of generation, SPEC section 6).

The weights are built in memory on the GPU (random initialisation there takes seconds; building
and saving the 7 GB model through the cache on a CPU takes minutes), and the framework's
`Generator` is handed that pipeline instead of loading one, so the run fits in 8 minutes on one
H100: about 1 minute of setup, 2.5 minutes for the first torch.compile and 3 more when the batch
size first changes (measured: 147 s and 189 s), and 24 timed images per configuration. That
leaves room for two batch sizes: by default 8 (the throughput) then 1 (like for like with the
baseline); `--budget-s` (default 300) skips batch sizes not started by then.

    python benchmarks/gpu_throughput.py [--quick] [--batches 8,1] [--images 24]
                                        [--baseline-images 6] [--no-compile] [--no-overlap]

It prints images/s, the ratio to the baseline and the fraction of 2.06 images/s (an H100's
bf16 compute floor for this workload, SPEC section 6) for each configuration, and last one
JSON object. Targets: >= 1.5 images/s end to end and >= 2x the baseline.

`--quick` runs the same code on the CPU with the tiny model (64x64, 4 steps, a few images per
path, one torch thread): a check that both paths work, in well under a minute; its rates say
nothing about a GPU.

Packages: the GPU machine has CUDA torch, transformers, numpy, pillow, safetensors, pyyaml and
huggingface_hub; this needs, beyond those, diffusers (and its importlib_metadata), compel (prompt
weighting), open_clip_torch with ftfy and wcwidth (CLIP's BPE vocabulary for the tokenizers, and
the tiny CLIP scorer). `benchmarks/wheelhouse.sh` downloads them as wheels into `.whl/`; on the
machine, offline:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 benchmarks/gpu_throughput.py
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FLOOR = 2.06  # images/s: an H100's bf16 compute floor for SDXL 1024x1024, 28 steps, CFG
TARGET_RATE, TARGET_RATIO = 1.5, 2.0
PACKAGES = {"torch": "torch", "transformers": "transformers", "numpy": "numpy",
            "diffusers": "diffusers", "compel": "compel", "open_clip": "open_clip_torch",
            "ftfy": "ftfy", "PIL": "pillow", "safetensors": "safetensors", "yaml": "pyyaml",
            "huggingface_hub": "huggingface_hub"}  # module -> distribution
SCORERS = ("tiny_aesthetic", "tiny_clip")
PROMPT = ("1girl, hatsune miku, vocaloid, solo, upper body, smile, looking at viewer, outdoors, "
          "masterpiece, best quality, very aesthetic, absurdres")
NEGATIVE = ("nsfw, lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg "
            "artifacts, low quality, watermark, unfinished, displeasing, oldest, early, "
            "chromatic aberration, signature, extra digits, artistic error, username, scan, "
            "[abstract]")


def packages() -> dict:
    """Versions of what the run needs (None: missing), and where each came from."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for module, dist in PACKAGES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            found[dist] = None
            continue
        try:
            number = version(dist)
        except PackageNotFoundError:
            number = getattr(mod, "__version__", "?")
        where = "wheelhouse" if "/tmp/site" in str(getattr(mod, "__file__", "")) else "installed"
        found[dist] = f"{number} ({where})"
    return found


def settings(quick: bool) -> dict:
    if quick:
        return {"model": "tiny", "width": 64, "height": 64, "steps": 4, "cfg": 7.0}
    return {"model": "sdxl_random", "width": 1024, "height": 1024, "steps": 28, "cfg": 7.0}


def build(model: str, device: str, dtype):
    """The embedded model's pipeline, built in memory on `device` (offline.build_pipeline)."""
    import torch

    from animagine_batch import offline

    with torch.device(device):
        pipe = offline.build_pipeline(model, seed=0, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def baseline(pipe, s: dict, device: str, warm: int, timed: int) -> dict:
    """The plain diffusers loop: batch 1, PIL images out, nothing else."""
    import torch

    def one(seed: int):
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, width=s["width"], height=s["height"],
                    num_inference_steps=s["steps"], guidance_scale=s["cfg"],
                    generator=torch.Generator("cpu").manual_seed(seed), output_type="pil").images[0]

    for i in range(warm):
        one(10_000 + i)
    sync(device)
    start = time.perf_counter()
    for i in range(timed):
        one(i)
    sync(device)
    seconds = time.perf_counter() - start
    return {"images": timed, "seconds": round(seconds, 3), "images_per_s": timed / seconds,
            "dtype": str(pipe.unet.dtype).removeprefix("torch."),
            "vae_force_upcast": bool(pipe.vae.config.force_upcast)}


def make_tasks(s: dict, n: int, first_seed: int, tag: str):
    """`n` tasks of the benchmark prompt with consecutive seeds."""
    from animagine_batch.jobspec.sweep import Task

    values = {"index": 0, "model": s["model"], "prompt_key": "bench", "subject": None,
              "character": "hatsune miku", "series": "vocaloid", "prompt": PROMPT,
              "negative_prompt": NEGATIVE, "content_prompt": PROMPT, "sampler": "euler_a",
              "steps": s["steps"], "cfg": s["cfg"], "width": s["width"], "height": s["height"],
              "axes": ()}
    return [Task(task_id=f"{tag}-{i:05d}", seed=first_seed + i, **values) for i in range(n)]


def start_framework(pipe, s: dict, device: str, quick: bool, compile_: bool, overlap: bool):
    """A local runner whose Generator gets the already-built pipeline instead of loading one.
    Execution options are the defaults (`auto`), except on the CPU check, which asks for the
    optimisations (`optimise: on`) and the overlap that `auto` keeps for CUDA."""
    import yaml

    from animagine_batch.engine import loading as model_loading
    from animagine_batch.engine import sources as models
    from animagine_batch.runners.base import WorkerContext
    from animagine_batch.runners.local import LocalRunner
    from animagine_batch.jobspec.job import ModelSpec, PipelineSpec, RunnerSpec, ScorerSpec

    model_loading.load_pipeline = lambda spec, dev, dtype: pipe.to(device=dev, dtype=dtype)
    spec = ModelSpec(name=s["model"], embedded=s["model"], id=f"embedded/{s['model']}",
                     min_size=16, max_size=2048)
    scorers = tuple(ScorerSpec.make(name, yaml.safe_load(
        (REPO / "conf" / "scorer" / f"{name}.yaml").read_text())) for name in SCORERS)
    pipeline = PipelineSpec(optimise="on" if quick else "auto",
                            compile="auto" if compile_ else False,
                            overlap=(True if quick else "auto") if overlap else False)
    ctx = WorkerContext(job="gpu_throughput", models={s["model"]: spec},
                        identities={s["model"]: models.identity(spec)},
                        runner=RunnerSpec(device=device), pipeline=pipeline,
                        png_compress_level=1, scorers=scorers)
    runner = LocalRunner()
    runner.start(ctx, s["model"])
    return runner


def consume(results, out: Path) -> dict:
    """Write every PNG (as the store would) and count rows by what was done to them."""
    counts = {"images": 0, "ok": 0, "pngs": 0, "scored": 0, "errors": []}
    for result in results:
        for row, png in zip(result.rows, result.pngs):
            counts["images"] += 1
            counts["ok"] += row.get("status") == "ok"
            counts["scored"] += row.get("aesthetic_score") is not None \
                and row.get("clip_score") is not None
            if png is not None:
                (out / f"{row['task_id']}.png").write_bytes(png)
                counts["pngs"] += 1
            if row.get("error") and len(counts["errors"]) < 3:
                counts["errors"].append(f"{row['status']}: {row['error'][:300]}")
    return counts


def framework(runner, s: dict, batch: int, timed: int, out: Path, device: str) -> dict:
    """One warm-up unit (compilation, cuDNN autotuning), then `timed` images, end to end."""
    from animagine_batch.jobspec import sweep

    warm_start = time.perf_counter()
    consume(runner.run(sweep.units(make_tasks(s, batch, 50_000, f"w{batch}"), batch)), out)
    warm = time.perf_counter() - warm_start
    units = sweep.units(make_tasks(s, timed, 0, f"b{batch}"), batch)
    sync(device)
    start = time.perf_counter()
    counts = consume(runner.run(units), out)
    seconds = time.perf_counter() - start
    return {"batch": batch, "units": len(units), **counts, "seconds": round(seconds, 3),
            "warmup_s": round(warm, 1), "images_per_s": counts["images"] / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model on the CPU, a few images")
    p.add_argument("--batches", default="8,1")
    p.add_argument("--images", type=int, default=24, help="timed images per batch size")
    p.add_argument("--baseline-images", type=int, default=6)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-overlap", action="store_true")
    p.add_argument("--budget-s", type=float, default=300.0,
                   help="skip batch sizes not yet started after this many seconds")
    args = p.parse_args()
    t0 = time.perf_counter()
    found = packages()
    missing = [k for k, v in found.items() if v is None]
    print("packages: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in found.items()), flush=True)
    if missing:
        sys.exit(f"missing packages: {', '.join(missing)}; build the wheelhouse with "
                 "benchmarks/wheelhouse.sh and install it (see this script's docstring)")
    import torch

    device = "cpu" if args.quick else "cuda"
    if not args.quick and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --quick for the CPU check")
    s = settings(args.quick)
    batches = [int(b) for b in args.batches.split(",")]
    if args.quick:
        args.images, args.baseline_images = 4, 3
        torch.set_num_threads(1)  # on a shared machine two threads can stall each other
        batches = sorted({min(b, 4) for b in batches} | {1})
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {s['model']} {s['width']}x{s['height']}, "
          f"{s['steps']} steps, CFG {s['cfg']}, Euler a", flush=True)

    start = time.perf_counter()
    pipe = build(s["model"], device, torch.float16 if device == "cuda" else torch.float32)
    build_s = time.perf_counter() - start
    print(f"built {s['model']} in memory on {device} in {build_s:.1f} s", flush=True)

    base = baseline(pipe, s, device, warm=1, timed=args.baseline_images)
    print(f"baseline (diffusers {base['dtype']}, batch 1, PIL out): "
          f"{base['images_per_s']:.3f} images/s", flush=True)

    start = time.perf_counter()
    runner = start_framework(pipe, s, device, args.quick, compile_=not args.no_compile,
                             overlap=not args.no_overlap)
    accel_done = runner.worker.generator.accel
    print(f"framework setup {time.perf_counter() - start:.1f} s; accel: {accel_done}; "
          f"overlap: {runner.overlap}; scorers: {', '.join(SCORERS)} (embedded stand-ins)",
          flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in batches:
            if time.perf_counter() - t0 > args.budget_s:
                print(f"batch {b}: skipped, {args.budget_s:.0f} s budget spent", flush=True)
                continue
            r = framework(runner, s, b, args.images, Path(tmp), device)
            r["vs_baseline"] = r["images_per_s"] / base["images_per_s"]
            r["of_floor"] = r["images_per_s"] / FLOOR
            results[str(b)] = r
            print(f"framework batch {b}: {r['images_per_s']:.3f} images/s = "
                  f"{r['vs_baseline']:.2f}x baseline = {r['of_floor']:.0%} of the {FLOOR} "
                  f"images/s floor; {r['ok']}/{r['images']} ok, {r['pngs']} PNGs, "
                  f"{r['scored']} scored; warm-up {r['warmup_s']} s"
                  + (f"; errors: {r['errors']}" if r["errors"] else ""), flush=True)
    runner.close()
    best = max(results.values(), key=lambda r: r["images_per_s"], default=None)
    result = {
        "benchmark": "gpu_throughput", "quick": args.quick, "device": name,
        "torch": torch.__version__, "packages": found, **s, "sampler": "Euler a",
        "build_s": round(build_s, 1), "baseline": base, "framework": results,
        "accel": accel_done, "overlap": runner.overlap, "scorers": list(SCORERS),
        "scorer_note": "embedded stand-in scorers (random weights); real scorers need hub weights",
        "floor_images_per_s": FLOOR,
        "best": None if best is None else {k: best[k] for k in (
            "batch", "images_per_s", "vs_baseline", "of_floor")},
        "targets": {"images_per_s": TARGET_RATE, "vs_baseline": TARGET_RATIO,
                    "met": None if best is None or args.quick else (
                        best["images_per_s"] >= TARGET_RATE
                        and best["vs_baseline"] >= TARGET_RATIO)},
        "total_s": round(time.perf_counter() - t0, 1),
    }
    if best is not None:
        print(f"best: batch {best['batch']}, {best['images_per_s']:.3f} images/s, "
              f"{best['vs_baseline']:.2f}x baseline, {best['of_floor']:.0%} of the floor"
              + (" (CPU check: the rates say nothing about a GPU)" if args.quick else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
