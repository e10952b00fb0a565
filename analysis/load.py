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


def part_files(folder: Path | str) -> list[Path]:
    """The parts of a folder (`results/`, `scores/<scorer>/`) in write order (their names carry a
    sequence number)."""
    folder = Path(folder)
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def _read(path: Path, columns: list[str] | None) -> pa.Table:
    try:
        if columns is None:
            return pq.read_table(path)
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[c for c in columns if c in names])
    except (pa.ArrowInvalid, OSError) as e:
        raise ResultsError(f"results file {path} is corrupt or unreadable ({e}); move it out of "
                           "the run directory and rerun the job to regenerate its tasks") from None


def read_parts(folder: Path | str, columns: list[str] | None = None) -> pa.Table:
    """All parts of a folder concatenated (schemas unified: parts from different sweeps may
    differ), with a `_part` column giving each row's part number."""
    tables = []
    for i, path in enumerate(part_files(folder)):
        t = _read(path, columns)
        tables.append(t.append_column("_part", pa.array([i] * t.num_rows, pa.int32())))
    if not tables:
        return pa.table({"task_id": pa.array([], pa.string()), "status": pa.array([], pa.string()),
                         "_part": pa.array([], pa.int32())})
    return pa.concat_tables(tables, promote_options="permissive")


def done_ids(run_dir: Path | str) -> set[str]:
    """Task ids that finished (status ok or nan) in any part."""
    t = read_parts(Path(run_dir) / "results", ["task_id", "status"])
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
    df = read_parts(run_dir / "results").to_pandas()
    if df.empty:
        return df.drop(columns=["_part"])
    df["_done"] = df["status"].isin(DONE_STATUSES)
    df = df.sort_values(["_done", "_part"], kind="stable")
    df = df.drop_duplicates("task_id", keep="last").sort_index()
    df = df.drop(columns=["_part", "_done"]).reset_index(drop=True)
    scores = run_dir / "scores"
    for folder in sorted(p for p in scores.iterdir() if p.is_dir()) if scores.is_dir() else []:
        df = merge_scores(df, folder)
    return df


def merge_scores(df: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Overlay a rescoring's columns (`scores/<scorer>/`): its newest value per task replaces the
    one written at generation time; tasks it has not scored keep theirs."""
    table = read_parts(folder)
    if table.num_rows == 0:
        return df
    s = table.to_pandas().drop_duplicates("task_id", keep="last").set_index("task_id")
    s = s.drop(columns=[c for c in ("_part", "scorer_config") if c in s.columns])
    present = df["task_id"].isin(s.index)
    for col in s.columns:
        mapped = df["task_id"].map(s[col])
        if col in df.columns:
            df.loc[present, col] = mapped[present]
        else:
            df[col] = mapped
    return df
