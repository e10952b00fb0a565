"""Pure sweep expansion: JobSpec + prompt set -> Tasks (one per image) -> Units (batches).

Order is deterministic: prompt-set entries, then grid combinations (last axis fastest), then
zip positions, then seeds. `task_id` is a content hash of everything that determines the image.
The Task fields that axes set, which of them split units and how each enters the task id come
from the axes table (`axes.py`).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import itertools
import json
import operator
import random
from typing import Iterable, Iterator

from . import prompts as P
from .axes import FIELDS, UNIT_FIELDS, task_identity, task_settings
from .job import JobSpec
from .prompt_sets import PromptSet

# One image. Immutable like a frozen dataclass, but a named tuple, which is much cheaper to
# create (BENCHMARKS.md, Scale: the plan holds a million of them). The fields up to `axes` are
# the task's own; the rest are set by axes (axes.FIELDS) and default to the table's defaults.
TASK_FIELDS = ("task_id", "index", "prompt_key", "subject", "character", "series", "prompt",
               "negative_prompt", "content_prompt", "seed",
               "axes",  # ((axis name, declared level), ...)
               "quality_preset", "style_preset",  # demo-app display names, for the PNG metadata
               *FIELDS)  # model (config name), sampler (job key), steps, cfg, ..., loras
Task = collections.namedtuple("Task", TASK_FIELDS,
                              defaults=(None, None, *(f.default for f in FIELDS.values())))
# Tasks sharing every field that splits units (model, sampler, steps, cfg, size, hi-res pass,
# LoRAs, ...): one batch.
Unit = collections.namedtuple("Unit", ("unit_id", *UNIT_FIELDS, "tasks"))
_AT = {name: i for i, name in enumerate(Task._fields)}  # field positions, derived once
_UNIT_KEY = operator.itemgetter(*(_AT[f] for f in UNIT_FIELDS))
_MODEL_IN_KEY = UNIT_FIELDS.index("model")


def _combinations(spec: JobSpec) -> Iterator[dict]:
    grid_axes = [a for a, _ in spec.sweep.grid]
    zip_axes = [a for a, _ in spec.sweep.zip]
    zip_rows = list(zip(*(v for _, v in spec.sweep.zip))) if spec.sweep.zip else [()]
    for combo in itertools.product(*(v for _, v in spec.sweep.grid)):
        for row in zip_rows:
            yield dict(zip(grid_axes, combo)) | dict(zip(zip_axes, row))


def task_key(prompt: str, negative: str, fields: dict, identities: dict) -> str:
    """Canonical JSON of a task without its seed (the seed is appended when hashing): the final
    prompt and negative and each axis field's identity (the model's and LoRAs' by content)."""
    return json.dumps({"prompt": prompt, "negative_prompt": negative,
                       **task_identity(fields, identities)}, sort_keys=True, ensure_ascii=False)


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
    cyclic): its repeated passes would otherwise take a large share of the time (BENCHMARKS.md,
    Scale)."""
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
    task_id_at, index_at, seed_at = _AT["task_id"], _AT["index"], _AT["seed"]
    combos = list(_combinations(spec))
    chosen = sample_positions(spec, len(prompt_set.entries), len(combos))
    all_seeds = list(range(len(spec.sweep.seeds)))
    base_opts = spec.prompt.__dict__
    built_cache: dict = {}
    settings: dict[int, dict] = {}  # per combination: the same for every entry
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
            fields = settings.get(c)
            if fields is None:
                fields = settings[c] = task_settings(spec, levels)
            key = task_key(built.prompt, built.negative, fields, identities)
            row = [None] * len(_AT)
            for name, value in {"prompt_key": entry.key, "subject": entry.subject,
                                "character": entry.character, "series": entry.series,
                                "prompt": built.prompt, "negative_prompt": built.negative,
                                "content_prompt": built.content, "axes": tuple(levels.items()),
                                "quality_preset": preset_name, "style_preset": style_name,
                                **fields}.items():
                row[_AT[name]] = value
            n = len(tasks)
            for i, (tid, seed) in enumerate(zip(_seeded_ids(key, seeds), seeds)):
                row[task_id_at], row[index_at], row[seed_at] = tid, n + i, seed
                tasks.append(make(Task, row))
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
    """Group tasks by the fields that split units (model, sampler, steps, cfg, size, hi-res
    pass, LoRAs, ...), models first, chunk by batch_size.

    Groups keep the order in which they first appear; a task keeps its expansion order inside
    its group, so the same pending tasks always give the same units.
    """
    with _bulk_allocation():
        return _units(tasks, batch_size)


def _units(tasks: Iterable[Task], batch_size: int) -> list[Unit]:
    groups: dict[tuple, list[Task]] = {}
    model_rank: dict[str, int] = {}
    for t in tasks:
        key = _UNIT_KEY(t)
        members = groups.get(key)
        if members is None:
            model_rank.setdefault(key[_MODEL_IN_KEY], len(model_rank))
            members = groups[key] = []
        members.append(t)
    out = []
    for key in sorted(groups, key=lambda k: model_rank[k[_MODEL_IN_KEY]]):
        members = groups[key]
        for i in range(0, len(members), batch_size):
            chunk = tuple(members[i : i + batch_size])
            # each task is in exactly one unit: its first task and size identify it
            out.append(Unit._make((f"{chunk[0].task_id}x{len(chunk)}", *key, chunk)))
    return out
