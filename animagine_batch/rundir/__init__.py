"""The run directory: its layout and part naming, the results and scores schemas, the atomic
writers, the reader, the resume index, PNG metadata, job.yaml and the lock.

Both sides go through here: the driver and `score` write a run, `analysis/` and `export` read
it. This package imports pyarrow, PIL, pandas and the job spec; never the engine, the runners,
the analysis or the command line.
"""

from __future__ import annotations

from ..errors import ResultsError
from .read import RunWarning, done_ids, load_run, merge_scores, read_parts, warn

__all__ = ["ResultsError", "RunWarning", "done_ids", "load_run", "merge_scores", "read_parts",
           "warn"]
