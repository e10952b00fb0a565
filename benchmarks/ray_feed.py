"""Ray feed benchmark: how soon the Ray runner's first unit reaches a worker, what each unit
costs in plumbing, and the driver's memory, for a 250,000-unit job (no generation).

1. plan a 1,003,200-task job (66 characters x 100 grid points x 152 seeds, batch 4: 250,800
   units, `sweep.units` as the driver makes them) and run it through the Ray runner with one
   trivial actor (`RayRunner(actor=...)`: it receives each unit and returns an empty result):
   seconds from `runner.start` (a local Ray included) and from `runner.run` to the first unit
   reaching the actor, per-unit plumbing over the next few thousand units, the driver's peak
   RSS and how many units the runner had read from the driver's iterator;
2. the baseline, the Ray Data feed the runner used before (`ray.data.from_items` with one
   block per unit, `map_batches` over an `ActorPoolStrategy` of one trivial actor) on two
   smaller jobs of the same plan, for the ratios: per-unit plumbing on the first, and how the
   wait for the first unit grows with the job (every unit is pickled into its own block
   first), extrapolated linearly to 250,800 units.

Each part runs in a fresh process with its own local Ray on 127.0.0.1.

    python benchmarks/ray_feed.py [--quick]

Targets: first unit within 15 s of the run starting, driver peak RSS under 1 GiB. Prints one
line per figure and, last, one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on 127.0.0.1 (SPEC.md section 8)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _units(seeds: int):
    """The units of the scale benchmark's job with `seeds` seeds, as the driver makes them."""
    from animagine_batch import cli
    from animagine_batch.driver import make_plan
    from animagine_batch.jobspec import sweep

    spec, _, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), [
        "prompts=characters", "scorers=[]", "max_tasks=10000000", f"sweep.seeds={seeds}",
        "runner=ray", "runner.device=cpu", "runner.workers=1",
        "sweep.grid={quality:[none,masterpiece,best quality,great quality,good quality],"
        "cfg:[4.0,5.0,6.0,7.0,8.0],steps:[2,3,4,5]}"])
    plan = make_plan(spec, dirs)
    return spec, plan, sweep.units(plan.tasks, spec.generation.batch_size)


class TrivialActor:
    """The Ray runner's actor interface with no work: notes when each unit arrives."""

    def __init__(self, ctx, threads=None):
        self.pid = os.getpid()

    def use(self, model):
        pass

    def run(self, unit):
        from animagine_batch.engine.generator import UnitResult

        result = UnitResult(unit.unit_id, [], [], 0.0, f"bench:{self.pid}")
        result.received = time.time()
        return result


class TrivialBatchActor:
    """The old Ray Data actor's interface with no work: a batch of pickled units in, the arrival
    time out."""

    def __init__(self):
        pass

    def __call__(self, batch: dict) -> dict:
        now = time.time()
        return {"received": [now for blob in batch["unit"] if pickle.loads(blob)]}


def _send_by_value() -> None:
    """Ray's workers cannot import this script: its actor classes travel by value."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[TrivialActor.__module__])


def _peak_kib(reset: bool = False) -> int:
    """Peak resident memory of this process in KiB (reset first: a spawned child starts with its
    parent's peak)."""
    status = Path("/proc/self/status")
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0])


def _rss_kib() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0])


def _lazy(queue, count: int) -> None:
    """Child process: the 250,800-unit job through the Ray runner's lazy pool."""
    from animagine_batch.runners import WorkerContext, make_runner

    _peak_kib(reset=True)
    start = time.perf_counter()
    spec, plan, units = _units(152)
    planned = time.perf_counter() - start
    rss_plan = _rss_kib()
    read = [0]

    def counted():  # the runner must read the driver's units as it needs them
        for unit in units:
            read[0] += 1
            yield unit

    runner = make_runner("ray")
    runner.actor = TrivialActor
    _send_by_value()
    ctx = WorkerContext(spec.name, spec.models, plan.identities, spec.runner, spec.pipeline)
    t_start = time.time()
    runner.start(ctx, units[0].model)
    started = time.time() - t_start
    t_run = time.time()
    arrived, warm = [], 10
    try:
        for result in runner.run(counted()):
            arrived.append((time.time(), result.received))
            if len(arrived) == count:
                break
    finally:
        runner.close()
    first = arrived[0][1]
    steady = (arrived[-1][0] - arrived[warm][0]) / (len(arrived) - 1 - warm)
    queue.put({"units": len(units), "tasks": len(plan.tasks), "plan_seconds": planned,
               "start_seconds": started, "first_unit_after_run_s": first - t_run,
               "first_unit_after_start_s": first - t_start, "measured_units": len(arrived),
               "per_unit_ms": steady * 1000, "units_read": read[0],
               "rss_after_plan_mib": rss_plan / 1024, "rss_end_mib": _rss_kib() / 1024,
               "peak_rss_mib": _peak_kib() / 1024})


def _ray_data(queue, counts: tuple[int, int]) -> None:
    """Child process: the old feed, Ray Data over one trivial actor: on counts[0] units to the
    end (per-unit plumbing), then on counts[1] units to the first (how the wait grows)."""
    import logging

    import ray

    spec, plan, units = _units(-(-counts[1] // 1_650))  # 1,650 units a seed
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    _send_by_value()
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # after the import, which sets it

    data_ctx = DataContext.get_current()
    data_ctx.enable_progress_bars = False
    data_ctx.execution_options.preserve_order = False
    out = {}
    for key, count, to_the_end in (("small", counts[0], True), ("large", counts[1], False)):
        t_run = time.time()
        items = [{"unit": pickle.dumps(u)} for u in units[:count]]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(TrivialBatchActor, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
        arrived = []
        for row in ds.iter_rows():
            arrived.append((time.time(), row["received"]))
            if not to_the_end:
                break
        out[key] = {"units": count, "first_unit_after_run_s": min(r for _, r in arrived) - t_run}
        if to_the_end:
            arrived.sort()
            out[key]["per_unit_ms"] = (arrived[-1][0] - arrived[0][0]) / (count - 1) * 1000
    ray.shutdown()
    queue.put(out)


def _child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue, *args))
    proc.start()
    while proc.is_alive() or not queue.empty():
        try:
            out = queue.get(timeout=1)
        except Exception:  # noqa: BLE001 - queue.Empty: look at the child again
            continue
        proc.join()
        return out
    raise SystemExit(f"{target.__name__} failed (exit status {proc.exitcode})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer units measured (under a minute)")
    args = p.parse_args(argv)
    measured, baseline_units = (1_000, (300, 4_000)) if args.quick else (5_000, (2_000, 20_000))
    lazy = _child(_lazy, measured)
    print(f"lazy pool: {lazy['units']:,} units ({lazy['tasks']:,} tasks) planned in "
          f"{lazy['plan_seconds']:.1f} s; Ray and the actor started in {lazy['start_seconds']:.1f}"
          f" s; first unit at the actor {lazy['first_unit_after_run_s'] * 1000:.0f} ms after "
          f"run() ({lazy['first_unit_after_start_s']:.1f} s after start)")
    print(f"lazy pool: {lazy['per_unit_ms']:.2f} ms per unit over {lazy['measured_units']:,} "
          f"units (one actor); {lazy['units_read']:,} units read from the driver's iterator; "
          f"driver RSS {lazy['rss_after_plan_mib']:.0f} MiB after planning, "
          f"{lazy['rss_end_mib']:.0f} MiB at the end, peak {lazy['peak_rss_mib']:.0f} MiB")
    old = _child(_ray_data, baseline_units)
    small, large = old["small"], old["large"]
    slope = ((large["first_unit_after_run_s"] - small["first_unit_after_run_s"])
             / (large["units"] - small["units"]))
    extrapolated = small["first_unit_after_run_s"] + slope * (lazy["units"] - small["units"])
    print(f"Ray Data baseline: first unit at the actor {small['first_unit_after_run_s']:.1f} s "
          f"after the feed started for {small['units']:,} units, "
          f"{large['first_unit_after_run_s']:.1f} s for {large['units']:,} ({slope * 1000:.1f} ms "
          f"more per unit; linear to {lazy['units']:,} units: {extrapolated / 60:.0f} min); "
          f"{small['per_unit_ms']:.1f} ms per unit")
    ratios = {"first_unit_vs_baseline_at_its_size":
              large["first_unit_after_run_s"] / lazy["first_unit_after_run_s"],
              "first_unit_vs_baseline_extrapolated":
              extrapolated / lazy["first_unit_after_run_s"],
              "per_unit": small["per_unit_ms"] / lazy["per_unit_ms"]}
    met = lazy["first_unit_after_start_s"] <= 15 and lazy["peak_rss_mib"] < 1024
    print(f"ratios (baseline / lazy): first unit "
          f"{ratios['first_unit_vs_baseline_at_its_size']:.0f}x at the baseline's "
          f"{large['units']:,} units, "
          f"{ratios['first_unit_vs_baseline_extrapolated']:.0f}x at {lazy['units']:,}; per unit "
          f"{ratios['per_unit']:.1f}x; targets (first unit <= 15 s after start, peak RSS < 1 GiB):"
          f" {'met' if met else 'missed'}")
    print(json.dumps({"benchmark": "ray_feed", "quick": args.quick, "lazy": lazy,
                      "ray_data": old, "extrapolated_ray_data_first_unit_s": extrapolated,
                      "ratios": ratios, "targets_met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
