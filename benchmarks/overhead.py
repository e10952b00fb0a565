"""Framework overhead on the tiny model: the whole framework against a plain diffusers loop.

Both generate the same images (tiny SDXL, 64x64, 4 steps, CFG 7, the same batch size, one CPU
generator per image; the framework with `prompt.weighting=none`, the plain loop's prompt
handling, since `a1111` weighting is different work, not overhead) and write each as a PNG (zlib level 1); the framework also writes metadata
chunks, Parquet parts and the resume index. Rounds alternate plain / local runner / Ray runner in
one process (the order rotates from round to round, so drift on a shared machine spreads
evenly), each into a fresh folder, and the median images/s of each is compared.

    python benchmarks/overhead.py [--images 256] [--rounds 3] [--quick] [--no-ray]

Targets on a 2-core machine: local runner >= 0.95 x the plain loop, Ray runner >= 0.85 x. Rates
are steady state (from the first finished batch, so loading the pipeline and starting Ray and its
actors are excluded for all three); end-to-end rates are printed too. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on 127.0.0.1


def overrides(n_images: int, batch: int, out: Path, runner: str, base_seed: int) -> list[str]:
    seeds = max(1, n_images // 3)  # the demo prompt set has three entries
    return ["sweep.grid={}", f"sweep.seeds={seeds}", f"sweep.base_seed={base_seed}",
            "scorers=[]", f"generation.batch_size={batch}", f"output.root={out}",
            f"runner={runner}", "prompt.weighting=none"]


def plain_loop(tasks, batch: int, out: Path) -> float:
    """A user's own script: one pipeline, batches, per-image CPU generators, PNG files."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from animagine_batch import offline

    pipe = StableDiffusionXLPipeline.from_pretrained(offline.ensure_model("tiny"),
                                                     add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True)
    start, done = None, 0
    for i in range(0, len(tasks), batch):
        chunk = tasks[i : i + batch]
        images = pipe(prompt=[t.prompt for t in chunk],
                      negative_prompt=[t.negative_prompt for t in chunk],
                      width=chunk[0].width, height=chunk[0].height,
                      num_inference_steps=chunk[0].steps, guidance_scale=chunk[0].cfg,
                      generator=[torch.Generator("cpu").manual_seed(t.seed) for t in chunk]).images
        for t, im in zip(chunk, images):
            im.save(out / f"{t.task_id}.png", compress_level=1)
        if start is None:  # steady state: from the first finished batch, like the framework
            start = time.perf_counter()
        else:
            done += len(chunk)
    return done / (time.perf_counter() - start)


class Timed:
    """Wraps a runner to time from the first finished unit (steady state)."""

    def __init__(self, runner):
        self.runner, self.first, self.images = runner, None, 0

    def start(self, ctx, first_model):
        self.runner.start(ctx, first_model)

    def run(self, units):
        for result in self.runner.run(units):
            if self.first is None:
                self.first = time.perf_counter()
            else:
                self.images += len(result.rows)
            yield result

    def close(self):
        self.runner.close()


def framework(n_images: int, batch: int, out: Path, runner: str, base_seed: int) -> dict:
    import io
    from contextlib import redirect_stderr

    from animagine_batch import cli, driver
    from animagine_batch.runners import make_runner

    spec, raw, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"),
                                    overrides(n_images, batch, out, runner, base_seed))
    plan = driver.make_plan(spec, dirs)
    timed: dict = {}

    def factory(name, address=None):
        timed["runner"] = Timed(make_runner(name, address))
        return timed["runner"]

    driver.make_runner, original = factory, driver.make_runner
    try:
        start = time.perf_counter()
        with redirect_stderr(io.StringIO()):
            n = driver.run(plan, raw, out=io.StringIO())
        end = time.perf_counter()
    finally:
        driver.make_runner = original
    t = timed["runner"]
    return {"images": n, "end_to_end": n / (end - start),
            "steady": t.images / (end - t.first) if t.images else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="48 images, one round")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.images, args.rounds = 48, 1
    from animagine_batch import cli, driver

    rates: dict[str, list] = {"plain": [], "local": [], "local_end_to_end": [], "ray": [],
                              "ray_end_to_end": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            seed = r * 100_000
            spec, _, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), overrides(
                args.images, args.batch, Path(tmp) / "unused", "local", seed))
            tasks = driver.make_plan(spec, dirs).tasks
            kinds = ["plain", "local"] + ([] if args.no_ray else ["ray"])
            for kind in kinds[r % len(kinds):] + kinds[: r % len(kinds)]:  # rotate the order
                if kind == "plain":
                    rates["plain"].append(plain_loop(tasks, args.batch, Path(tmp) / f"plain{r}"))
                    continue
                res = framework(args.images, args.batch, Path(tmp) / f"{kind}{r}", kind, seed)
                rates[kind].append(res["steady"])
                rates[f"{kind}_end_to_end"].append(res["end_to_end"])
            print(f"round {r + 1}: plain {rates['plain'][-1]:.2f}, local {rates['local'][-1]:.2f}"
                  + (f", ray {rates['ray'][-1]:.2f} steady / {rates['ray_end_to_end'][-1]:.2f} "
                     "end to end" if not args.no_ray else "") + " images/s")
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    result = {"benchmark": "overhead", "images": args.images, "batch": args.batch,
              "rounds": args.rounds, "images_per_s": med,
              "local_vs_plain": med["local"] / med["plain"]}
    if "ray" in med:
        result["ray_vs_plain"] = med["ray"] / med["plain"]
        result["ray_end_to_end_vs_plain"] = med["ray_end_to_end"] / med["plain"]
    print(f"local / plain = {result['local_vs_plain']:.3f}"
          + (f"; ray (steady) / plain = {result['ray_vs_plain']:.3f}" if "ray" in med else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
