"""The `sweep` section: grid and zip axes, seeds, the sample, and `max_tasks`."""

from __future__ import annotations

from collections import Counter

from .axes import AXES
from .collect import Collector, check_int
from .job import SweepSpec
from .values import SEED_LIMIT

SWEEP_KEYS = ("grid", "zip", "seeds", "base_seed", "sample")
MAX_TASKS = 100_000_000  # tasks are held in memory: about 1 KB each


def parse_max_tasks(c: Collector, value) -> int:
    max_tasks = check_int(c, "max_tasks", value, 1) or 100_000
    if max_tasks > MAX_TASKS:
        c.add("max_tasks", f"{max_tasks:,} is more than {MAX_TASKS:,}, the most one job holds; "
              "split the experiment into several jobs")
        max_tasks = MAX_TASKS
    return max_tasks


def _parse_axes(c: Collector, raw, key: str) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        c.add(key, "must be a mapping of axis name to a list of levels")
        return ()
    out = []
    for axis, levels in raw.items():
        if axis not in AXES:
            c.add(f"{key}.{axis}", f"unknown axis; allowed: {', '.join(AXES)}")
            continue
        if not isinstance(levels, (list, tuple)) or not levels:
            c.add(f"{key}.{axis}", "must be a non-empty list of levels")
            continue
        if key == "sweep.grid" and len({repr(v) for v in levels}) != len(levels):
            c.add(f"{key}.{axis}", f"repeats a level: {list(levels)}")
        out.append((axis, tuple(levels)))
    return tuple(out)


def _parse_seeds(c: Collector, seeds, base, max_tasks: int) -> tuple[int, ...]:
    base = check_int(c, "sweep.base_seed", base, 0)
    if isinstance(seeds, (list, tuple)):
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)
               or not 0 <= s < SEED_LIMIT]
        if bad or not seeds:
            c.add("sweep.seeds", f"a list of seeds must hold integers in [0, 2^63); got {list(seeds)}")
            return (0,)
        if len(set(seeds)) != len(seeds):
            c.add("sweep.seeds", f"repeats a seed: {list(seeds)}")
        return tuple(seeds)
    n = check_int(c, "sweep.seeds", seeds, 1)
    if n is None or base is None:
        return (0,)
    if n > max_tasks:  # refused before a range this long is built
        c.add("sweep.seeds", f"{n:,} seeds are more than max_tasks={max_tasks:,}; use fewer "
              "seeds or raise max_tasks")
        return (0,)
    if base + n > SEED_LIMIT:
        c.add("sweep.base_seed", "base_seed + seeds must stay below 2^63")
        return (0,)
    return tuple(range(base, base + n))


def parse_sweep(c: Collector, raw, max_tasks: int) -> SweepSpec:
    """The sweep's axes (named by the axis table, each level checked later), seeds and sample."""
    raw = raw or {}
    if not isinstance(raw, dict):
        c.add("sweep", "must be a mapping with grid, zip, seeds, base_seed")
        raw = {}
    for k in sorted(set(raw) - set(SWEEP_KEYS)):
        c.add(f"sweep.{k}", f"unknown key; allowed: {', '.join(SWEEP_KEYS)}")
    grid = _parse_axes(c, raw.get("grid"), "sweep.grid")
    zipped = _parse_axes(c, raw.get("zip"), "sweep.zip")
    for axis in {a for a, _ in grid} & {a for a, _ in zipped}:
        c.add(f"sweep.zip.{axis}", "is also a grid axis; an axis can be in grid or zip, not both")
    if len({len(v) for _, v in zipped}) > 1:
        c.add("sweep.zip", "lists must have equal lengths: "
              + ", ".join(f"{a}={len(v)}" for a, v in zipped))
    elif zipped:  # a zip axis may repeat a level (one group varied at a time); a position not
        counts = Counter(repr(p) for p in zip(*(v for _, v in zipped)))
        repeated = sorted(p for p, n in counts.items() if n > 1)
        if repeated:
            c.add("sweep.zip", f"repeats a position ({', '.join(a for a, _ in zipped)}): "
                  f"{', '.join(repeated)}")
    axes = [a for a, _ in grid + zipped]
    if "size" in axes and ({"width", "height"} & set(axes)):
        c.add("sweep", "size and width/height cannot both be axes")
    seeds = _parse_seeds(c, raw.get("seeds", 1), raw.get("base_seed", 0), max_tasks)
    sample = raw.get("sample")
    if sample is not None:
        sample = check_int(c, "sweep.sample", sample, 1)
    return SweepSpec(grid=grid, zip=zipped, seeds=seeds, sample=sample,
                     sample_seed=seeds[0] if seeds else 0)
