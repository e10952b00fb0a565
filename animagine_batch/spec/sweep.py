"""Pure sweep expansion: JobSpec + prompt set -> Tasks (one per image) -> Units (batches).

Order is deterministic: prompt-set entries, then grid combinations (last axis fastest), then
zip positions, then seeds. `task_id` is a content hash of everything that determines the image.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import operator
import random
from typing import Iterable, Iterator, NamedTuple

from . import prompts as P
from . import samplers
from .job import JobSpec, is_off, parse_size
from .loras import resolve
from .prompt_sets import PromptSet


class Task(NamedTuple):
    """One image. Immutable like a frozen dataclass, but a NamedTuple: a million of them are
    created in well under a second (a frozen dataclass costs ten times more per instance)."""

    task_id: str
    index: int
    model: str  # model config name
    prompt_key: str
    subject: str | None
    character: str | None
    series: str | None
    prompt: str
    negative_prompt: str
    content_prompt: str
    sampler: str  # job key, e.g. euler_a
    steps: int
    cfg: float
    width: int
    height: int
    seed: int
    axes: tuple[tuple[str, object], ...]  # (axis name, declared level)
    quality_preset: str | None = None  # demo-app display names, for the PNG metadata
    style_preset: str | None = None
    weighting: str = "a1111"  # a1111 | none
    hires: tuple[float, float, str] | None = None  # (scale, strength, upscaler) or off
    loras: tuple[tuple[str, float], ...] = ()  # (safetensors path, scale)


class Unit(NamedTuple):
    """Tasks sharing model, sampler, steps, cfg, size, hi-res pass and LoRAs: one batch."""

    unit_id: str
    model: str
    sampler: str
    steps: int
    cfg: float
    width: int
    height: int
    hires: tuple[float, float, str] | None
    loras: tuple[tuple[str, float], ...]
    tasks: tuple[Task, ...]


def _combinations(spec: JobSpec) -> Iterator[dict]:
    grid_axes = [a for a, _ in spec.sweep.grid]
    zip_axes = [a for a, _ in spec.sweep.zip]
    zip_rows = list(zip(*(v for _, v in spec.sweep.zip))) if spec.sweep.zip else [()]
    for combo in itertools.product(*(v for _, v in spec.sweep.grid)):
        for row in zip_rows:
            yield dict(zip(grid_axes, combo)) | dict(zip(zip_axes, row))


def _settings(spec: JobSpec, levels: dict) -> dict:
    gen = spec.generation
    out = {
        "model": str(levels.get("model", spec.model.name)),
        "sampler": samplers.get(levels.get("sampler", gen.sampler)).key,
        "steps": int(levels.get("steps", gen.steps)),
        "cfg": float(levels.get("cfg", gen.cfg)),
        "width": int(levels.get("width", gen.width)),
        "height": int(levels.get("height", gen.height)),
    }
    if "size" in levels:
        out["width"], out["height"] = parse_size(levels["size"])
    hires = spec.hires
    scale = levels.get("hires.scale", hires.scale)
    out["hires"] = None if is_off(scale) else (
        float(scale), float(levels.get("hires.strength", hires.strength)), hires.upscaler)
    loras = [(resolve(lo.path), lo.scale) for lo in spec.loras]
    if "lora.path" in levels or "lora.scale" in levels:
        first = loras[0] if loras else (None, 1.0)
        path = levels.get("lora.path", first[0])
        path = None if is_off(path) else resolve(str(path))
        first = (path, float(levels.get("lora.scale", first[1])))
        loras = [first, *loras[1:]] if loras else [first]
    out["loras"] = tuple(lo for lo in loras if lo[0] is not None)
    return out


def task_key(model_identity: str, prompt: str, negative: str, s: dict, weighting: str = "a1111",
             lora_ids: dict | None = None) -> str:
    """Canonical JSON of a task without its seed (the seed is appended when hashing). LoRAs
    enter by content hash (`lora_ids` maps paths to identities) and scale."""
    sampler = samplers.get(s["sampler"])
    hires = s.get("hires")
    return json.dumps(
        {
            "model": model_identity,
            "prompt": prompt,
            "negative_prompt": negative,
            "width": s["width"],
            "height": s["height"],
            "steps": s["steps"],
            "cfg": s["cfg"],
            "sampler": [sampler.name, sampler.scheduler, dict(sampler.settings)],
            "hires": None if hires is None else {
                "scale": hires[0], "strength": hires[1], "upscaler": hires[2]},
            "weighting": weighting,
        } | ({"loras": [[(lora_ids or {}).get(p, p), sc] for p, sc in s["loras"]]}
             if s.get("loras") else {}),
        sort_keys=True,
        ensure_ascii=False,
    )


def task_id(key: str, seed: int) -> str:
    """First 16 hex of sha256(canonical settings JSON + `|seed=N`)."""
    return hashlib.sha256(f"{key}|seed={seed}".encode()).hexdigest()[:16]


def _seeded_ids(key: str, seeds) -> list[str]:
    """`task_id(key, s)` for many seeds: the key's hash state is computed once and copied."""
    state = hashlib.sha256(key.encode())
    out = []
    for seed in seeds:
        h = state.copy()
        h.update(b"|seed=%d" % seed)
        out.append(h.hexdigest()[:16])
    return out


def sample_positions(spec: JobSpec, n_entries: int, n_combos: int) -> dict | None:
    """With `sweep.sample: N`, the (entry, combination) -> seed positions of a seeded random
    subset of N tasks of the full product; None when the whole sweep runs. The subset depends on
    the sweep and its base seed only, so rerunning a job draws the same tasks."""
    if not spec.sweep.sample:
        return None
    n_seeds = len(spec.sweep.seeds)
    total = n_entries * n_combos * n_seeds
    rng = random.Random(f"animagine-batch|sample|{spec.sweep.sample_seed}|{total}")
    chosen: dict = {}
    for flat in sorted(rng.sample(range(total), min(spec.sweep.sample, total))):
        rest, seed_pos = divmod(flat, n_seeds)
        chosen.setdefault(divmod(rest, n_combos), []).append(seed_pos)
    return chosen


@contextlib.contextmanager
def _bulk_allocation():
    """Pause the cyclic garbage collector while creating a million small tuples (none of them
    cyclic): its repeated passes would otherwise take about 40% of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def expand(spec: JobSpec, prompt_set: PromptSet, identities: dict[str, str]) -> list[Task]:
    """Every task of the job (or its seeded random sample). `identities` maps model config names
    to their identity strings (hub id + revision, file hash, ...; see models.identity) and
    `lora:<path>` to a LoRA file's identity."""
    with _bulk_allocation():
        return _expand(spec, prompt_set, identities)


def _expand(spec: JobSpec, prompt_set: PromptSet, identities: dict[str, str]) -> list[Task]:
    tasks: list[Task] = []
    make = tuple.__new__  # Task(...) without argument parsing: a million times faster matters
    combos = list(_combinations(spec))
    chosen = sample_positions(spec, len(prompt_set.entries), len(combos))
    all_seeds = list(range(len(spec.sweep.seeds)))
    base_opts = spec.prompt.__dict__
    built_cache: dict = {}
    for e, entry in enumerate(prompt_set.entries):
        for c, levels in enumerate(combos):
            positions = all_seeds if chosen is None else chosen.get((e, c))
            if not positions:
                continue
            seeds = [spec.sweep.seeds[i] for i in positions]
            opts = {k: str(levels.get(k, v)) for k, v in base_opts.items()}
            ck = (entry.key, tuple(sorted(opts.items())))
            built = built_cache.get(ck)
            if built is None:
                o = P.PromptOptions(**opts)
                preset, style = P.resolve_preset("preset", o.preset), P.resolve_preset("style", o.style)
                built = built_cache[ck] = (P.build(entry, o), preset and preset.name,
                                           style and style.name)
            built, preset_name, style_name = built
            s = _settings(spec, levels)
            lora_ids = {p: identities.get(f"lora:{p}", p) for p, _ in s["loras"]}
            key = task_key(identities[s["model"]], built.prompt, built.negative, s,
                           opts["weighting"], lora_ids)
            head = (s["model"], entry.key, entry.subject, entry.character, entry.series,
                    built.prompt, built.negative, built.content, s["sampler"], s["steps"],
                    s["cfg"], s["width"], s["height"])
            tail = (tuple(levels.items()), preset_name, style_name, opts["weighting"],
                    s["hires"], s["loras"])
            n = len(tasks)
            tasks.extend(make(Task, (tid, n + i, *head, seed, *tail))
                         for i, (tid, seed) in enumerate(zip(_seeded_ids(key, seeds), seeds)))
    return _unique(tasks)


def _unique(tasks: list[Task]) -> list[Task]:
    """Drop repeats of a task: axes that only matter together (hires.strength with the hi-res
    pass off, lora.scale without a LoRA) make the same image twice. The first one is kept."""
    if len({t.task_id for t in tasks}) == len(tasks):
        return tasks
    seen: set[str] = set()
    out = []
    for t in tasks:
        if t.task_id not in seen:
            seen.add(t.task_id)
            out.append(t._replace(index=len(out)))
    return out


def units(tasks: Iterable[Task], batch_size: int) -> list[Unit]:
    """Group tasks by (model, sampler, steps, cfg, size, hi-res pass, LoRAs), models first,
    chunk by batch_size.

    Groups keep the order in which they first appear; a task keeps its expansion order inside
    its group, so the same pending tasks always give the same units.
    """
    with _bulk_allocation():
        return _units(tasks, batch_size)


def _units(tasks: Iterable[Task], batch_size: int) -> list[Unit]:
    groups: dict[tuple, list[Task]] = {}
    model_rank: dict[str, int] = {}
    # model, sampler, steps, cfg, width, height, hires, loras
    group_key = operator.itemgetter(2, 10, 11, 12, 13, 14, 20, 21)
    for t in tasks:
        key = group_key(t)
        members = groups.get(key)
        if members is None:
            model_rank.setdefault(key[0], len(model_rank))
            members = groups[key] = []
        members.append(t)
    out = []
    for key in sorted(groups, key=lambda k: model_rank[k[0]]):
        members = groups[key]
        for i in range(0, len(members), batch_size):
            chunk = tuple(members[i : i + batch_size])
            # each task is in exactly one unit: its first task and size identify it
            out.append(Unit(f"{chunk[0].task_id}x{len(chunk)}", *key, chunk))
    return out
