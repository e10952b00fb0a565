"""Pure sweep expansion: JobSpec + prompt set -> Tasks (one per image) -> Units (batches).

Order is deterministic: prompt-set entries, then grid combinations (last axis fastest), then
zip positions, then seeds. `task_id` is a content hash of everything that determines the image.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Iterable, Iterator

from . import prompts as P
from . import samplers
from .config import JobSpec, parse_size

WEIGHTING = "none"  # prompt-weighting mode; part of the task id


@dataclass(frozen=True, slots=True)
class Task:
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


@dataclass(frozen=True, slots=True)
class Unit:
    """Tasks sharing model, sampler, steps, cfg and size: one pipeline call."""

    unit_id: str
    model: str
    sampler: str
    steps: int
    cfg: float
    width: int
    height: int
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
    return out


def task_key(model_identity: str, prompt: str, negative: str, s: dict) -> str:
    """Canonical JSON of a task without its seed (the seed is appended when hashing)."""
    sampler = samplers.get(s["sampler"])
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
            "hires": None,
            "weighting": WEIGHTING,
        },
        sort_keys=True,
        ensure_ascii=False,
    )


def task_id(key: str, seed: int) -> str:
    return hashlib.sha256(f"{key}|seed={seed}".encode()).hexdigest()[:16]


def expand(spec: JobSpec, prompt_set: P.PromptSet, identities: dict[str, str]) -> list[Task]:
    """Every task of the job. `identities` maps model config names to their identity strings
    (hub id + revision, file hash, ...; see models.identity)."""
    tasks: list[Task] = []
    combos = list(_combinations(spec))
    base_opts = spec.prompt.__dict__
    built_cache: dict = {}
    for entry in prompt_set.entries:
        for levels in combos:
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
            key = task_key(identities[s["model"]], built.prompt, built.negative, s)
            axes = tuple(levels.items())
            for seed in spec.sweep.seeds:
                tasks.append(Task(
                    task_id=task_id(key, seed), index=len(tasks), model=s["model"],
                    prompt_key=entry.key, subject=entry.subject, character=entry.character,
                    series=entry.series, prompt=built.prompt, negative_prompt=built.negative,
                    content_prompt=built.content, sampler=s["sampler"], steps=s["steps"],
                    cfg=s["cfg"], width=s["width"], height=s["height"], seed=seed, axes=axes,
                    quality_preset=preset_name, style_preset=style_name,
                ))
    return tasks


def units(tasks: Iterable[Task], batch_size: int) -> list[Unit]:
    """Group tasks by (model, sampler, steps, cfg, size), models first, chunk by batch_size.

    Groups keep the order in which they first appear; a task keeps its expansion order inside
    its group, so the same pending tasks always give the same units.
    """
    groups: dict[tuple, list[Task]] = {}
    model_rank: dict[str, int] = {}
    for t in tasks:
        model_rank.setdefault(t.model, len(model_rank))
        groups.setdefault((t.model, t.sampler, t.steps, t.cfg, t.width, t.height), []).append(t)
    out = []
    for key in sorted(groups, key=lambda k: model_rank[k[0]]):
        members = groups[key]
        for i in range(0, len(members), batch_size):
            chunk = tuple(members[i : i + batch_size])
            uid = hashlib.sha256("".join(t.task_id for t in chunk).encode()).hexdigest()[:16]
            out.append(Unit(uid, *key, tasks=chunk))
    return out
