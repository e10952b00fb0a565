"""The Hugging Face export: `data/train-NNNNN-of-MMMMM.parquet` with an `image` column as a
struct of bytes and path (the layout `datasets` reads as its Image feature, declared in the
file's `huggingface` metadata), the caption and every result and score column, every shard with
the types the run declared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ResultsError
from ..rundir.layout import all_parts
from ..rundir.read import EMBEDDING
from ..rundir.storage import read_schema
from .base import ExportJob
from .select import image_bytes


SCALAR = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64",
          pa.float32(): "float32", pa.float64(): "float64", pa.bool_(): "bool"}


def shard_schema(run_dir: Path, table: pd.DataFrame) -> pa.Schema:
    """One Arrow schema for every shard, so `datasets` reads them as one table: the types the run
    declared (its results and scores parts), whatever a shard holds; text for the joined
    `wd14_tags`; for any other column the type of the whole column (text where all of it is
    null). Per-shard inference would type a column that is null throughout one shard as null."""
    parts = [p for p, _ in all_parts(run_dir)]
    declared = pa.unify_schemas([read_schema(p).remove_metadata() for p in parts],
                                promote_options="permissive") if parts else pa.schema([])
    fields = []
    for name in table.columns:
        kind = declared.field(name).type if name in declared.names else None
        if name == "wd14_tags" or kind is None:
            kind = pa.string() if name == "wd14_tags" else pa.Table.from_pandas(
                table[[name]], preserve_index=False).schema.field(name).type
            kind = pa.string() if pa.types.is_null(kind) or pa.types.is_large_string(kind) \
                else kind
        if kind not in SCALAR:
            raise ResultsError(f"column {name} of {run_dir} has type {kind}, which the "
                               "hf-parquet export cannot declare as a datasets Value")
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def write(job: ExportJob) -> None:
    run_dir, rows, folder, shard_rows = job.run_dir, job.rows, job.folder, job.shard_rows
    drop = [c for c in (EMBEDDING, "image_path", "error", "worker") if c in rows.columns]
    table = rows.drop(columns=drop)
    if "wd14_tags" in table.columns:
        table["wd14_tags"] = [", ".join(t) if isinstance(t, (list, tuple, np.ndarray)) else None
                              for t in table["wd14_tags"]]
    table.insert(0, "caption", [", ".join(job.caption(r)[0])
                                for r in rows.to_dict("records")])
    schema = shard_schema(run_dir, table)
    features = {"image": {"_type": "Image"}}
    features |= {f.name: {"dtype": SCALAR[f.type], "_type": "Value"} for f in schema}
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    (folder / "data").mkdir()
    n_shards = max(1, -(-len(rows) // shard_rows))
    for shard in range(n_shards):
        lo, hi = shard * shard_rows, min(len(rows), (shard + 1) * shard_rows)
        image = pa.array([{"bytes": image_bytes(run_dir, r), "path": Path(r["image_path"]).name}
                          for r in rows.iloc[lo:hi].to_dict("records")],
                         pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        part = pa.Table.from_pandas(table.iloc[lo:hi], schema=schema, preserve_index=False)
        part = part.add_column(0, "image", image).replace_schema_metadata(meta)
        pq.write_table(part, folder / "data" / f"train-{shard:05d}-of-{n_shards:05d}.parquet",
                       row_group_size=100)
