"""Job validation: the composed config dict -> a frozen `JobSpec`, or a `ConfigError` that lists
every problem with its key path (so one run of a broken job shows all of them).
"""

from __future__ import annotations

import dataclasses
import re

from ..errors import ConfigError
from . import prompts as P
from .axes import AXES, Levels, check_levels, setting
from .catalogue import Catalogue
from .collect import Collector, check_int
from .job import TOP_KEYS, GenerationSpec, JobSpec, LoraSpec, count_tasks
from .pass_sections import check_hires_fit, parse_hires, parse_loras, parse_wildcards
from .scorer_section import parse_scorer_section
from .sections import parse_model, parse_output, parse_pipeline, parse_runner
from .sweep_section import parse_max_tasks, parse_sweep


def _unused(spec: JobSpec) -> list[str]:
    """Warnings for the settings a sweep axis replaces in every task, where the job sets them
    to something else than their default."""
    defaults = JobSpec(name="", prompts="", prompt=P.PromptOptions(), generation=GenerationSpec(),
                       sweep=spec.sweep, model=spec.model, models={},
                       loras=tuple(LoraSpec(path=None) for _ in spec.loras))
    out = []
    for axis in spec.sweep.axes:
        levels = " | ".join(map(str, spec.sweep.levels(axis)))
        for key in AXES[axis].settings:
            value, default = setting(spec, key), setting(defaults, key)
            if key != "model.name" and value != default:
                out.append(f"{key}={value!r} is not used: the sweep axis {axis} sets it for "
                           f"every task ({levels})")
    return out


def _check_generation(c: Collector, gen, axes: tuple[str, ...], sizes: list) -> None:
    """The generation section's own settings, checked as levels are. One that an axis replaces
    is still checked, but not against the model's sizes (it is never used)."""
    for a in AXES.values():
        key = a.settings[0]
        if len(a.settings) != 1 or not key.startswith("generation."):
            continue
        replaced = any(key in AXES[b].settings for b in axes)
        seen = Levels({}, [] if replaced else sizes)
        a.check(c, key, getattr(gen, key.split(".", 1)[1]), seen)
        for k, v in seen.sizes if replaced else ():
            if v % 8:
                c.add(k, f"{v} is not a multiple of 8")


def parse_job(raw: dict, catalogue: Catalogue) -> JobSpec:
    """Typed, validated job from a composed config dict, or a ConfigError listing every problem.

    The job's own `model` section is the selected model (with overrides); the levels of a
    `model` axis name configs of `catalogue.models`, and `scorer.<name>` holds option overrides
    of the listed scorers. The prompt set is loaded through `catalogue.prompt_sets` (which keeps
    it for the plan) to check it and count the tasks.
    """
    c = Collector()
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
    runner, moved, notices = parse_runner(c, raw.get("runner"), catalogue.runners)
    pipeline = parse_pipeline(c, raw.get("pipeline"), moved)
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
    if str(pipeline.precision).strip().lower() == "fp8" and (loras or "lora.path" in axes):
        c.add("pipeline.precision", "fp8 quantizes the UNet's Linear layers, which LoRAs are not "
              "loaded into; allowed with LoRAs: auto")
    if "lora.scale" in axes and "lora.path" not in axes and not loras:
        c.add("sweep", "lora.scale is an axis but no LoRA is set: add loras: [{path: ...}] or "
              "a lora.path axis")
    sizes: list = []
    _check_generation(c, gen, axes, sizes)
    check_int(c, "generation.batch_size", gen.batch_size, 1)
    check_levels(c, sweep, known_models, sizes)
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
    spec = JobSpec(name=name, prompts=prompts_name, prompt=opts, generation=gen, sweep=sweep,
                   model=model, models=models, scorers=scorers,
                   runner=runner, pipeline=pipeline, output=output, max_tasks=max_tasks,
                   hires=hires, loras=loras, wildcards=wildcards)
    return dataclasses.replace(spec, warnings=tuple(notices + _unused(spec)))
