"""Job validation: the composed config dict -> a frozen `JobSpec`, or a `ConfigError` that lists
every problem with its key path (so one run of a broken job shows all of them).
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path

from . import loras as loras_mod
from . import prompts as P
from . import samplers
from .config import (AXES, HIRES_SCALE, RUNNERS, SEED_LIMIT, TOP_KEYS, UPSCALERS,
                     GenerationSpec, HiresSpec, JobSpec, LoraSpec, ModelSpec, OutputSpec,
                     RunnerSpec, SweepSpec, WildcardSpec, count_tasks, hires_side, is_off,
                     parse_size)
from .errors import ConfigError
from .scorers import registry


def _fields(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class _Collector:
    """Gathers problems while parsing so one run reports all of them."""

    def __init__(self):
        self.problems: list[str] = []

    def add(self, key: str, msg: str):
        self.problems.append(f"{key}: {msg}")

    def section(self, raw, key: str, cls, defaults=None):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.add(key, f"must be a mapping of {', '.join(_fields(cls))}")
            return defaults or cls()
        for k in sorted(set(raw) - set(_fields(cls))):
            self.add(f"{key}.{k}", f"unknown key; allowed: {', '.join(_fields(cls))}")
        kwargs = {k: v for k, v in raw.items() if k in _fields(cls)}
        try:
            return cls(**{**(defaults.__dict__ if defaults else {}), **kwargs})
        except TypeError as e:
            self.add(key, str(e))
            return defaults or cls()


def _check_int(c: _Collector, key: str, value, low: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        c.add(key, f"{value!r} is not an integer")
        return None
    if low is not None and value < low:
        c.add(key, f"{value} must be >= {low}")
        return None
    return value


def _check_level(c: _Collector, key: str, axis: str, value, spec_models: dict, sizes: list):
    """Validate one value of a generation or prompt field."""
    if axis in ("steps",):
        _check_int(c, key, value, 1)
    elif axis == "cfg":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            c.add(key, f"{value!r} is not a number")
        elif value <= 0:
            c.add(key, f"cfg {value} must be > 0")
    elif axis in ("width", "height"):
        if _check_int(c, key, value, 1) is not None:
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
    elif axis == "hires.scale":
        if not is_off(value) and not _number_in(value, *HIRES_SCALE):
            c.add(key, f"{value!r} must be none (no hi-res pass) or a number from "
                  f"{HIRES_SCALE[0]} to {HIRES_SCALE[1]}")
    elif axis == "hires.strength":
        if not _number_in(value, 0.0, 1.0) or value == 0:
            c.add(key, f"{value!r} must be a number in (0, 1]")
    elif axis == "lora.path":
        if not is_off(value):
            problem = check_lora_path(str(value))
            if problem:
                c.add(key, problem)
    elif axis == "lora.scale":
        if not _number_in(value, -10.0, 10.0):
            c.add(key, f"{value!r} must be a number from -10 to 10")


def _number_in(value, low: float, high: float) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and low <= value <= high)


def check_lora_path(path: str) -> str | None:
    from .loras import check

    return check(path)


def _parse_hires(c: _Collector, raw) -> HiresSpec:
    spec = c.section(raw, "hires", HiresSpec)
    scale = None if is_off(spec.scale) else spec.scale
    if scale is not None:
        _check_level(c, "hires.scale", "hires.scale", scale, {}, [])
    _check_level(c, "hires.strength", "hires.strength", spec.strength, {}, [])
    if spec.upscaler not in UPSCALERS:
        c.add("hires.upscaler", f"{spec.upscaler!r} is not one of {', '.join(UPSCALERS)}")
    return HiresSpec(scale=float(scale) if _number_in(scale, *HIRES_SCALE) else None,
                     strength=float(spec.strength) if _number_in(spec.strength, 0, 1) else 0.55,
                     upscaler=spec.upscaler)


def _parse_loras(c: _Collector, raw) -> tuple[LoraSpec, ...]:
    if raw in (None, "none"):
        return ()
    if not isinstance(raw, (list, tuple)):
        c.add("loras", "must be a list of {path, scale}")
        return ()
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or "path" not in item:
            c.add(f"loras[{i}]", "must be a mapping with path (a .safetensors file) and scale")
            continue
        lora = c.section(item, f"loras[{i}]", LoraSpec, LoraSpec(path=str(item["path"])))
        problem = check_lora_path(str(lora.path))
        if problem:
            c.add(f"loras[{i}].path", problem)
        _check_level(c, f"loras[{i}].scale", "lora.scale", lora.scale, {}, [])
        path = str(lora.path) if problem else loras_mod.resolve(str(lora.path))
        out.append(LoraSpec(path=path, scale=float(lora.scale)
                            if _number_in(lora.scale, -10, 10) else 1.0))
    return tuple(out)


def _parse_wildcards(c: _Collector, raw, prompt_dirs: list[Path]) -> WildcardSpec:
    """A relative folder that is not found from the working directory is looked up among the
    packaged wildcard folders (conf/wildcards/<folder>)."""
    spec = c.section(raw, "wildcards", WildcardSpec)
    if spec.folder is not None and not isinstance(spec.folder, str):
        c.add("wildcards.folder", f"{spec.folder!r} is not a folder path")
        return WildcardSpec()
    if spec.folder is not None and not Path(spec.folder).expanduser().is_dir():
        for d in prompt_dirs:
            packaged = d.parent / "wildcards" / str(spec.folder)
            if packaged.is_dir():
                spec = WildcardSpec(**{**spec.__dict__, "folder": str(packaged)})
                break
    if spec.mode not in ("combinatorial", "random"):
        c.add("wildcards.mode", f"{spec.mode!r} is not one of combinatorial, random")
    if spec.variants is not None:
        _check_int(c, "wildcards.variants", spec.variants, 1)
    if spec.seed is not None:
        _check_int(c, "wildcards.seed", spec.seed, 0)
    if spec.folder is not None and not Path(spec.folder).expanduser().is_dir():
        c.add("wildcards.folder", f"{spec.folder} is not a folder (of <name>.txt wildcard files)")
    return spec


def _parse_axes(c: _Collector, raw, key: str) -> tuple[tuple[str, tuple], ...]:
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
        if len({repr(v) for v in levels}) != len(levels):
            c.add(f"{key}.{axis}", f"repeats a level: {list(levels)}")
        out.append((axis, tuple(levels)))
    return tuple(out)


def _parse_seeds(c: _Collector, seeds, base) -> tuple[int, ...]:
    base = _check_int(c, "sweep.base_seed", base, 0)
    if isinstance(seeds, (list, tuple)):
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)
               or not 0 <= s < SEED_LIMIT]
        if bad or not seeds:
            c.add("sweep.seeds", f"a list of seeds must hold integers in [0, 2^63); got {list(seeds)}")
            return (0,)
        if len(set(seeds)) != len(seeds):
            c.add("sweep.seeds", f"repeats a seed: {list(seeds)}")
        return tuple(seeds)
    n = _check_int(c, "sweep.seeds", seeds, 1)
    if n is None or base is None:
        return (0,)
    if base + n > SEED_LIMIT:
        c.add("sweep.base_seed", "base_seed + seeds must stay below 2^63")
        return (0,)
    return tuple(range(base, base + n))


def parse_model(raw: dict, name: str, key: str, c: _Collector) -> ModelSpec:
    spec = c.section({"name": name, **(raw or {})}, key, ModelSpec)
    if not (spec.id or spec.path or spec.embedded):
        c.add(key, "needs one of id (hub id), path (local folder or .safetensors file) or embedded")
    if not isinstance(spec.allow_pickle, bool):
        c.add(f"{key}.allow_pickle", f"{spec.allow_pickle!r} is not true or false")
    return spec


def _parse_scorers(c: _Collector, names, overrides, configs: dict | None) -> tuple:
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
        config = {**configs[name], **(overrides.get(name) or {})}
        if config.get("kind") not in registry.KINDS:
            c.add(f"scorer config {name}", f"kind {config.get('kind')!r} is not one of "
                  f"{', '.join(sorted(registry.KINDS))}")
            continue
        specs.append(registry.ScorerSpec.make(name, config))
    if len({s.name for s in specs}) != len(specs):
        c.add("scorers", f"lists a scorer twice: {list(names)}")
    return tuple(specs)


def parse_scorers(names, overrides, configs: dict) -> tuple:
    """Scorer specs for `animagine-batch score`, or a ConfigError listing the problems."""
    c = _Collector()
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
    c = _Collector()
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
    runner_raw = raw.get("runner")
    runner = c.section({"name": runner_raw} if isinstance(runner_raw, str) else runner_raw,
                       "runner", RunnerSpec)
    if runner.name not in RUNNERS:
        c.add("runner.name", f"unknown runner {runner.name!r}; allowed: {', '.join(RUNNERS)}")
    try:
        from .accel import options

        options(runner)
    except ConfigError as e:
        c.problems += e.problems
    output = c.section(raw.get("output"), "output", OutputSpec)
    if not (isinstance(output.png_compress_level, int) and 0 <= output.png_compress_level <= 9):
        c.add("output.png_compress_level", "must be an integer 0-9")
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
    axes = [a for a, _ in grid + zipped]
    if "size" in axes and ({"width", "height"} & set(axes)):
        c.add("sweep", "size and width/height cannot both be axes")
    seeds = _parse_seeds(c, sweep_raw.get("seeds", 1), sweep_raw.get("base_seed", 0))
    sample = sweep_raw.get("sample")
    if sample is not None:
        sample = _check_int(c, "sweep.sample", sample, 1)
    sweep = SweepSpec(grid=grid, zip=zipped, seeds=seeds, sample=sample,
                      sample_seed=seeds[0] if seeds else 0)

    models = {model.name: model}
    model_levels = [str(v) for a, vs in grid + zipped if a == "model" for v in vs]
    for level in model_levels:
        if level in model_configs and level != model.name:
            models[level] = parse_model(model_configs[level], level, f"model config {level}", c)
    known_models = {**{n: None for n in model_configs}, model.name: None}

    hires = _parse_hires(c, raw.get("hires"))
    loras = _parse_loras(c, raw.get("loras"))
    before = len(c.problems)
    wildcards = _parse_wildcards(c, raw.get("wildcards"), prompt_dirs)
    expand_with = wildcards if len(c.problems) == before else None  # no expansion when broken
    if "lora.scale" in axes and "lora.path" not in axes and not loras:
        c.add("sweep", "lora.scale is an axis but no LoRA is set: add loras: [{path: ...}] or "
              "a lora.path axis")
    sizes: list = []
    for field_name in ("sampler", "steps", "cfg", "width", "height"):
        if field_name in axes or (field_name in ("width", "height") and "size" in axes):
            continue  # an axis sets it for every task: the default is never used
        _check_level(c, f"generation.{field_name}", field_name, getattr(gen, field_name), {}, sizes)
    _check_int(c, "generation.batch_size", gen.batch_size, 1)
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
    scales = [v for v in (sweep.levels("hires.scale") if "hires.scale" in axes else [hires.scale])
              if not is_off(v) and _number_in(v, *HIRES_SCALE)]
    if scales and sizes:
        big = max(v for _, v in sizes)
        final = hires_side(big, max(scales))
        if final > hi:
            c.add("hires.scale", f"{max(scales)} upscales {big} px to {final} px, more than "
                  f"{hi} px, the largest size the model(s) {', '.join(sorted(models))} accept")
    if scales:
        steps = [v for v in (sweep.levels("steps") if "steps" in axes else [gen.steps])
                 if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        strengths = [v for v in (sweep.levels("hires.strength") if "hires.strength" in axes
                                 else [hires.strength]) if _number_in(v, 0.0, 1.0)]
        for st in steps:
            for sg in strengths:
                if int(st * sg) < 1:
                    c.add("hires.strength", f"{sg} with {st} steps leaves the hi-res pass no "
                          "denoising step (int(steps x strength) must be at least 1)")

    scorers = _parse_scorers(c, raw.get("scorers"), raw.get("scorer"), scorer_configs)
    prompts_name = str(raw.get("prompts") or "")
    n_prompts = 0
    try:
        n_prompts = len(P.load_prompt_set(prompts_name, prompt_dirs, expand_with,
                                          sweep.seeds[0]).entries)
    except ConfigError as e:
        c.problems += e.problems
    max_tasks = _check_int(c, "max_tasks", raw.get("max_tasks", 100_000), 1) or 100_000
    total = count_tasks(n_prompts, sweep)
    if total > max_tasks:
        c.add("max_tasks", f"the sweep has {total:,} tasks, more than max_tasks={max_tasks:,}; "
              "shrink the sweep or raise max_tasks")
    if c.problems:
        raise ConfigError(c.problems)
    return JobSpec(name=name, prompts=prompts_name, prompt=opts, generation=gen, sweep=sweep,
                   model=model, models=models, scorers=scorers,
                   runner=runner, output=output, max_tasks=max_tasks, hires=hires, loras=loras,
                   wildcards=wildcards)
