"""How each axis's levels are checked: one function per kind of level, (collector, key, level,
`Levels`) -> the level's problems added to the collector. The axes table (`axes.py`) names them
in its `check` column."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import prompts as P
from . import samplers
from .collect import Collector, check_int, number_in
from .loras import check as check_lora
from .values import HIRES_SCALE, cfg_cutoff_off, is_off, parse_size

MAX_STEPS = 1000
MAX_CFG = 100


@dataclass
class Levels:
    """What checking levels collects: the model configs a `model` level may name, and every
    width and height seen (key, pixels), range-checked against the models at the end."""

    models: dict
    sizes: list


def model(c: Collector, key: str, value, seen: Levels) -> None:
    if str(value) not in seen.models:
        c.add(key, f"unknown model {value!r}; model configs: {', '.join(sorted(seen.models))}")


def sampler(c: Collector, key: str, value, seen: Levels) -> None:
    try:
        samplers.get(value)
    except ValueError as e:
        c.add(key, str(e))


def steps(c: Collector, key: str, value, seen: Levels) -> None:
    if check_int(c, key, value, 1) is not None and value > MAX_STEPS:
        c.add(key, f"{value} steps is more than {MAX_STEPS} (the schedulers' training timesteps)")


def cfg(c: Collector, key: str, value, seen: Levels) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        c.add(key, f"{value!r} is not a number")
    elif value <= 0:
        c.add(key, f"cfg {value} must be > 0")
    elif value > MAX_CFG:
        c.add(key, f"cfg {value} must be at most {MAX_CFG}")


def side(c: Collector, key: str, value, seen: Levels) -> None:
    if check_int(c, key, value, 1) is not None:
        seen.sizes.append((key, value))


def clip_skip(c: Collector, key: str, value, seen: Levels) -> None:
    if check_int(c, key, value, 1) is not None and value > 12:
        c.add(key, f"clip skip {value} is more than 12 (webui's range; CLIP ViT-L has 12 layers)")


def cfg_cutoff(c: Collector, key: str, value, seen: Levels | None = None) -> None:
    if not cfg_cutoff_off(value) and not number_in(value, 0.0, 1.0):
        c.add(key, f"{value!r} must be none or 0 (off) or a number in (0, 1]: the fraction of "
              "the steps after which classifier-free guidance stops")


def size(c: Collector, key: str, value, seen: Levels) -> None:
    try:
        w, h = parse_size(value)
        seen.sizes += [(key, w), (key, h)]
    except ValueError as e:
        c.add(key, str(e))


def hires_scale(c: Collector, key: str, value, seen: Levels | None = None) -> None:
    if not is_off(value) and not number_in(value, *HIRES_SCALE):
        c.add(key, f"{value!r} must be none (no hi-res pass) or a number from "
              f"{HIRES_SCALE[0]} to {HIRES_SCALE[1]}")


def hires_strength(c: Collector, key: str, value, seen: Levels | None = None) -> None:
    if not number_in(value, 0.0, 1.0) or value == 0:
        c.add(key, f"{value!r} must be a number in (0, 1]")


def lora_path(c: Collector, key: str, value, seen: Levels | None = None) -> None:
    if not is_off(value) and (problem := check_lora(str(value))):
        c.add(key, problem)


def lora_scale(c: Collector, key: str, value, seen: Levels | None = None) -> None:
    if not number_in(value, -10.0, 10.0):
        c.add(key, f"{value!r} must be a number from -10 to 10")


def prompt_field(field: str):
    def check(c: Collector, key: str, value, seen: Levels) -> None:
        for problem in P.check_options(P.PromptOptions(**{field: str(value)})):
            c.add(key, problem.split(": ", 1)[1])

    return check
