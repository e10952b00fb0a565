"""Read a run directory's result parts into one table (one row per task).

A run directory is shared data: a part that is not ours (no `task_id`/`status`), a part whose
columns cannot be merged with the others, and rows without a task id are reported as warnings
(`RunWarning`) and left out; a part that cannot be read at all stops the reader with its name.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ResultsError
from .layout import RESULTS, part_files, score_folders
from .storage import location, parquet_file

DONE_STATUSES = ("ok", "nan")  # an `error` row is retried when the job is rerun
EMBEDDING = "clip_image_embedding"  # CLIP image embeddings, float16 bytes (the clip scorer's)
RESULT_KEYS = ("task_id", "status")


class RunWarning(UserWarning):
    """Something in a run directory that readers leave out and go on without."""


def warn(message: str) -> None:
    warnings.warn(message, RunWarning, stacklevel=2)


def show_warnings_plainly() -> None:
    """Print `RunWarning`s as `warning: ...` lines (the command line's style), others as usual."""
    original = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if issubclass(category, RunWarning):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = fmt


def _unreadable(path: Path, e: Exception) -> ResultsError:
    return ResultsError(f"results file {path} is corrupt or unreadable ({e}); move it out of "
                        "the run directory, or rerun the job with --verify, which sets it aside "
                        "in damaged/ and regenerates its tasks")


def _open(path: Path) -> pq.ParquetFile:
    try:
        pf = parquet_file(path)
        pf.schema_arrow  # a footer that does not convert raises here, not later
        return pf
    except (pa.ArrowInvalid, OSError) as e:
        raise _unreadable(path, e) from None


def _usable(folder: Path | str, required: tuple[str, ...]) -> Iterator[tuple[Path, pq.ParquetFile]]:
    """Each usable part, opened once (and closed when the next one is taken), in write order."""
    folder = location(folder)
    for stray in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        if not stray.name.startswith("part-"):
            warn(f"{stray} is not a results part (parts are named part-*.parquet); ignored")
    merged = None
    for path in part_files(folder):
        with _open(path) as pf:
            schema = pf.schema_arrow
            missing = [c for c in required if c not in schema.names]
            if missing:
                warn(f"{path} has no {', '.join(missing)} column: it is not a part of this run; "
                     "skipped (move it out of the run directory)")
                continue
            try:
                merged = schema if merged is None else pa.unify_schemas(
                    [merged, schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                warn(f"{path} cannot be merged with the run's earlier parts ({e}); skipped: its "
                     "rows are left out of the table (move it into a run directory of its own)")
                continue
            yield path, pf


def usable_parts(folder: Path | str, required: tuple[str, ...] = ("task_id",)) -> list[Path]:
    """The parts whose rows can be merged, in write order. A part without the `required` columns
    (a file that is not ours) or with a column whose type cannot be merged with the earlier
    parts' is reported and left out; an unreadable part raises `ResultsError`."""
    return [path for path, _ in _usable(folder, required)]


def usable_schemas(folder: Path | str,
                   required: tuple[str, ...] = ("task_id",)) -> list[tuple[Path, pa.Schema]]:
    """`usable_parts` with each part's schema."""
    return [(path, pf.schema_arrow) for path, pf in _usable(folder, required)]


def read_parts(folder: Path | str, columns: list[str] | None = None,
               required: tuple[str, ...] = ("task_id",)) -> pa.Table:
    """All usable parts of a folder concatenated (schemas unified: parts from different sweeps
    may differ), with a `_part` column giving each row's part number. Each part is opened once
    and only the `columns` it has are read (all with None). Rows without a task id are reported
    and dropped."""
    tables = []
    for i, (path, pf) in enumerate(_usable(folder, required)):
        names = pf.schema_arrow.names
        try:
            t = pf.read(columns=None if columns is None else [c for c in columns if c in names])
        except (pa.ArrowInvalid, OSError) as e:
            raise _unreadable(path, e) from None
        if "task_id" in t.column_names and t["task_id"].null_count:
            warn(f"{path}: {t['task_id'].null_count} row(s) without a task_id; left out")
            t = t.filter(pc.is_valid(t["task_id"]))
        tables.append(t.append_column("_part", pa.array(np.full(t.num_rows, i, np.int32))))
    if not tables:
        return pa.table({"task_id": pa.array([], pa.string()), "status": pa.array([], pa.string()),
                         "_part": pa.array([], pa.int32())})
    return pa.concat_tables(tables, promote_options="permissive")


def done_ids(run_dir: Path | str) -> set[str]:
    """Task ids that finished (status ok or nan) in any part."""
    t = read_parts(location(run_dir) / RESULTS, list(RESULT_KEYS), RESULT_KEYS)
    if t.num_rows == 0:
        return set()
    mask = pc.is_in(t["status"], value_set=pa.array(DONE_STATUSES))
    return set(t.filter(mask)["task_id"].to_pylist())


def load_run(run_dir: Path | str) -> pd.DataFrame:
    """The wide results table: one row per task. Where a task has several rows (an error retried
    later, or a merge interrupted), a finished row wins over an error, then the later-written."""
    run_dir = location(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {run_dir} does not exist")
    df = read_parts(run_dir / RESULTS, required=RESULT_KEYS).to_pandas()
    if df.empty:
        return df.drop(columns=["_part"])
    df["_done"] = df["status"].isin(DONE_STATUSES)
    df = df.sort_values(["_done", "_part"], kind="stable")
    df = df.drop_duplicates("task_id", keep="last").sort_index()
    df = df.drop(columns=["_part", "_done"]).reset_index(drop=True)
    for folder in score_folders(run_dir):
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


def embeddings(values) -> np.ndarray:
    """float16 embedding bytes (one per image) -> L2-normalised float32 matrix."""
    m = np.stack([np.frombuffer(v, dtype=np.float16).astype(np.float32) for v in values])
    return m / np.clip(np.linalg.norm(m, axis=1, keepdims=True), 1e-12, None)
