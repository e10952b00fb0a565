"""Scale benchmark: planning, resume and analysis at a million tasks (no generation).

1. expand + plan 1,000,000 tasks (66 characters x 100 grid points x 152 seeds): time and peak
   memory of the planning process (target here: <= 5 s, <= 1 GiB);
2. a killed run of 250,000 finished units (1,000,000 tasks, 4 rows a unit) in the parts the
   compaction leaves: the resume (done ids, the column-type check and the pending tasks; target
   here < 10 s) and `load_run` (< 20 s), each in a fresh process; beside them 20,000 one-unit
   parts compacted and uncompacted (what a run killed before its final compaction left before
   parts were merged during the run), with the ratios;
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
import shutil
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


def _resume(run: str, ids_file: str, queue) -> None:
    """Child process: what `run` does with a run directory before `N done, M to do`: the done
    ids, the column-type check, the plan's pending tasks."""
    import pyarrow.parquet as pq

    import killed_run  # benchmarks/, beside this script
    from animagine_batch.rundir import done_ids
    from animagine_batch.rundir.jobfile import type_clashes

    ids = pq.read_table(ids_file)["task_id"].to_pylist()
    start = time.perf_counter()
    done = done_ids(run)
    clashes = type_clashes(Path(run), killed_run.schema())
    pending = [t for t in ids if t not in done]
    queue.put({"done": len(done), "pending": len(pending), "clashes": len(clashes),
               "seconds": time.perf_counter() - start})


def _load(run: str, queue) -> None:
    """Child process: `load_run` of a run directory, its time and peak memory."""
    from animagine_batch.rundir import load_run

    base = _peak_kib(reset=True)
    start = time.perf_counter()
    df = load_run(run)
    seconds = time.perf_counter() - start
    queue.put({"rows": len(df), "seconds": seconds, "rss_added_mib": (_peak_kib() - base) / 1024})


def bench_killed_run(ids: list[str], folder: Path, units: int, baseline_units: int) -> dict:
    """Resume and `load_run` of a killed run: `units` finished units of the plan's tasks, in the
    parts the compaction leaves; and, side by side, `baseline_units` one-unit parts as compacted
    and as uncompacted (a run killed before its final compaction, before parts were merged
    during the run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import killed_run

    ids_file = folder / "ids.parquet"
    pq.write_table(pa.table({"task_id": ids}), ids_file)
    out = {}
    for name, n, compacted in (("compacted", units, True),
                               ("compacted_baseline", baseline_units, True),
                               ("uncompacted_baseline", baseline_units, False)):
        run = folder / f"killed-{name}"
        parts = killed_run.build(run, ids, n, compacted)
        out[name] = {"units": n, "tasks": n * killed_run.BATCH, "parts": parts,
                     "resume": _child(_resume, str(run), str(ids_file)),
                     "load_run": _child(_load, str(run))}
        shutil.rmtree(run)
    old, new, same = out["uncompacted_baseline"], out["compacted"], out["compacted_baseline"]
    scale = units / baseline_units  # the old state's time grows with its number of parts
    out["ratios"] = {f"{what}_{how}": round(old[what]["seconds"] * k / ref[what]["seconds"], 1)
                     for what in ("resume", "load_run")
                     for how, k, ref in (("same_size", 1, same), ("extrapolated", scale, new))}
    return out


def _print_killed_run(k: dict) -> None:
    for name in ("compacted", "compacted_baseline", "uncompacted_baseline"):
        s = k[name]
        print(f"killed run, {name}: {s['units']:,} units in {s['parts']:,} parts: resume "
              f"({s['resume']['done']:,} done, {s['resume']['pending']:,} to do) "
              f"{s['resume']['seconds']:.2f} s, load_run of {s['load_run']['rows']:,} rows "
              f"{s['load_run']['seconds']:.2f} s (+{s['load_run']['rss_added_mib']:.0f} MiB)")
    r = k["ratios"]
    print(f"killed run, uncompacted / compacted: resume {r['resume_same_size']}x, load_run "
          f"{r['load_run_same_size']}x at the baseline's size; at the full size (uncompacted "
          f"extrapolated linearly) resume {r['resume_extrapolated']}x, load_run "
          f"{r['load_run_extrapolated']}x")


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
    import killed_run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100,000 tasks/rows instead of 1,000,000 "
                   "(and 2,000 uncompacted parts instead of 20,000)")
    args = p.parse_args()
    seeds = 16 if args.quick else 152
    rows = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        plan = bench_plan(seeds)
        ids = plan.pop("ids")
        print(f"plan: {plan['tasks']:,} tasks, {plan['units']:,} units in {plan['seconds']:.2f} s, "
              f"peak RSS {plan['peak_rss_mib']:.0f} MiB (+{plan['rss_added_mib']:.0f} MiB)")
        killed = bench_killed_run(ids, Path(tmp), rows // killed_run.BATCH,
                                  2_000 if args.quick else 20_000)
        _print_killed_run(killed)
        analysis = bench_analysis(rows, Path(tmp))
        for name, a in analysis.items():
            print(f"{name}: {a['rows']:,} rows, {a['prompts']:,} prompts: load_run "
                  f"{a['load_seconds']:.2f} s, with the analysis {a['seconds']:.2f} s, peak RSS "
                  f"{a['peak_rss_mib']:.0f} MiB (+{a['rss_added_mib']:.0f} MiB)")
    print(json.dumps({"benchmark": "scale", "quick": args.quick, "plan": plan, "killed_run": killed,
                      "analysis": analysis}))


if __name__ == "__main__":
    main()
