"""Statistics and reports over result tables. Imports no torch, diffusers, transformers or ray."""

from .load import ResultsError, done_ids, load_run, read_parts

__all__ = ["ResultsError", "done_ids", "load_run", "read_parts"]
