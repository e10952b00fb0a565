"""Scale benchmark: planning, resume and analysis at a million tasks (no generation).

1. expand + plan 1,000,000 tasks (66 characters x 100 grid points x 152 seeds): time and peak
   memory of the planning process (target here: <= 5 s, <= 1 GiB);
2. the resume check against 1,000,000 finished task ids in a run directory (target <= 5 s);
3. `load_run` + `compare` over a 1,000,000-row synthetic results table, with 1,000 and with
   500,000 distinct prompts, and `load_run` + `regress` of two 1,000,000-row runs with a million
   distinct prompts: time and peak memory of each in a fresh process (target here: <= 20 s each).

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
    from animagine_batch import cli
    from animagine_batch.jobspec import sweep
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
    return _child(_plan, seeds)


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


def _results(n: int, prompts: int, levels: list[str], rng, shift: float = 0.0):
    """A synthetic results table of n rows: prompts x seeds x levels."""
    import numpy as np
    import pandas as pd

    seeds = n // (prompts * len(levels))
    n = prompts * seeds * len(levels)
    keys = np.array([f"p{i}" for i in range(prompts)], dtype=object)
    prompt = np.repeat(keys, seeds * len(levels))
    return pd.DataFrame({
        "task_id": [f"{i:016x}" for i in range(n)], "status": "ok", "model": "m",
        "prompt_key": prompt, "prompt": prompt, "negative_prompt": "",
        "seed": np.tile(np.repeat(np.arange(seeds), len(levels)), prompts),
        "quality": np.tile(levels, prompts * seeds), "sampler": "Euler a", "steps": 28,
        "cfg": 7.0, "width": 832, "height": 1216,
        "aesthetic_score": (rng.random(n) + shift).astype("float32"),
        "clip_score": (rng.random(n) * 40).astype("float32"),
    })


def _analysis(kind: str, runs: list[str], levels: list[str], queue) -> None:
    """Child process: load the run(s), then compare or regress; report time and peak RSS."""
    from analysis import load_run
    from analysis.compare import compare
    from analysis.regress import regress

    metrics = ["aesthetic_score", "clip_score"]
    dirs = {m: True for m in metrics}
    base = _peak_kib(reset=True)
    start = time.perf_counter()
    tables = [load_run(r) for r in runs]
    loaded = time.perf_counter() - start
    if kind == "compare":
        result = compare(tables[0], "quality", metrics, dirs, ["quality"], levels=levels)
    else:
        result = regress(tables[0], tables[1], metrics, dirs, ["quality"])
    peak = _peak_kib()
    queue.put({"rows": sum(len(t) for t in tables), "prompts": int(tables[0].prompt_key.nunique()),
               "load_seconds": loaded, "seconds": time.perf_counter() - start,
               "rows_out": len(result), "peak_rss_mib": peak / 1024,
               "rss_added_mib": (peak - base) / 1024})


def _peak_kib(reset: bool = False) -> int:
    """Peak resident memory of this process in KiB. A spawned child starts with its parent's
    peak (Linux keeps it across exec), so the analysis children reset it first."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0])


def _child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def bench_analysis(rows: int, folder: Path) -> dict:
    """compare over `rows` rows (1,000 prompts x 5 levels, then rows/2 distinct prompts x 2
    levels) and regress of two `rows`-row runs with one task per prompt (`rows` distinct prompts);
    each in a fresh process, load_run included."""
    import numpy as np

    from analysis.simulate import write_run

    rng = np.random.default_rng(0)
    five, two = ["none", "a", "b", "c", "d"], ["none", "a"]
    runs = {"compare": _results(rows, 1000, five, rng),
            "compare_prompts": _results(rows, rows // 2, two, rng),
            "baseline": _results(rows, rows, ["none"], rng),
            "candidate": _results(rows, rows, ["none"], rng, shift=-0.01)}
    for name, df in runs.items():
        levels = five if name == "compare" else two if name == "compare_prompts" else ["none"]
        write_run(folder / name, df, {"quality": levels}, parts=max(1, len(df) // 250_000))
    return {"compare": _child(_analysis, "compare", [str(folder / "compare")], five),
            "compare_distinct_prompts": _child(_analysis, "compare",
                                               [str(folder / "compare_prompts")], two),
            "regress_distinct_prompts": _child(_analysis, "regress",
                                               [str(folder / "baseline"),
                                                str(folder / "candidate")], ["none"])}


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
        for name, a in analysis.items():
            print(f"{name}: {a['rows']:,} rows, {a['prompts']:,} prompts: load_run "
                  f"{a['load_seconds']:.2f} s, with the analysis {a['seconds']:.2f} s, peak RSS "
                  f"{a['peak_rss_mib']:.0f} MiB (+{a['rss_added_mib']:.0f} MiB)")
    print(json.dumps({"benchmark": "scale", "quick": args.quick, "plan": plan, "resume": resume,
                      "analysis": analysis}))


if __name__ == "__main__":
    main()
