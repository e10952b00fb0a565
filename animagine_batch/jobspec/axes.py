"""The axes table: every setting a sweep can vary is one row of `AXES`, and every Task field an
axis sets is one row of `FIELDS`.

An axis row says how its levels are checked (`check`), which job setting gives its value when
it is not swept (`settings`, the first one; a `size` level replaces two), which Task field it
sets and how a level becomes that field's value, whether tasks of different levels go into
different units (`splits_units`: one pipeline call per unit), whether analysis matches tasks on
it even in a run that does not sweep it (`pairs`: it has a column of the contract), and its
results column (`column`: `head` for a contract column, `levels` for a column named after the
axis and typed by its levels, `text` for one that is always text with `none` for off).

A field row says its default and how it enters a task id (`identity`, left out where `omit`
says so) and the image's infotext (`infotext`). Validation, expansion, unit grouping, row
building, the infotext and analysis pairing all read these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import level_checks as L
from . import prompts as P
from . import samplers
from .collect import Collector
from .level_checks import Levels
from .loras import resolve
from .values import cfg_cutoff_off, is_off, parse_size


def _same(level):
    return level


@dataclass(frozen=True)
class Axis:
    name: str  # as written in sweep.grid / sweep.zip, and the name of its results column
    check: Callable  # (collector, key, level, Levels) -> adds the level's problems
    settings: tuple[str, ...]  # the job settings it replaces (the first gives its default)
    fields: tuple[str, ...]  # the Task fields it sets ("prompt": the prompt built for the task)
    value: Callable = _same  # a level (or the setting) as the fields' value
    splits_units: bool = False
    pairs: bool = False
    column: str = "levels"  # head | levels | text
    default: object = None  # of its setting, where this table defines the setting
    off: Callable = is_off  # a `text` column's level that switches the axis off (`none`)
    recorded: bool = False  # its column is also written when not swept but set (not default)


AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("model", L.model, ("model.name",), ("model",), str, True, True, "head"),
    Axis("sampler", L.sampler, ("generation.sampler",), ("sampler",),
         lambda v: samplers.get(v).key, True, True, "head", "euler_a"),
    Axis("steps", L.steps, ("generation.steps",), ("steps",), int, True, True, "head", 28),
    Axis("cfg", L.cfg, ("generation.cfg",), ("cfg",), float, True, True, "head", 7.0),
    Axis("width", L.side, ("generation.width",), ("width",), int, True, True, "head", 832),
    Axis("height", L.side, ("generation.height",), ("height",), int, True, True, "head", 1216),
    Axis("size", L.size, ("generation.width", "generation.height"), ("width", "height"),
         parse_size, True),
    # webui's Clip skip: the text encoders' hidden states N layers from the end (1: the last);
    # 2 is SDXL's own conditioning (the penultimate layer)
    Axis("clip_skip", L.clip_skip, ("generation.clip_skip",), ("clip_skip",), int, True,
         default=2),
    # a speed option that changes images: no CFG (half the UNet batch) after this fraction of
    # the steps (diffusers' SDXLCFGCutoffCallback); none or 0 = CFG for every step
    Axis("cfg_cutoff", L.cfg_cutoff, ("generation.cfg_cutoff",), ("cfg_cutoff",),
         lambda v: None if cfg_cutoff_off(v) else float(v), True, column="text",
         off=cfg_cutoff_off, recorded=True),
    Axis("hires.scale", L.hires_scale, ("hires.scale",), ("hires",), splits_units=True,
         column="text"),
    Axis("hires.strength", L.hires_strength, ("hires.strength",), ("hires",), float, True,
         column="text"),
    Axis("lora.path", L.lora_path, ("loras[0].path",), ("loras",),
         lambda v: None if is_off(v) else resolve(str(v)), True, column="text"),
    Axis("lora.scale", L.lora_scale, ("loras[0].scale",), ("loras",), float, True, column="text"),
    *(Axis(f, L.prompt_field(f), (f"prompt.{f}",), (f,) if f == "weighting" else ("prompt",),
           str) for f in P.PROMPT_FIELDS),
)}
# The generation section holds the settings of the axes above that live in it, and batch_size.
GENERATION = {a.settings[0].split(".", 1)[1]: a.default for a in AXES.values()
              if a.settings[0].startswith("generation.") and len(a.settings) == 1}


def setting(spec, path: str):
    """A job setting of a JobSpec by its key (`generation.cfg`, `loras[0].scale`); None when it
    is not set (no LoRA)."""
    node = spec
    for part in path.replace("[", ".[").split("."):
        if node is None:
            break
        if part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if len(node) > index else None
        else:
            node = getattr(node, part)
    return node


def _hires(values: dict, spec):
    scale = values.get("hires.scale")
    return None if is_off(scale) else (float(scale), float(values["hires.strength"]),
                                       spec.hires.upscaler)


def _loras(values: dict, spec):
    """The job's LoRAs, the first one's path and scale as the lora axes set them."""
    rest = [(resolve(lo.path), lo.scale) for lo in spec.loras[1:]]
    first = (values.get("lora.path"), values.get("lora.scale", 1.0))
    return tuple(lo for lo in [first, *rest] if lo[0] is not None)


def _sampler_identity(key: str, ids: dict):
    s = samplers.get(key)
    return [s.name, s.scheduler, dict(s.settings)]


def _hires_identity(hires, ids: dict):
    return None if hires is None else {"scale": hires[0], "strength": hires[1],
                                       "upscaler": hires[2]}


def _as_is(value, ids: dict):
    return value


@dataclass(frozen=True)
class Field:
    """A Task field that axes set."""

    name: str
    default: object = None
    identity: Callable = _as_is  # (value, identities) -> its part of the task id
    omit: Callable = lambda value: False  # noqa: E731 - leave it out of the task id
    build: Callable | None = None  # (axis values, spec) -> value, for a field of several axes
    infotext: str | None = None  # its webui infotext key, written when not at its default


FIELDS: dict[str, Field] = {f.name: f for f in (
    Field("model", identity=lambda v, ids: ids[v]),  # config name; its identity in the id
    Field("sampler", AXES["sampler"].default, _sampler_identity),
    *(Field(n, AXES[n].default) for n in ("steps", "cfg", "width", "height")),
    Field("weighting", P.PromptOptions.weighting),
    Field("clip_skip", 2, omit=lambda v: v == 2, infotext="Clip skip"),  # in ids when not 2
    Field("cfg_cutoff", None, omit=lambda v: v is None, infotext="CFG cutoff"),  # in ids when on
    Field("hires", None, _hires_identity, build=_hires),  # (scale, strength, upscaler) or off
    Field("loras", (), lambda v, ids: [[ids.get(f"lora:{p}", p), s] for p, s in v],
          omit=lambda v: not v, build=_loras),  # ((safetensors path, scale), ...)
)}
# Task fields that split units, in the order units are grouped by (the model first)
UNIT_FIELDS = tuple(dict.fromkeys(f for a in AXES.values() if a.splits_units for f in a.fields))
# Contract columns analysis matches tasks on in any run, besides the prompt entry and the seed
PAIRED = tuple(a.name for a in AXES.values() if a.pairs)


def task_settings(spec, levels: dict) -> dict:
    """The Task fields of one combination of axis levels; what is not swept comes from the job."""
    values: dict = {}
    for a in AXES.values():
        if "prompt" in a.fields:
            continue
        if a.name in levels:
            values[a.name] = a.value(levels[a.name])
        elif len(a.fields) == 1 and (raw := setting(spec, a.settings[0])) is not None:
            values[a.name] = a.value(raw)
    out: dict = {}
    for a in AXES.values():  # in table order: a size level replaces width and height
        if a.name in values and not FIELDS[a.fields[0]].build:
            out.update(zip(a.fields, values[a.name] if len(a.fields) > 1 else (values[a.name],)))
    out |= {f.name: f.build(values, spec) for f in FIELDS.values() if f.build}
    return {f: out.get(f, FIELDS[f].default) for f in FIELDS} | out  # unset (cfg_cutoff: null)


def task_identity(fields: dict, identities: dict) -> dict:
    """The part of a task id the axes' fields give: {field: identity}, omitted ones left out."""
    return {f.name: f.identity(fields[f.name], identities) for f in FIELDS.values()
            if not f.omit(fields[f.name])}


def column_type(axis: str, levels) -> str:
    """Arrow type name of an axis's results column from its declared levels. `text` axes
    (hi-res, LoRA) are always text: `none` (the pass off) stays a level analyses can group by,
    and a resumed run that adds `none` to the levels keeps the column's type."""
    if AXES[axis].column == "text":
        return "string"
    if all(isinstance(v, bool) for v in levels):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in levels):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
        return "float64"
    return "string"


def row_value(axis: str, level):
    """An axis level as its results column holds it (`none` for an optional pass that is off)."""
    a = AXES[axis]
    return "none" if a.column == "text" and a.off(level) else level


def recorded(spec) -> dict:
    """{axis: the job's setting} for the `recorded` axes that are not swept and set to other
    than their default: their columns are written too."""
    return {a.name: value for a in AXES.values() if a.recorded and a.name not in spec.sweep.axes
            and (value := setting(spec, a.settings[0])) is not None and not a.off(value)}


def check_levels(c: Collector, sweep, known_models: dict, sizes: list) -> None:
    """Every level of every swept axis, by key (`sweep.grid.cfg[1]`)."""
    seen = Levels(known_models, sizes)
    for axis, levels in sweep.grid + sweep.zip:
        group = "grid" if (axis, levels) in sweep.grid else "zip"
        for i, v in enumerate(levels):
            AXES[axis].check(c, f"sweep.{group}.{axis}[{i}]", v, seen)
