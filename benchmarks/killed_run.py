"""The state a killed run leaves, for `scale.py`: built directly as the parts on disk.

`compacted`: what the base-16 compaction leaves after N one-unit parts (as many parts of each
level as N's base-16 digit, `rundir/compact.structure`; tests/test_compaction.py checks that the
policy leaves exactly that); `uncompacted`: N one-unit parts, what a run killed before its final
compaction left before parts were merged during the run. Rows carry the full results schema
(contract columns, one axis, two scores, the provenance), 4 per unit. `scale.py` times the
resume and `load_run` on them, each in a fresh process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from animagine_batch.rundir.compact import structure
from animagine_batch.rundir.layout import merged_part_name, part_name
from animagine_batch.rundir.schema import results_schema

BATCH = 4
SCORES = {"aesthetic_score": "float32", "clip_score": "float32"}


def schema() -> pa.Schema:
    return results_schema({"quality": "string"}, SCORES, {"package": "bench", "scorers": {}})


def rows(ids: list[str]) -> pa.Table:
    """Result rows for these task ids: plausible text and numbers in every column."""
    n = len(ids)
    rng = np.random.default_rng(0)
    i = np.arange(n)
    key = np.array([f"char{k:02d}" for k in range(66)], dtype=object)[i // 5 % 66]
    prompt = np.char.add(key.astype(str), ", 1girl, solo, looking at viewer, upper body, "
                         "masterpiece, best quality, very aesthetic, absurdres").astype(object)
    cols = {
        "task_id": ids, "job": ["scale"] * n, "model": ["animagine-xl-4.0"] * n,
        "model_name": ["animagine"] * n, "prompt_key": key, "subject": ["1girl"] * n,
        "character": key, "series": ["series"] * n, "prompt": prompt,
        "negative_prompt": ["lowres, bad anatomy, bad hands, text, error, worst quality"] * n,
        "content_prompt": key, "sampler": ["Euler a"] * n, "steps": np.full(n, 28, np.int32),
        "cfg": np.full(n, 5.0), "width": np.full(n, 832, np.int32),
        "height": np.full(n, 1216, np.int32), "seed": i.astype(np.int64),
        "weighting": ["a1111"] * n, "hires_scale": np.full(n, np.nan),
        "hires_strength": np.full(n, np.nan), "loras": [""] * n,
        "quality": np.array(["none", "masterpiece", "best quality"], dtype=object)[i % 3],
        "prompt_tokens": np.full(n, 31, np.int32),
        "image_path": [f"images/{t}.png" for t in ids],
        "image_sha256": [f"{t}{t}{t}{t}" for t in ids], "status": ["ok"] * n,
        "error": pa.nulls(n, pa.string()), "gen_seconds": rng.random(n) * 2 + 4,
        "worker": ["node-0:1234"] * n,
        "aesthetic_score": rng.random(n).astype(np.float32),
        "clip_score": (rng.random(n) * 40).astype(np.float32),
    }
    return pa.table(cols, schema=schema())


def build(run: Path, ids: list[str], units: int, compacted: bool) -> int:
    """Write the parts of `units` finished units (the first units * BATCH ids); their number."""
    results = run / "results"
    results.mkdir(parents=True)
    table = rows(ids[: units * BATCH])
    spans = structure(units) if compacted else [(u, u, 0) for u in range(units)]
    for first, last, level in spans:
        name = (merged_part_name(first, last, level) if level
                else part_name(first, f"{ids[first * BATCH]}x{BATCH}"))
        part = table.slice(first * BATCH, (last - first + 1) * BATCH)
        pq.write_table(part, results / name)
    return len(spans)
