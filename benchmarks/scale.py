"""Scale benchmark: planning, resume and analysis at a million tasks (no generation).

1. expand + plan 1,000,000 tasks (66 characters x 100 grid points x 152 seeds): time and peak
   memory of the planning process (target here: <= 5 s, <= 1 GiB);
2. the resume check against 1,000,000 finished task ids in a run directory (target <= 5 s);
3. `load_run` + `compare` over a 1,000,000-row synthetic results table (target <= 20 s).

    python benchmarks/scale.py [--quick]

Prints one line per figure and, last, one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _job_overrides(seeds: int) -> list[str]:
    return ["prompts=characters", "scorers=[]", "max_tasks=10000000", f"sweep.seeds={seeds}",
            "sweep.grid={quality:[none,masterpiece,best quality,great quality,good quality],"
            "cfg:[4.0,5.0,6.0,7.0,8.0],steps:[2,3,4,5]}"]


def _plan(seeds: int, queue) -> None:
    """Child process: compose, expand and batch; report time and peak RSS."""
    from animagine_batch import cli, sweep
    from animagine_batch.driver import make_plan

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec, _, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), _job_overrides(seeds))
    start = time.perf_counter()
    plan = make_plan(spec, dirs)
    units = sweep.units(plan.tasks, spec.generation.batch_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"tasks": len(plan.tasks), "units": len(units), "seconds": seconds,
               "peak_rss_mib": peak / 1024, "rss_added_mib": (peak - base) / 1024,
               "ids": [t.task_id for t in plan.tasks] if len(plan.tasks) <= 2_000_000 else []})


def bench_plan(seeds: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_plan, args=(seeds, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def bench_resume(ids: list[str], folder: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis import done_ids

    run = folder / "resume"
    (run / "results").mkdir(parents=True)
    n = len(ids)
    for i, lo in enumerate(range(0, n, 250_000)):  # a compacted run: a few large parts
        chunk = ids[lo : lo + 250_000]
        pq.write_table(pa.table({"task_id": chunk, "status": ["ok"] * len(chunk)}),
                       run / "results" / f"part-{i:06d}-x.parquet")
    start = time.perf_counter()
    done = done_ids(run)
    pending = [t for t in ids if t not in done]
    return {"done": len(done), "pending": len(pending), "seconds": time.perf_counter() - start}


def bench_analysis(rows: int, folder: Path) -> dict:
    import numpy as np
    import pandas as pd
    import yaml

    from analysis import load_run
    from analysis.compare import compare

    run = folder / "analysis"
    (run / "results").mkdir(parents=True)
    rng = np.random.default_rng(0)
    prompts, seeds, levels = 1000, rows // (1000 * 5), ["none", "a", "b", "c", "d"]
    n = prompts * seeds * len(levels)
    df = pd.DataFrame({
        "task_id": [f"{i:016x}" for i in range(n)], "status": "ok", "model": "m",
        "prompt_key": np.repeat([f"p{i}" for i in range(prompts)], seeds * len(levels)),
        "seed": np.tile(np.repeat(np.arange(seeds), len(levels)), prompts),
        "quality": np.tile(levels, prompts * seeds), "sampler": "Euler a", "steps": 28,
        "cfg": 7.0, "width": 832, "height": 1216,
        "aesthetic_score": rng.random(n).astype("float32"),
        "clip_score": (rng.random(n) * 40).astype("float32"),
    })
    for i, lo in enumerate(range(0, n, 250_000)):
        df.iloc[lo : lo + 250_000].to_parquet(run / "results" / f"part-{i:06d}-x.parquet")
    (run / "job.yaml").write_text(yaml.safe_dump(
        {"job": {"sweep": {"grid": {"quality": levels}}}}))
    start = time.perf_counter()
    table = load_run(run)
    loaded = time.perf_counter() - start
    result = compare(table, "quality", ["aesthetic_score", "clip_score"],
                     {"aesthetic_score": True, "clip_score": True}, ["quality"], levels=levels)
    return {"rows": len(table), "load_seconds": loaded, "seconds": time.perf_counter() - start,
            "comparisons": len(result)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100,000 tasks/rows instead of 1,000,000")
    args = p.parse_args()
    seeds = 16 if args.quick else 152
    rows = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        plan = bench_plan(seeds)
        ids = plan.pop("ids")
        print(f"plan: {plan['tasks']:,} tasks, {plan['units']:,} units in {plan['seconds']:.2f} s, "
              f"peak RSS {plan['peak_rss_mib']:.0f} MiB (+{plan['rss_added_mib']:.0f} MiB)")
        resume = bench_resume(ids, Path(tmp))
        print(f"resume: {resume['done']:,} done ids read and {resume['pending']} pending found "
              f"in {resume['seconds']:.2f} s")
        analysis = bench_analysis(rows, Path(tmp))
        print(f"analysis: load_run of {analysis['rows']:,} rows {analysis['load_seconds']:.2f} s, "
              f"with compare {analysis['seconds']:.2f} s")
    print(json.dumps({"benchmark": "scale", "quick": args.quick, "plan": plan, "resume": resume,
                      "analysis": analysis}))


if __name__ == "__main__":
    main()
