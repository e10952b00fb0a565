"""Job validation: the composed config dict -> a frozen `JobSpec`, or a `ConfigError` that lists
every problem with its key path (so one run of a broken job shows all of them).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from . import prompts as P
from . import samplers
from .collect import Collector, check_int
from .job import (AXES, PASS_AXES, SEED_LIMIT, TOP_KEYS, GenerationSpec, JobSpec, SweepSpec,
                     count_tasks, parse_size)
from ..errors import ConfigError
from ..scorers import registry
from .pass_sections import (check_hires_fit, check_pass_level, parse_hires, parse_loras,
                                parse_wildcards, pass_overrides, unused_setting)
from .sections import parse_model, parse_output, parse_runner

MAX_STEPS = 1000
MAX_CFG = 100
MAX_TASKS = 100_000_000  # tasks are held in memory: about 1 KB each


def _check_level(c: Collector, key: str, axis: str, value, spec_models: dict, sizes: list):
    """Validate one value of a generation or prompt field."""
    if axis in ("steps",):
        if check_int(c, key, value, 1) is not None and value > MAX_STEPS:
            c.add(key, f"{value} steps is more than {MAX_STEPS} (the schedulers' training "
                  "timesteps)")
    elif axis == "cfg":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            c.add(key, f"{value!r} is not a number")
        elif value <= 0:
            c.add(key, f"cfg {value} must be > 0")
        elif value > MAX_CFG:
            c.add(key, f"cfg {value} must be at most {MAX_CFG}")
    elif axis in ("width", "height"):
        if check_int(c, key, value, 1) is not None:
            sizes.append((key, value))
    elif axis == "size":
        try:
            w, h = parse_size(value)
            sizes += [(key, w), (key, h)]
        except ValueError as e:
            c.add(key, str(e))
    elif axis == "sampler":
        try:
            samplers.get(value)
        except ValueError as e:
            c.add(key, str(e))
    elif axis == "model":
        if str(value) not in spec_models:
            c.add(key, f"unknown model {value!r}; model configs: {', '.join(sorted(spec_models))}")
    elif axis in P.PROMPT_FIELDS:
        for problem in P.check_options(P.PromptOptions(**{axis: str(value)})):
            c.add(key, problem.split(": ", 1)[1])
    elif axis in PASS_AXES:
        check_pass_level(c, key, axis, value)


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


def _parse_scorers(c: Collector, names, overrides, configs: dict | None) -> tuple:
    configs = configs or {}
    if names is None:
        names = []
    if not isinstance(names, (list, tuple)):
        c.add("scorers", "must be a list of scorer names")
        return ()
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        c.add("scorer", "must map scorer names to option overrides")
        overrides = {}
    for k in sorted(set(overrides) - {str(n) for n in names}):
        c.add(f"scorer.{k}", f"sets options of a scorer the job does not list in scorers: {list(names)}")
    specs = []
    for name in map(str, names):
        if name not in configs:
            c.add("scorers", f"unknown scorer {name!r}; allowed: {', '.join(sorted(configs)) or '(none)'}")
            continue
        extra = overrides.get(name) or {}
        if not isinstance(extra, dict):
            c.add(f"scorer.{name}", f"{extra!r} must map option names to values")
            continue
        if "kind" in extra:
            c.add(f"scorer.{name}.kind", "cannot be overridden; pick another scorer config")
        config = {**configs[name], **{k: v for k, v in extra.items() if k != "kind"}}
        problems = registry.option_problems(name, config)
        c.problems += problems
        if not problems:
            specs.append(registry.ScorerSpec.make(name, config))
    if len({s.name for s in specs}) != len(specs):
        c.add("scorers", f"lists a scorer twice: {list(names)}")
    return tuple(specs)


def parse_scorers(names, overrides, configs: dict) -> tuple:
    """Scorer specs for `animagine-batch score`, or a ConfigError listing the problems."""
    c = Collector()
    specs = _parse_scorers(c, names, overrides, configs)
    if not names:
        c.add("scorers", f"name at least one scorer; allowed: {', '.join(sorted(configs))}")
    if c.problems:
        raise ConfigError(c.problems)
    return specs


def parse_job(raw: dict, model_configs: dict[str, dict], prompt_dirs: list[Path],
              scorer_configs: dict[str, dict] | None = None) -> JobSpec:
    """Typed, validated job from a composed config dict.

    `model_configs` and `scorer_configs` map the names of conf/model/*.yaml and
    conf/scorer/*.yaml to their contents; the job's own `model` section is the selected model
    (with overrides) and `scorer.<name>` holds option overrides of the listed scorers.
    """
    c = Collector()
    warnings: list[str] = []  # settings that an axis overrides, said before the run
    for k in sorted(set(raw) - set(TOP_KEYS)):
        c.add(k, f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    name = str(raw.get("name") or "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        c.add("name", f"{name!r} must be a non-empty name of letters, digits, '.', '_' or '-'")
    opts = c.section(raw.get("prompt"), "prompt", P.PromptOptions)
    opts = P.PromptOptions(**{k: str(v) for k, v in opts.__dict__.items()})
    for problem in P.check_options(opts):
        c.add("prompt." + problem.split(": ", 1)[0], problem.split(": ", 1)[1])
    gen = c.section(raw.get("generation"), "generation", GenerationSpec)
    runner = parse_runner(c, raw.get("runner"))
    output = parse_output(c, raw.get("output"))
    model_raw = raw.get("model") or {}
    main_name = str(model_raw.get("name", "model")) if isinstance(model_raw, dict) else "model"
    model = parse_model(model_raw if isinstance(model_raw, dict) else {}, main_name, "model", c)

    sweep_raw = raw.get("sweep") or {}
    if not isinstance(sweep_raw, dict):
        c.add("sweep", "must be a mapping with grid, zip, seeds, base_seed")
        sweep_raw = {}
    sweep_keys = ("grid", "zip", "seeds", "base_seed", "sample")
    for k in sorted(set(sweep_raw) - set(sweep_keys)):
        c.add(f"sweep.{k}", f"unknown key; allowed: {', '.join(sweep_keys)}")
    grid = _parse_axes(c, sweep_raw.get("grid"), "sweep.grid")
    zipped = _parse_axes(c, sweep_raw.get("zip"), "sweep.zip")
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
    max_tasks = check_int(c, "max_tasks", raw.get("max_tasks", 100_000), 1) or 100_000
    if max_tasks > MAX_TASKS:
        c.add("max_tasks", f"{max_tasks:,} is more than {MAX_TASKS:,}, the most one job holds; "
              "split the experiment into several jobs")
        max_tasks = MAX_TASKS
    seeds = _parse_seeds(c, sweep_raw.get("seeds", 1), sweep_raw.get("base_seed", 0), max_tasks)
    sample = sweep_raw.get("sample")
    if sample is not None:
        sample = check_int(c, "sweep.sample", sample, 1)
    sweep = SweepSpec(grid=grid, zip=zipped, seeds=seeds, sample=sample,
                      sample_seed=seeds[0] if seeds else 0)

    models = {model.name: model}
    model_levels = [str(v) for a, vs in grid + zipped if a == "model" for v in vs]
    for level in model_levels:
        if level in model_configs and level != model.name:
            models[level] = parse_model(model_configs[level], level, f"model config {level}", c)
    known_models = {**{n: None for n in model_configs}, model.name: None}

    hires = parse_hires(c, raw.get("hires"))
    loras = parse_loras(c, raw.get("loras"))
    before = len(c.problems)
    wildcards = parse_wildcards(c, raw.get("wildcards"), prompt_dirs)
    expand_with = wildcards if len(c.problems) == before else None  # no expansion when broken
    if "lora.scale" in axes and "lora.path" not in axes and not loras:
        c.add("sweep", "lora.scale is an axis but no LoRA is set: add loras: [{path: ...}] or "
              "a lora.path axis")
    sizes: list = []
    for field_name in ("sampler", "steps", "cfg", "width", "height"):
        key, value = f"generation.{field_name}", getattr(gen, field_name)
        axis = "size" if field_name in ("width", "height") and "size" in axes else field_name
        if axis not in axes:
            _check_level(c, key, field_name, value, {}, sizes)
            continue
        unused: list = []  # an axis sets it for every task: still checked, but not for a model
        _check_level(c, key, field_name, value, {}, unused)
        for k, v in unused:
            if v % 8:
                c.add(k, f"{v} is not a multiple of 8")
        if value != getattr(GenerationSpec, field_name):
            warnings.append(unused_setting(key, value, axis, sweep))
    for field_name, value in opts.__dict__.items():
        if field_name in axes and value != getattr(P.PromptOptions, field_name):
            warnings.append(unused_setting(f"prompt.{field_name}", value, field_name, sweep))
    warnings += pass_overrides(sweep, hires, loras)
    check_int(c, "generation.batch_size", gen.batch_size, 1)
    for axis, levels in grid + zipped:
        group = "grid" if (axis, levels) in grid else "zip"
        for i, v in enumerate(levels):
            _check_level(c, f"sweep.{group}.{axis}[{i}]", axis, v, known_models, sizes)
    lo = max(m.min_size for m in models.values())
    hi = min(m.max_size for m in models.values())
    for key, v in sizes:
        if v % 8:
            c.add(key, f"{v} is not a multiple of 8")
        elif not lo <= v <= hi:
            c.add(key, f"{v} is outside {lo}-{hi}, the sizes the model(s) "
                  f"{', '.join(sorted(models))} accept")
    check_hires_fit(c, sweep, hires, gen.steps, [v for _, v in sizes], hi, sorted(models))

    scorers = _parse_scorers(c, raw.get("scorers"), raw.get("scorer"), scorer_configs)
    prompts_name = str(raw.get("prompts") or "")
    prompt_set = None
    try:
        prompt_set = P.load_prompt_set(prompts_name, prompt_dirs, expand_with, sweep.seeds[0])
    except ConfigError as e:
        c.problems += e.problems
    n_prompts = len(prompt_set.entries) if prompt_set else 0
    total = count_tasks(n_prompts, sweep)
    if total > max_tasks:
        c.add("max_tasks", f"the sweep has {total:,} tasks, more than max_tasks={max_tasks:,}; "
              "shrink the sweep or raise max_tasks")
    if c.problems:
        raise ConfigError(c.problems)
    return JobSpec(name=name, prompts=prompts_name, prompt=opts, generation=gen, sweep=sweep,
                   model=model, models=models, scorers=scorers,
                   runner=runner, output=output, max_tasks=max_tasks, hires=hires, loras=loras,
                   wildcards=wildcards, prompt_set=prompt_set, warnings=tuple(warnings))
