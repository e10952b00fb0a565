"""The results and scores schemas: every part of a run is written through one of them.

Results (`results/part-*.parquet`): the contract's head columns, one column per sweep axis, the
tail columns, then the scorers' columns; the provenance goes into the schema metadata. Scores
(`scores/<scorer>/part-*.parquet`): `task_id`, the scorer's columns and the hash of its config.
"""

from __future__ import annotations

import json

import pyarrow as pa

from ..jobspec.axes import PAIRED, column_type

META_KEY = "animagine_batch"  # the schema-metadata key of the provenance JSON
TYPES = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
         "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_(),
         "list<string>": pa.list_(pa.string()), "binary": pa.binary()}

# The results-table contract (DESIGN.md); axis and scorer columns are added per job. Settings a
# user writes as decimals (cfg, the hi-res scale and strength) are float64, so they read back as
# written (0.55, not float32's 0.550000011920929) and compare equal to the numbers in a query.
HEAD_COLUMNS = [
    ("task_id", "string"), ("job", "string"), ("model", "string"), ("model_name", "string"),
    ("prompt_key", "string"), ("subject", "string"), ("character", "string"),
    ("series", "string"), ("prompt", "string"), ("negative_prompt", "string"),
    ("content_prompt", "string"), ("sampler", "string"), ("steps", "int32"), ("cfg", "float64"),
    ("width", "int32"), ("height", "int32"), ("seed", "int64"), ("weighting", "string"),
    ("hires_scale", "float64"), ("hires_strength", "float64"), ("loras", "string"),
]
TAIL_COLUMNS = [
    ("prompt_tokens", "int32"), ("image_path", "string"), ("image_sha256", "string"),
    ("status", "string"), ("error", "string"), ("gen_seconds", "float64"), ("worker", "string"),
]
FIXED = {name for name, _ in HEAD_COLUMNS + TAIL_COLUMNS}
# What analysis matches tasks on in any run, besides its sweep axes: the prompt-set entry, the
# seed and every axis with a contract column (the axes table's `pairs`), in column order.
PAIRED_COLUMNS = [c for c, _ in HEAD_COLUMNS if c in {"prompt_key", "seed", *PAIRED}]


def axis_type(levels, axis: str) -> str:
    """Arrow type name of an axis column (the axes table's rule)."""
    return column_type(axis, levels)


def with_provenance(schema: pa.Schema, provenance: dict) -> pa.Schema:
    return schema.with_metadata({META_KEY: json.dumps(provenance, sort_keys=True)})


def results_schema(axes: dict[str, str], scorer_columns: dict[str, str],
                   provenance: dict | None = None) -> pa.Schema:
    cols = list(HEAD_COLUMNS)
    cols += [(a, t) for a, t in axes.items() if a not in FIXED]
    cols += TAIL_COLUMNS + list(scorer_columns.items())
    schema = pa.schema([pa.field(n, TYPES[t]) for n, t in cols])
    return with_provenance(schema, provenance) if provenance else schema


def scores_schema(columns: dict[str, str], provenance: dict) -> pa.Schema:
    """A rescoring part: task_id, the scorer's columns, `scorer_config` (its config hash)."""
    fields = [pa.field("task_id", pa.string())]
    fields += [pa.field(c, TYPES[t]) for c, t in columns.items()]
    fields.append(pa.field("scorer_config", pa.string()))
    return with_provenance(pa.schema(fields), provenance)
