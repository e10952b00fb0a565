"""Read a run directory's result parts into one table (one row per task)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DONE_STATUSES = ("ok", "nan")  # an `error` row is retried when the job is rerun


class ResultsError(Exception):
    """A run directory or results file that cannot be read."""

    exit_code = 2


def part_files(run_dir: Path | str) -> list[Path]:
    """Result parts in write order (their names carry a sequence number)."""
    results = Path(run_dir) / "results"
    return sorted(results.glob("part-*.parquet")) if results.is_dir() else []


def _read(path: Path, columns: list[str] | None) -> pa.Table:
    try:
        if columns is None:
            return pq.read_table(path)
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[c for c in columns if c in names])
    except (pa.ArrowInvalid, OSError) as e:
        raise ResultsError(f"results file {path} is corrupt or unreadable ({e}); move it out of "
                           "the run directory and rerun the job to regenerate its tasks") from None


def read_parts(run_dir: Path | str, columns: list[str] | None = None) -> pa.Table:
    """All parts concatenated (schemas unified: parts from different sweeps may differ), with a
    `_part` column giving each row's part number."""
    tables = []
    for i, path in enumerate(part_files(run_dir)):
        t = _read(path, columns)
        tables.append(t.append_column("_part", pa.array([i] * t.num_rows, pa.int32())))
    if not tables:
        return pa.table({"task_id": pa.array([], pa.string()), "status": pa.array([], pa.string()),
                         "_part": pa.array([], pa.int32())})
    return pa.concat_tables(tables, promote_options="permissive")


def done_ids(run_dir: Path | str) -> set[str]:
    """Task ids that finished (status ok or nan) in any part."""
    t = read_parts(run_dir, ["task_id", "status"])
    if t.num_rows == 0:
        return set()
    mask = pc.is_in(t["status"], value_set=pa.array(DONE_STATUSES))
    return set(t.filter(mask)["task_id"].to_pylist())


def load_run(run_dir: Path | str) -> pd.DataFrame:
    """The wide results table: one row per task. Where a task has several rows (an error retried
    later, or a compaction interrupted), a finished row wins over an error, then the latest."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {run_dir} does not exist")
    table = read_parts(run_dir)
    df = table.to_pandas()
    if df.empty:
        return df.drop(columns=["_part"])
    df["_done"] = df["status"].isin(DONE_STATUSES)
    df = df.sort_values(["_done", "_part"], kind="stable")
    df = df.drop_duplicates("task_id", keep="last").sort_index()
    return df.drop(columns=["_part", "_done"]).reset_index(drop=True)
