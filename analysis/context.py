"""What every analysis command starts from: a run directory as a table with its axes, metric
directions and axis levels (`load_context`), and how a command writes a table (`--out`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from animagine_batch.rundir import ResultsError, load_run
from animagine_batch.rundir.jobfile import axis_levels, job_axes
from animagine_batch.rundir.layout import named_run as run_dir
from animagine_batch.rundir.outputs import check_file_output, write_atomically
from animagine_batch.rundir.provenance import directions

from .compare import metric_columns

TABLE_SUFFIXES = (".csv", ".parquet", ".md", ".markdown")


@dataclass
class RunContext:
    path: Path
    table: pd.DataFrame  # load_run's wide table, one row per task
    axes: list[str]  # the sweep axes, grid then zip (job.yaml)
    directions: dict[str, bool]  # metric -> higher is better (the scorers' provenance)

    def levels(self, axis: str) -> list:
        """An axis's levels in the job's order."""
        return axis_levels(self.path, axis)

    def metrics(self, wanted: list[str] | None = None) -> list[str]:
        """`wanted` (each a column of the table), or every scorer metric of the run."""
        known = metric_columns(self.table, self.directions)
        unknown = [m for m in wanted or [] if m not in self.table.columns]
        if unknown:
            raise ResultsError(f"--metric {', '.join(unknown)}: no such column in {self.path}; "
                               f"its metrics: {', '.join(known) or '(none)'}")
        return list(wanted or known)


def load_context(path: str | Path, rows: str | None = "") -> RunContext:
    """The run named on the command line, read once. `rows`: how to name the run when it has no
    result rows (`""`: by its path; `"baseline"`: "the baseline ..."), or None to accept an
    empty table."""
    run = run_dir(path)
    table = load_run(run)
    if rows is not None and table.empty:
        what = f"the {rows} {run}" if rows else str(run)
        raise ResultsError(f"{what} has no result rows: run its job first")
    return RunContext(run, table, job_axes(run), directions(run))


def table_out(out: str | None, flag: str = "--out", suffixes=TABLE_SUFFIXES) -> None:
    """Check an output file before any work: known suffix, existing folder, not onto a run."""
    if out is not None:
        check_file_output(out, flag, suffixes)


def write_table(df: pd.DataFrame, out: str, suffixes=TABLE_SUFFIXES) -> None:
    """CSV, Parquet or Markdown by the file's suffix, written atomically."""
    path = check_file_output(out, "--out", suffixes)

    def write(tmp: Path) -> None:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            tmp.write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")

    write_atomically(path, "--out", write)
    print(f"{len(df):,} rows -> {out}")


def show(df: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
