"""Job validation: the composed config dict -> a frozen `JobSpec`, or a `ConfigError` that lists
every problem with its key path (so one run of a broken job shows all of them).
"""

from __future__ import annotations

import math
import re

from ..errors import ConfigError
from . import prompts as P
from . import samplers
from .catalogue import Catalogue
from .collect import Collector, check_int
from .job import PASS_AXES, TOP_KEYS, GenerationSpec, JobSpec, count_tasks, parse_size
from .pass_sections import (check_hires_fit, check_pass_level, parse_hires, parse_loras,
                            parse_wildcards, pass_overrides, unused_setting)
from .scorer_section import parse_scorer_section
from .sections import parse_model, parse_output, parse_runner
from .sweep_section import parse_max_tasks, parse_sweep

MAX_STEPS = 1000
MAX_CFG = 100


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


def parse_job(raw: dict, catalogue: Catalogue) -> JobSpec:
    """Typed, validated job from a composed config dict, or a ConfigError listing every problem.

    The job's own `model` section is the selected model (with overrides); the levels of a
    `model` axis name configs of `catalogue.models`, and `scorer.<name>` holds option overrides
    of the listed scorers. The prompt set is loaded through `catalogue.prompt_sets` (which keeps
    it for the plan) to check it and count the tasks.
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
    runner = parse_runner(c, raw.get("runner"), catalogue.runners)
    output = parse_output(c, raw.get("output"))
    model_raw = raw.get("model") or {}
    main_name = str(model_raw.get("name", "model")) if isinstance(model_raw, dict) else "model"
    model = parse_model(model_raw if isinstance(model_raw, dict) else {}, main_name, "model", c)
    max_tasks = parse_max_tasks(c, raw.get("max_tasks", 100_000))
    sweep = parse_sweep(c, raw.get("sweep"), max_tasks)
    grid, zipped, axes = sweep.grid, sweep.zip, sweep.axes

    models = {model.name: model}
    model_levels = [str(v) for a, vs in grid + zipped if a == "model" for v in vs]
    for level in model_levels:
        if level in catalogue.models and level != model.name:
            models[level] = parse_model(catalogue.models[level], level, f"model config {level}",
                                        c)
    known_models = {**{n: None for n in catalogue.models}, model.name: None}

    hires = parse_hires(c, raw.get("hires"))
    loras = parse_loras(c, raw.get("loras"))
    before = len(c.problems)
    wildcards = parse_wildcards(c, raw.get("wildcards"), catalogue.prompt_sets.dirs)
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

    scorers = parse_scorer_section(c, raw.get("scorers"), raw.get("scorer"), catalogue)
    prompts_name = str(raw.get("prompts") or "")
    n_prompts = 0
    try:
        n_prompts = len(catalogue.prompt_sets.load(prompts_name, expand_with,
                                                   sweep.seeds[0]).entries)
    except ConfigError as e:
        c.problems += e.problems
    total = count_tasks(n_prompts, sweep)
    if total > max_tasks:
        c.add("max_tasks", f"the sweep has {total:,} tasks, more than max_tasks={max_tasks:,}; "
              "shrink the sweep or raise max_tasks")
    if c.problems:
        raise ConfigError(c.problems)
    return JobSpec(name=name, prompts=prompts_name, prompt=opts, generation=gen, sweep=sweep,
                   model=model, models=models, scorers=scorers,
                   runner=runner, output=output, max_tasks=max_tasks, hires=hires, loras=loras,
                   wildcards=wildcards, warnings=tuple(warnings))
