"""Compaction of a run's result parts while it runs: a base-16 merge policy.

Every unit's rows are one part of level 0. When the newest `FANOUT` (16) parts are of one level,
they are merged into one part of the next level (`maintain`, after every unit's part), named by
the span of numbers it replaces (`layout.merged_part_name`), so it sorts where its inputs were.
A run of N units then holds, of each level k, as many parts as N's k-th base-16 digit
(`structure`): at most 15 per level, 25 parts at 250,000 units, and each row is rewritten once per
level, about log16(N) times. At the end of a run `compact` merges each stretch of neighbouring
parts into one when the folder holds many (`min_parts`).

Kill at any moment: a merged part is written atomically and its folder synced before any of its
inputs is deleted, so a kill in between leaves duplicates, never a loss (readers dedupe them), and
the next `recover` deletes the inputs a merged part covers. Inside a merged part each task keeps
the row readers would pick (a finished row over an error, then the later row), and the part sorts
where its inputs were, so readers pick the same rows after any merge.

Only neighbours are merged, and only parts of one provenance (META_KEY in the schema metadata)
that are ours (task_id and status, a task id on every row) and readable. Any other part (a
foreign or damaged file, a part of another provenance) stays where it is, and no merge reaches
across it. The store hands in its atomic writer and its folder sync.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .layout import merged_part_name, part_files, part_span
from .read import DONE_STATUSES, RESULT_KEYS
from .schema import META_KEY
from .storage import location, parquet_file

FANOUT = 16
DAMAGED = (pa.ArrowInvalid, pa.ArrowTypeError, OSError)  # such a part is left where it is
WriteTable = Callable[[Path, pa.Table], None]
SyncDir = Callable[[Path], None]


class Part(NamedTuple):
    path: Path
    first: int
    last: int
    level: int


def structure(units: int, fanout: int = FANOUT) -> list[tuple[int, int, int]]:
    """(first, last, level) of every part the policy leaves after `units` unit parts numbered
    0..units-1 of one provenance: N's base-16 digits, the highest level first."""
    out, start, level = [], 0, 0
    while fanout ** (level + 1) <= units:
        level += 1
    for k in range(level, -1, -1):
        size = fanout ** k
        for _ in range((units - start) // size):
            out.append((start, start + size - 1, k))
            start += size
    return out


def parts(folder: Path) -> list[Part]:
    """The numbered parts of a folder in the order readers take them."""
    return [Part(p, *span) for p in part_files(folder) if (span := part_span(p.name))]


def _footer(path: Path) -> tuple[bytes, pa.Schema] | None:
    """(provenance, schema) of a part that may be merged; None for one that is not ours or
    cannot be read."""
    try:
        with parquet_file(path) as pf:
            schema = pf.schema_arrow
    except DAMAGED:
        return None
    if any(c not in schema.names for c in RESULT_KEYS):
        return None
    return (schema.metadata or {}).get(META_KEY.encode(), b""), schema


def _table(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    try:
        with parquet_file(path) as pf:
            table = pf.read(columns=columns)
    except DAMAGED:
        return None
    return None if table["task_id"].null_count else table


def _fits(merged: pa.Schema | None, schema: pa.Schema) -> pa.Schema | None:
    """The unified schema, or None when the part's columns cannot join the others'."""
    try:
        return schema if merged is None else pa.unify_schemas([merged, schema],
                                                              promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def winners(table: pa.Table) -> pa.Table:
    """One row per task, the one readers pick: a finished row over an error, then the later
    row; in the order they were written."""
    n = table.num_rows
    done = pc.fill_null(pc.is_in(table["status"], value_set=pa.array(DONE_STATUSES)), False)
    key = pa.array(np.asarray(done, dtype=np.int64) * n + np.arange(n))
    best = pa.table({"task_id": table["task_id"], "key": key}).group_by("task_id").aggregate(
        [("key", "max")])["key_max"].to_numpy()
    return table.take(np.sort(best % n)) if len(best) < n else table


def _merge(folder: Path, group: list[Part], tables: list[pa.Table], meta: bytes,
           write_table: WriteTable, sync: SyncDir) -> Path:
    table = winners(pa.concat_tables(tables, promote_options="permissive"))
    table = table.replace_schema_metadata({META_KEY.encode(): meta} if meta else None)
    target = folder / merged_part_name(group[0].first, group[-1].last,
                                       max(p.level for p in group) + 1)
    write_table(target, table)
    sync(folder)  # the merged part is on disk before any input goes
    for p in group:
        p.path.unlink(missing_ok=True)
    sync(folder)
    return target


def _full_tail(folder: Path) -> tuple[list[Part], list[pa.Table], bytes] | None:
    """The newest FANOUT parts when they are of one level and may be merged together."""
    found = parts(folder)
    if len(found) < FANOUT:
        return None
    tail = found[-FANOUT:]
    if any(p.level != tail[-1].level for p in tail):  # the cheap check: names only
        return None
    metas, merged = set(), None
    for p in tail:
        footer = _footer(p.path)
        merged = _fits(merged, footer[1]) if footer else None
        if merged is None:
            return None
        metas.add(footer[0])
    if len(metas) > 1:
        return None
    tables = [_table(p.path) for p in tail]
    return None if any(t is None for t in tables) else (tail, tables, metas.pop())


def maintain(folder: Path, write_table: WriteTable, sync: SyncDir) -> int:
    """Merge the newest parts while FANOUT of one level are at the end; the merges made."""
    merges = 0
    while (full := _full_tail(location(folder))) is not None:
        _merge(location(folder), *full, write_table, sync)
        merges += 1
    return merges


def recover(folder: Path, sync: SyncDir) -> list[str]:
    """Delete what a merge killed before deleting its inputs left: parts whose span lies inside
    a higher-level part's, of its provenance, whose tasks it all holds. Returns their names."""
    folder = location(folder)
    found = parts(folder)
    gone: list[str] = []
    for m in (p for p in found if p.level > 0):
        inside = [p for p in found if p.level < m.level and m.first <= p.first
                  and p.last <= m.last and p.path.exists()]
        cover = _footer(m.path) if inside else None
        ids = _table(m.path, ["task_id"]) if cover else None
        for p in inside if ids is not None else []:
            footer, table = _footer(p.path), _table(p.path, ["task_id"])
            if footer and table is not None and footer[0] == cover[0] and pc.all(
                    pc.is_in(table["task_id"], value_set=ids["task_id"].combine_chunks())).as_py():
                p.path.unlink(missing_ok=True)
                gone.append(p.path.name)
    if gone:
        sync(folder)
    return gone


def compact(folder: Path, write_table: WriteTable, sync: SyncDir, min_parts: int) -> int:
    """When the folder holds `min_parts` numbered parts or more, merge each stretch of
    neighbouring parts that may be merged together into one; the merges made."""
    folder = location(folder)
    recover(folder, sync)
    found = parts(folder)
    if len(found) < min_parts:
        return 0
    merges = 0
    stretch: list[tuple[Part, pa.Table]] = []
    meta, merged = None, None

    def flush() -> int:
        if len(stretch) < 2:
            return 0
        _merge(folder, [p for p, _ in stretch], [t for _, t in stretch], meta, write_table, sync)
        return 1

    for p in found:
        footer = _footer(p.path)
        table = _table(p.path) if footer else None
        joined = _fits(merged, footer[1]) if table is not None else None
        if joined is None or footer[0] != meta:
            merges += flush()
            stretch = []
            meta, merged = (footer[0], footer[1]) if table is not None else (None, None)
            if table is None:
                continue
        else:
            merged = joined
        stretch.append((p, table))
    return merges + flush()
